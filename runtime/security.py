"""What the runtime does about hostile clients, below the endpoints.

- :class:`SecurityHeaders`: a pure ASGI middleware that puts the browser policy of
  :mod:`builder.webpolicy` (Content-Security-Policy, nosniff, frame and referrer policy) on
  every answer, errors included. It only edits the start message, so streamed file answers stay
  streams (Starlette's ``BaseHTTPMiddleware`` would wrap them).
- :func:`cross_site_refusal`: the check for GET endpoints that change state (the Qt dialect's
  ``/login`` and ``/logout``, which Neptune sends as GET): a browser that was made to send one
  from another site says so with ``Origin`` or ``Sec-Fetch-Site``; Qt clients send neither.
- :func:`slow_client_protocol`: uvicorn's HTTP protocol (httptools, else h11) with a deadline
  for the request head, a cap on its size and a cap on open connections, so a few hundred
  clients that never finish a request cannot take every file descriptor of a directly exposed
  ``depot serve``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from builder.webpolicy import SECURITY_HEADERS

log = logging.getLogger("runtime.security")


class SecurityHeaders:
    """Adds :data:`builder.webpolicy.SECURITY_HEADERS` to every HTTP answer that does not set
    the header itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.headers if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- cross-site requests -----------------------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_port(netloc: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + netloc)
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname.lower(), port) if parts.hostname else None


def is_cross_site(request: Request) -> bool:
    """True for a request a browser sent on behalf of another site: ``Sec-Fetch-Site:
    cross-site``, or an ``Origin`` that is not the store's own, that is not the Host the
    request was sent to (``Origin: null`` never is). A Host without a port matches its name on
    either default port, so a TLS terminator that does not say ``X-Forwarded-Proto`` changes
    nothing. A request with neither header (Qt AM, Neptune, curl) is not cross-site."""
    if request.headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    parts = urlsplit(origin.strip())
    theirs = _host_port(parts.netloc) if parts.scheme in DEFAULT_PORTS else None  # "null", file:
    ours = _host_port(request.headers.get("host", ""))
    if theirs is None or ours is None or theirs[0] != ours[0]:
        return True
    their_port = theirs[1] if theirs[1] is not None else DEFAULT_PORTS[parts.scheme]
    return their_port not in DEFAULT_PORTS.values() if ours[1] is None else their_port != ours[1]


# -- slow clients -------------------------------------------------------------------------------

# A request head above this many bytes answers 400 (h11: ``h11_max_incomplete_event_size``).
MAX_HEAD_BYTES = 16 * 1024


@dataclass
class ProtocolLimits:
    """What :func:`slow_client_protocol` configured; read by the protocol classes, which are
    module-level so that ``depot serve --workers N`` can name them to its worker processes."""

    header_timeout: float = 10.0
    max_connections: int = 1000
    next_warning: float = 0.0


LIMITS = ProtocolLimits()


class _HeadDeadline:
    """The deadline for a request head and the connection cap, shared by both protocols."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    _head_deadline: asyncio.TimerHandle | None = None

    def _refuse_beyond_the_cap(self) -> bool:
        if len(self.connections) <= LIMITS.max_connections:
            return False
        now = self.loop.time()
        if now >= LIMITS.next_warning:  # one line a minute, not one per connection
            LIMITS.next_warning = now + 60
            log.warning("%d connections open; refusing new ones", LIMITS.max_connections)
        self.transport.close()
        return True

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(LIMITS.header_timeout, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _waiting_for_a_head(self) -> bool:
        raise NotImplementedError

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing() and self._waiting_for_a_head():
            self.transport.close()


@functools.cache
def _h11_protocol() -> type[Any]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class SlowClientProtocol(_HeadDeadline, H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if not self._refuse_beyond_the_cap():
                self._arm_head_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_deadline()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm_head_deadline()  # the head is in; the body has no deadline here

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_head_deadline()  # kept alive: the next head has the same deadline

        def _waiting_for_a_head(self) -> bool:
            return bool(self.conn.their_state is h11.IDLE)

    return SlowClientProtocol


@functools.cache
def _httptools_protocol() -> type[Any] | None:
    """The same limits over uvicorn's httptools protocol (the C parser, several times faster
    than h11 for small answers), plus the head size cap h11 has and httptools has not."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is not installed
        return None

    class FastSlowClientProtocol(_HeadDeadline, HttpToolsProtocol):
        # heads parsed and answers finished: equal while the connection waits for (the rest
        # of) a head; a pipelined head that is already in counts as parsed.
        _heads = 0
        _answered = 0
        _head_bytes = 0  # URL and header bytes of the head being parsed
        _partial_bytes = 0  # bytes received while a head is begun and not complete
        _in_head = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if not self._refuse_beyond_the_cap():
                self._arm_head_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_deadline()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_head and not self.transport.is_closing():
                # bytes of a head still incomplete, which httptools buffers: capped like h11's
                self._partial_bytes += len(data)
                if self._partial_bytes > MAX_HEAD_BYTES:
                    self.send_400_response("Request head too large.")

        def on_message_begin(self) -> None:
            self._in_head, self._head_bytes, self._partial_bytes = True, 0, 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
            super().on_header(name, value)

        def _count_head(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD_BYTES:
                # raised inside the parser's callback: uvicorn answers 400 and closes, and no
                # request of this head reaches the application
                raise ValueError("request head too large")

        def on_headers_complete(self) -> None:
            self._heads += 1
            self._in_head = False
            self._disarm_head_deadline()  # the head is in; the body has no deadline here
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self._answered += 1
            super().on_response_complete()
            if not self.transport.is_closing() and self._waiting_for_a_head():
                self._arm_head_deadline()  # kept alive: the next head has the same deadline

        def _waiting_for_a_head(self) -> bool:
            return self._heads == self._answered

    return FastSlowClientProtocol


def __getattr__(name: str) -> Any:
    """``runtime.security:HTTPTOOLS_PROTOCOL_CLASS`` and ``:H11_PROTOCOL_CLASS``, what
    ``depot serve --workers`` names to uvicorn: made on first use, so that uvicorn is imported
    only by what serves."""
    made = {"H11_PROTOCOL_CLASS": _h11_protocol, "HTTPTOOLS_PROTOCOL_CLASS": _httptools_protocol}.get(name)
    protocol = made() if made is not None else None
    if protocol is None:
        raise AttributeError(name)
    return protocol


def slow_client_protocol(header_timeout: float, max_connections: int) -> type[Any]:
    """uvicorn's HTTP protocol (httptools when installed, else h11), with limits uvicorn does
    not have:

    - a connection must send a whole request head within ``header_timeout`` seconds of opening
      (and of the end of its previous answer), else it is closed; uvicorn itself waits for ever
      once a client has sent one byte;
    - at most ``max_connections`` connections are open; one beyond is closed at once, so the
      process always keeps descriptors for its files and database. (uvicorn's own
      ``limit_concurrency``, set to the same number, answers 503 to requests at the limit.)
    - a request head above :data:`MAX_HEAD_BYTES` answers 400.

    The limits are the process's (:data:`LIMITS`); the last call sets them.
    """
    LIMITS.header_timeout, LIMITS.max_connections = header_timeout, max_connections
    return _httptools_protocol() or _h11_protocol()


def protocol_name() -> str:
    """The import string of :func:`slow_client_protocol`'s class, for uvicorn's worker processes
    (which configure :data:`LIMITS` from the environment in the app factory)."""
    if _httptools_protocol() is not None:
        return "runtime.security:HTTPTOOLS_PROTOCOL_CLASS"
    return "runtime.security:H11_PROTOCOL_CLASS"


# Descriptors a process keeps for what is not a client connection: files it serves, a database
# connection per worker thread (Starlette's pool has 40), pipes, the listening socket.
RESERVED_DESCRIPTORS = 128


def connections_that_fit(max_connections: int) -> int:
    """The connection cap that leaves :data:`RESERVED_DESCRIPTORS` free: the soft limit on open
    files is raised towards the hard limit as far as needed first, and a cap that would not fit
    is lowered (and logged)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    fits = min(max_connections, max(soft - RESERVED_DESCRIPTORS, soft // 2))
    if fits < max_connections:
        log.warning(
            "DEPOT_MAX_CONNECTIONS=%d does not fit the limit of %d open files; at most %d connections",
            max_connections,
            soft,
            fits,
        )
    return fits


def uvicorn_limits(header_timeout: float, max_connections: int, keep_alive: int) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that bound what slow or many clients can hold."""
    max_connections = connections_that_fit(max_connections)
    return {
        "http": slow_client_protocol(header_timeout, max_connections),
        "limit_concurrency": max_connections,
        "timeout_keep_alive": keep_alive,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,  # a request head above 16 KiB answers 400
    }

"""What the runtime does about hostile clients, below the endpoints.

- :class:`SecurityHeaders`: a pure ASGI middleware that puts the browser policy of
  :mod:`builder.webpolicy` (Content-Security-Policy, nosniff, frame and referrer policy) on
  every answer, errors included. It only edits the start message, so streamed file answers stay
  streams (Starlette's ``BaseHTTPMiddleware`` would wrap them).
- :func:`cross_site_refusal`: the check for GET endpoints that change state (the Qt dialect's
  ``/login`` and ``/logout``, which Neptune sends as GET): a browser that was made to send one
  from another site says so with ``Origin`` or ``Sec-Fetch-Site``; Qt clients send neither.
- :func:`slow_client_protocol`: uvicorn's h11 protocol with a deadline for the request head
  and a cap on open connections, so a few hundred clients that never finish a request cannot
  take every file descriptor of a directly exposed ``depot serve``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from builder.webpolicy import SECURITY_HEADERS

if TYPE_CHECKING:
    from uvicorn.protocols.http.h11_impl import H11Protocol

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


def slow_client_protocol(header_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol, with two limits uvicorn does not have:

    - a connection must send a whole request head within ``header_timeout`` seconds of opening
      (and of the end of its previous answer), else it is closed; uvicorn itself waits for ever
      once a client has sent one byte;
    - at most ``max_connections`` connections are open; one beyond is closed at once, so the
      process always keeps descriptors for its files and database. (uvicorn's own
      ``limit_concurrency``, set to the same number, answers 503 to requests at the limit.)
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    refused = {"next_warning": 0.0}

    class SlowClientProtocol(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                now = self.loop.time()
                if now >= refused["next_warning"]:  # one line a minute, not one per connection
                    refused["next_warning"] = now + 60
                    log.warning("%d connections open; refusing new ones", max_connections)
                self.transport.close()
                return
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

        def _arm_head_deadline(self) -> None:
            self._disarm_head_deadline()
            self._head_deadline = self.loop.call_later(header_timeout, self._head_too_slow)

        def _disarm_head_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_too_slow(self) -> None:
            self._head_deadline = None
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self.transport.close()

    return SlowClientProtocol


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
        "h11_max_incomplete_event_size": 16 * 1024,  # a request head above 16 KiB answers 400
    }

"""What the agent may fetch from the network, and how much of it.

The agent fetches from the store's origin (scheme, host and port of ``--store``) and from the
origins of the configured mirrors (``--mirror``), nothing else: an index entry or a redirect
naming another origin is refused before any connection is made to it. Redirects are followed
by hand, at most ``MAX_REDIRECTS`` in a row, each target checked the same way.

Index documents are read with caps on both the bytes received and the bytes they inflate to;
the agent decodes gzip itself, a bounded piece at a time, so a gzip bomb costs at most the cap
in memory, never the size it claims to expand to.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping

import httpx

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_REDIRECTS = 5
BLOCK = 1 << 20


class ForeignOriginError(Exception):
    """A URL (from the index or a redirect) outside the store's and the mirrors' origins."""


class TooLargeError(Exception):
    """A response past its cap, undecodable, or slower than its deadline allows."""


def origin_of(url: str | httpx.URL) -> str | None:
    """``scheme://host:port`` of an http(s) URL (port made explicit), or None for anything else."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else url
        scheme = parsed.scheme.lower()
        host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    except (httpx.InvalidURL, UnicodeDecodeError, TypeError):
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    port = parsed.port or DEFAULT_PORTS[scheme]
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class Origins:
    """The store's origin plus the mirrors' origins: the only places the agent connects to."""

    def __init__(self, store: str, mirrors: Iterable[str] = ()) -> None:
        origins = []
        for url in (store, *mirrors):
            origin = origin_of(url)
            if origin is None:
                raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
            if origin not in origins:
                origins.append(origin)
        self.origins = tuple(origins)

    def allows(self, url: str | httpx.URL) -> bool:
        return origin_of(url) in self.origins

    def check(self, url: str | httpx.URL, what: str = "URL") -> None:
        if not self.allows(url):
            raise ForeignOriginError(
                f"{what} {str(url)[:300]} is not on the store's origin"
                f"{' or a mirror' if len(self.origins) > 1 else ''} ({', '.join(self.origins)}); "
                "not fetched"
            )

    def __repr__(self) -> str:
        return f"Origins({', '.join(self.origins)})"


@contextlib.contextmanager
def open_get(
    client: httpx.Client,
    url: str,
    origins: Origins,
    headers: Mapping[str, str] | None = None,
    what: str = "URL",
) -> Iterator[httpx.Response]:
    """A streamed GET of ``url``; redirects are followed only to allowed origins, at most
    ``MAX_REDIRECTS`` of them. Raises ForeignOriginError (nothing is sent to a foreign origin)."""
    current = httpx.URL(url)
    origins.check(current, what)
    for _hop in range(MAX_REDIRECTS + 1):
        request = client.build_request("GET", current, headers=dict(headers or {}))
        response = client.send(request, stream=True, follow_redirects=False)
        if not response.has_redirect_location or response.next_request is None:
            try:
                yield response
            finally:
                response.close()
            return
        target = response.next_request.url
        response.close()
        if not origins.allows(target):
            raise ForeignOriginError(
                f"{str(current)[:300]} redirects to {str(target)[:300]}, another origin "
                f"than the store's ({', '.join(origins.origins)}); not followed"
            )
        current = target
    raise ForeignOriginError(f"{url} redirects more than {MAX_REDIRECTS} times; not followed")


def read_capped(
    response: httpx.Response,
    limit: int,
    what: str,
    deadline: float | None = None,
    received_limit: int | None = None,
) -> bytes:
    """The body of a response opened with ``Accept-Encoding: gzip`` (or identity), decoded here:
    at most ``received_limit`` bytes received (default ``limit``) and at most ``limit`` bytes
    after inflating; raises TooLargeError past either, on a Content-Encoding other than gzip, on
    a truncated gzip stream, or when ``deadline`` (``time.monotonic()``) passes. Only the
    inflated bytes are kept in memory."""
    received_limit = limit if received_limit is None else received_limit
    length = response.headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > received_limit:
        raise TooLargeError(f"{what} is {int(length)} bytes, more than the limit of {received_limit}")
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        decoder = None
    elif encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    else:
        raise TooLargeError(f"{what} has Content-Encoding {encoding[:40]!r}; only gzip is accepted")
    pieces: list[bytes] = []  # joined once, on success: no reallocation copies on the way
    kept = received = 0

    def keep(piece: bytes, verb: str) -> None:
        nonlocal kept
        kept += len(piece)
        if kept > limit:
            raise TooLargeError(f"{what} {verb} past the limit of {limit} bytes")
        pieces.append(piece)

    try:
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > received_limit:
                raise TooLargeError(f"{what} sends more than the limit of {received_limit} bytes")
            if deadline is not None and time.monotonic() > deadline:
                raise TooLargeError(f"{what} is arriving too slowly; given up")
            if decoder is None:
                keep(chunk, "goes")
                continue
            data = chunk
            while data and not decoder.eof:  # at most a block per call, whatever the ratio
                keep(decoder.decompress(data, min(BLOCK, limit + 1 - kept)), "inflates")
                data = decoder.unconsumed_tail
        while decoder is not None and not decoder.eof:
            piece = decoder.decompress(b"", min(BLOCK, limit + 1 - kept))  # bounded, unlike flush()
            if not piece:
                raise TooLargeError(f"{what} is a truncated gzip stream")
            keep(piece, "inflates")
    except zlib.error as exc:
        raise TooLargeError(f"{what} is not valid gzip: {exc}") from exc
    return b"".join(pieces)

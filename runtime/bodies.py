"""Request bodies read under a cap, before anything parses them.

An endpoint that takes a small body (a login, a counter ping, a form of a few fields) reads it
with :func:`read_body`, which refuses a declared Content-Length over the cap at once and stops a
streamed body as soon as it passes the cap, so an unauthenticated client cannot make the server
buffer or spool hundreds of megabytes. JSON is then parsed by :func:`builder.jsonsafe.loads_json`,
with its nesting capped. Endpoints turn the errors into their dialect's shape.
"""

from __future__ import annotations

from starlette.requests import Request

from builder.errors import DepotError

SMALL_BODY = 64 * 1024  # logins, counters, hellos, purchases: a few fields each


class BodyTooLargeError(DepotError):
    """The request body is larger than the endpoint takes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int = SMALL_BODY) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # later request.body()/form() calls read these bytes, not the stream
    return body

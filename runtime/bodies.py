"""Request bodies read under a cap, before anything parses them.

An endpoint that takes a small body (a login, a counter ping, a form of a few fields) reads it
with :func:`read_body`, which refuses a declared Content-Length over the cap at once and stops a
streamed body as soon as it passes the cap, so an unauthenticated client cannot make the server
buffer or spool hundreds of megabytes. JSON is parsed by :func:`loads_json`, which refuses
nesting deeper than a cap in one linear pass first (the standard parser recurses, and a document
nested 30,000 deep ends in RecursionError). Endpoints turn the errors into their dialect's shape.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from builder.errors import DepotError

SMALL_BODY = 64 * 1024  # logins, counters, hellos, purchases: a few fields each
MAX_DEPTH = 32


class BodyTooLargeError(DepotError):
    """The request body is larger than the endpoint takes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class BodyFormatError(DepotError, ValueError):
    """The body is not what the endpoint reads (malformed, or nested too deep)."""


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


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, in one pass; strings are
    skipped, so brackets inside them do not count."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def loads_json(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    if nesting_depth(raw) > max_depth:
        raise BodyFormatError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BodyFormatError(str(exc)) from exc

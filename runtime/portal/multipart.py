"""Stream one file part out of a multipart/form-data body, in bounded memory.

Starlette's ``request.form()`` spools every part before the handler sees it; the portal wants
the APK's bytes as they arrive so :func:`runtime.uploads.receive_to_temp` can hash them,
enforce the size limit and drop them on a cut-off body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from runtime.uploads import UploadIncompleteError, UploadTooLargeError

MAX_OTHER_PARTS = 64 * 1024  # bytes of non-file parts (names, stray fields) we tolerate


class MultipartError(ValueError):
    """The body is not the multipart form we expect; the message says why."""


def boundary_of(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise MultipartError("the body must be multipart/form-data with a file part named 'apk'")
    return params[b"boundary"]


async def file_part(request: Request, field: str, max_bytes: int) -> AsyncIterator[bytes]:
    """Yield the bytes of the first part named ``field``; raise when it is missing or cut off."""
    boundary = boundary_of(request)
    state: dict[str, Any] = {
        "header": b"", "field": b"", "value": b"", "in_target": False, "found": False, "done": False
    }
    headers: dict[bytes, bytes] = {}
    pending: list[bytes] = []
    other = 0

    def on_part_begin() -> None:
        headers.clear()
        state["in_target"] = False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        headers[state["field"].lower()] = state["value"]
        state["field"] = state["value"] = b""

    def on_headers_finished() -> None:
        _disposition, params = parse_options_header(headers.get(b"content-disposition", b""))
        if params.get(b"name") == field.encode() and not state["found"]:
            state["in_target"] = state["found"] = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal other
        if state["in_target"]:
            pending.append(bytes(data[start:end]))
        else:
            other += end - start
            if other > MAX_OTHER_PARTS:
                raise MultipartError("the form carries too much besides the APK")

    def on_part_end() -> None:
        if state["in_target"]:
            state["done"] = True
            state["in_target"] = False

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes + MAX_OTHER_PARTS:
            raise UploadTooLargeError(max_bytes)
        try:
            parser.write(chunk)
        except MultipartError:
            raise
        except Exception as exc:  # python-multipart raises its own error types
            raise MultipartError(f"malformed multipart body: {exc}") from exc
        for piece in pending:
            yield piece
        pending.clear()
    if not state["found"]:
        raise MultipartError(f"the form has no file part named {field!r}")
    if not state["done"]:
        raise UploadIncompleteError("the body ended in the middle of the APK part")

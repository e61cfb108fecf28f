"""A multipart/form-data body read as it arrives: small fields kept, one file part streamed.

Starlette's ``request.form()`` spools every file part to a temporary file (in memory up to
1 MiB, then on the system's temporary disk) before the handler sees any of it, so a large
upload is written twice and read back once before it reaches its own file. :func:`stream_form`
hands the bytes of the one file part an endpoint wants to a :class:`runtime.uploads.HashedWriter`
(or only counts them) while the body streams, and keeps the other fields as Starlette would
(``str`` values, the last of a repeated name wins), under the same caps (``max_files``,
``max_fields``, 1 MiB per field). Keyword options let an endpoint ask for other rules (the
portal's APK upload uses them): no count caps, a byte cap on everything besides the file part,
the first file part of the name kept instead of the last, no fields kept, a part of the name
taken as the file without a filename, and a body without its closing boundary returned as
incomplete instead of refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

MAX_FIELD_BYTES = 1024 * 1024  # Starlette's max_part_size for fields


class FormError(ValueError):
    """The body is not a multipart form within the caps; the message says why."""


class OtherPartsTooLargeError(FormError):
    """The parts besides the wanted file part carry more than ``max_other_bytes``."""


@dataclass
class StreamedForm:
    fields: dict[str, str] = field(default_factory=dict)  # plain fields, last value wins
    file_names: set[str] = field(default_factory=set)  # names of every file part seen
    has_file: bool = False  # a file part of the wanted name came
    file_size: int = 0  # bytes of the last such part
    file_complete: bool = False  # that part reached its end (not cut off)
    complete: bool = False  # the body ended with its closing boundary


def multipart_boundary(content_type: str) -> bytes | None:
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        return None
    return bytes(params[b"boundary"])


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


async def stream_form(
    chunks: AsyncIterator[bytes],
    boundary: bytes,
    file_field: str,
    sink: Callable[[], Awaitable[Callable[[bytes | memoryview], Awaitable[None]] | None]] | None = None,
    max_files: int | None = 1,
    max_fields: int | None = 20,
    *,
    max_other_bytes: int | None = None,
    keep_first: bool = False,
    keep_fields: bool = True,
    nameless_file: bool = False,
    require_end: bool = True,
) -> StreamedForm:
    """Parse the body; the bytes of each file part named ``file_field`` go to the writer that
    ``sink()`` returns when that part begins (a second such part calls it again: the caller
    starts over, as the last part wins in Starlette's form), or are only counted without one.

    ``max_files`` / ``max_fields`` None: no cap on their number. ``max_other_bytes``: the data
    of all other parts together (fields, other files, repeats) may not exceed it
    (:class:`OtherPartsTooLargeError`). ``keep_first``: the first file part named
    ``file_field`` is the one kept, later ones count as other parts. ``keep_fields=False``:
    fields and file names are only counted, not kept. ``nameless_file``: a part named
    ``file_field`` is a file part even without a filename. ``require_end=False``: a body that
    ends before its closing boundary is returned (``complete`` False) instead of refused."""
    form = StreamedForm()
    events: list[tuple[str, Any]] = []
    headers: dict[bytes, bytes] = {}
    current: dict[str, Any] = {"field": b"", "value": b""}

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        current["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        current["value"] += data[start:end]

    def on_header_end() -> None:
        headers[bytes(current["field"]).lower()] = bytes(current["value"])
        current["field"] = current["value"] = b""

    def on_headers_finished() -> None:
        _disposition, params = parse_options_header(headers.get(b"content-disposition", b""))
        part = _text(params.get(b"name", b""))
        events.append(("begin", (part, b"filename" in params or (nameless_file and part == file_field))))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        # the parser's own chunk is immutable bytes: a view of it costs no copy
        piece = memoryview(data)[start:end] if isinstance(data, bytes) else bytes(data[start:end])
        events.append(("data", piece))

    def on_part_end() -> None:
        events.append(("end", None))

    def on_end() -> None:
        form.complete = True

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
            "on_end": on_end,
        },
    )
    files = fields = other = 0
    taken = False  # a file part named file_field began (for keep_first)
    kind: str | None = None  # "target", "file" (another file part), "field"
    name, value_size = "", 0
    value: list[bytes] = []
    write: Callable[[bytes | memoryview], Awaitable[None]] | None = None
    async for chunk in chunks:
        try:
            parser.write(chunk)
        except Exception as exc:  # python-multipart raises its own error types
            raise FormError(f"malformed multipart body: {exc}") from exc
        for event, payload in events:
            if event == "begin":
                name, is_file = payload
                if is_file:
                    files += 1
                    if max_files is not None and files > max_files:
                        raise FormError(f"Too many files. Maximum number of files is {max_files}.")
                    if keep_fields:
                        form.file_names.add(name)
                    if name == file_field and not (keep_first and taken):
                        kind, form.has_file, form.file_size, taken = "target", True, 0, True
                        form.file_complete = False
                        write = await sink() if sink is not None else None
                    else:
                        kind = "file"
                else:
                    fields += 1
                    if max_fields is not None and fields > max_fields:
                        raise FormError(f"Too many fields. Maximum number of fields is {max_fields}.")
                    kind, value, value_size = "field", [], 0
            elif event == "data":
                if kind == "target":
                    form.file_size += len(payload)
                    if write is not None:
                        await write(payload)
                    continue
                other += len(payload)
                if max_other_bytes is not None and other > max_other_bytes:
                    raise OtherPartsTooLargeError(
                        f"The parts besides {file_field!r} exceed {max_other_bytes} bytes."
                    )
                if kind == "field":
                    value_size += len(payload)
                    if value_size > MAX_FIELD_BYTES:
                        raise FormError(f"Part exceeded maximum size of {MAX_FIELD_BYTES // 1024}KB.")
                    if keep_fields:
                        value.append(bytes(payload))
            elif event == "end":
                if kind == "field":
                    if keep_fields:
                        form.fields[name] = b"".join(value).decode("utf-8", errors="replace")
                        form.file_names.discard(name)
                    if name == file_field and not keep_first:  # the last part of a name wins,
                        form.has_file = False  # and this one is no file
                elif kind in ("target", "file"):
                    form.fields.pop(name, None)
                    if kind == "target":
                        form.file_complete = True
                kind = None
        events.clear()
    if not form.complete and require_end:
        raise FormError("malformed multipart body: it ended before its closing boundary")
    return form

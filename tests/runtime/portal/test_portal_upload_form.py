"""The portal's APK part, read by :func:`runtime.portal.upload.receive_apk` (on
:func:`runtime.multipart.stream_form`): the first part named ``apk`` streamed to a temporary
file and hashed, the other parts' bytes capped together, and every refusal leaving no file."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from runtime.multipart import FormError, OtherPartsTooLargeError
from runtime.portal.upload import MAX_OTHER_PARTS, receive_apk
from runtime.uploads import ReceivedFile, UploadIncompleteError, UploadTooLargeError

BOUNDARY = "portal-form-test"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"
LIMIT = 100_000


def part(name: str, data: bytes, filename: str | None = "app.apk") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"


END = f"--{BOUNDARY}--\r\n".encode()


def _request(body: bytes, ctype: str = CTYPE, piece: int = 7000) -> Request:
    chunks = [body[i : i + piece] for i in range(0, len(body), piece)] or [b""]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", ctype.encode())]}
    return Request(scope, receive)


def receive(tmp_path: Path, body: bytes, ctype: str = CTYPE, folder: str = "incoming") -> ReceivedFile:
    return asyncio.run(receive_apk(_request(body, ctype), tmp_path / folder, LIMIT))


def refused(tmp_path: Path, body: bytes, error: type[BaseException], ctype: str = CTYPE) -> str:
    with pytest.raises(error) as caught:
        receive(tmp_path, body, ctype, folder="refused")
    assert list((tmp_path / "refused").glob("*")) == []  # nothing left behind
    return str(caught.value)


def test_the_apk_part_streams_to_a_hashed_temporary_file(tmp_path: Path) -> None:
    apk = bytes(range(256)) * 300
    got = receive(tmp_path, part("note", b"hi", None) + part("apk", apk) + part("other", b"x") + END)
    assert got.path.parent == tmp_path / "incoming" and got.path.read_bytes() == apk
    assert (got.size, got.sha256) == (len(apk), hashlib.sha256(apk).hexdigest())


def test_the_first_apk_part_wins_with_or_without_a_filename(tmp_path: Path) -> None:
    got = receive(tmp_path, part("apk", b"first", None) + part("apk", b"second") + END)
    assert got.path.read_bytes() == b"first"
    got = receive(tmp_path, part("apk", b"first") + part("apk", b"second", None) + END)
    assert got.path.read_bytes() == b"first"


def test_the_other_parts_may_carry_max_other_parts_bytes_in_any_number(tmp_path: Path) -> None:
    many = b"".join(part(f"f{i}", b"", None if i % 2 else f"{i}.bin") for i in range(500))
    rest = part("stray", b"x" * (MAX_OTHER_PARTS - 5), None) + part("apk", b"again")  # exactly the cap
    assert receive(tmp_path, many + part("apk", b"apk") + rest + END).path.read_bytes() == b"apk"
    repeated = part("apk", b"apk") + part("apk", b"x" * (MAX_OTHER_PARTS + 1)) + END
    message = refused(tmp_path, repeated, OtherPartsTooLargeError)
    assert message == "The parts besides 'apk' exceed 65536 bytes."
    refused(tmp_path, part("big", b"x" * (MAX_OTHER_PARTS + 1), None) + END, OtherPartsTooLargeError)


def test_a_form_without_the_apk_part_or_no_form_at_all(tmp_path: Path) -> None:
    message = refused(tmp_path, part("other", b"x") + part("note", b"y", None) + END, FormError)
    assert message == "the form has no file part named 'apk'"
    message = refused(tmp_path, b"x", FormError, ctype="application/octet-stream")
    assert message == "the body must be multipart/form-data with a file part named 'apk'"
    message = refused(tmp_path, b"x", FormError, ctype="multipart/form-data")
    assert message == "the body must be multipart/form-data with a file part named 'apk'"


def test_a_malformed_body_is_a_form_error(tmp_path: Path) -> None:
    message = refused(tmp_path, b"--wrong-boundary\r\n" + part("apk", b"x") + END, FormError)
    assert message.startswith("malformed multipart body: ")


def test_a_body_cut_off_in_the_apk_part_is_incomplete(tmp_path: Path) -> None:
    message = refused(tmp_path, part("apk", b"y" * 20_000)[:-100], UploadIncompleteError)
    assert message == "the body ended in the middle of the APK part"


def test_a_body_cut_off_after_the_apk_part_still_carries_it(tmp_path: Path) -> None:
    body = part("apk", b"whole") + part("note", b"cut off")[:-5]
    assert receive(tmp_path, body).path.read_bytes() == b"whole"


def test_an_apk_over_the_limit_or_a_body_over_the_caps_is_too_large(tmp_path: Path) -> None:
    refused(tmp_path, part("apk", b"z" * (LIMIT + 1)) + END, UploadTooLargeError)
    assert receive(tmp_path, part("apk", b"z" * LIMIT) + END).size == LIMIT
    both_full = part("apk", b"z" * LIMIT) + part("note", b"n" * MAX_OTHER_PARTS, None) + END
    refused(tmp_path, both_full, UploadTooLargeError)  # each within its cap, the body with its headers not

"""Large one-request uploads stream to disk in bounded memory: a 200 MB Qt package and a 200 MB
portal APK grow the server's resident memory by a small fraction of their size (peak RSS from
/proc, reset before the upload), and are still answered with the dialects' usual refusals."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.portal_client import UPLOAD, add_user, make_token
from tests.support.qt import ADMIN, ADMIN_PASSWORD, qt_store

SIZE = 200 * 1024 * 1024
BOUND = 48 * 1024 * 1024  # well below the upload's size


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(key)


def _body() -> Iterator[bytes]:
    block = os.urandom(1 << 20)
    for _ in range(SIZE >> 20):
        yield block


def _peak_growth(pid: int, send) -> tuple[int, httpx.Response]:  # type: ignore[no-untyped-def]
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _kib(pid, "VmRSS")
    response = send()
    return _kib(pid, "VmHWM") - before, response


def _multipart(field: str, filename: str, fields: dict[str, str]) -> tuple[str, Iterator[bytes], int]:
    boundary = "depot-memory-test-boundary"
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head.encode()
        yield from _body()
        yield tail

    return f"multipart/form-data; boundary={boundary}", chunks(), len(head.encode()) + SIZE + len(tail)


def test_a_large_qt_upload_streams_in_bounded_memory(tmp_path: Path) -> None:
    fields = {"description": "d", "short-description": "s", "category": "Tools", "vendor": "Qt"}
    with qt_store(tmp_path) as store, httpx.Client(base_url=store.url, timeout=120) as client:
        ctype, chunks, length = _multipart("package", "big.appkg", fields)
        growth, response = _peak_growth(
            store.process.pid,
            lambda: client.post(
                "/upload",
                content=chunks,
                headers={"Content-Type": ctype, "Content-Length": str(length)},
                auth=(ADMIN, ADMIN_PASSWORD),
            ),
        )
        assert response.status_code == 200
        assert response.json()["status"] == "Package validation failed"
        assert growth < BOUND, f"the server grew by {growth / 2**20:.1f} MiB for a 200 MiB upload"
        incoming = store.data / "incoming" / "qt"
        assert [p.name for p in incoming.iterdir()] == []  # the refused package is gone


def test_a_large_portal_upload_streams_in_bounded_memory(tmp_path: Path) -> None:
    from tests.support.serving import serve_store

    data = tmp_path / "var"
    token = make_token(data, add_user(data, "dana"))
    with serve_store(tmp_path) as store, httpx.Client(base_url=store.url, timeout=120) as client:
        ctype, chunks, length = _multipart("apk", "app.apk", {})
        growth, response = _peak_growth(
            store.process.pid,
            lambda: client.post(
                UPLOAD,
                content=chunks,
                headers={
                    "Content-Type": ctype,
                    "Content-Length": str(length),
                    "Authorization": f"Bearer {token}",
                },
            ),
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "apk_malformed"
        assert growth < BOUND, f"the server grew by {growth / 2**20:.1f} MiB for a 200 MiB upload"
        incoming = store.data / "portal" / "incoming"
        assert not incoming.exists() or list(incoming.iterdir()) == []

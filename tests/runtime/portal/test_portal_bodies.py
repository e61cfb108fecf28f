"""The portal's JSON endpoints read their bodies under a cap as they arrive and refuse deep
nesting: a 200 MiB login cost +393 MiB before its 64 KiB check; 30,000 levels was a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.serving import ServedStore, serve_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedStore]:
    with serve_store(tmp_path_factory.mktemp("portal-bodies")) as served:
        yield served


def test_a_streamed_large_login_is_refused_as_it_arrives(store: ServedStore) -> None:
    def stream() -> Iterator[bytes]:
        for _ in range(256):  # 16 MiB, no Content-Length
            yield b" " * 65536

    answer = httpx.post(
        store.url + "/portal/api/login",
        content=stream(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "body_too_large"


def test_deep_json_is_a_400(store: ServedStore, tmp_path: Path) -> None:
    answer = httpx.post(
        store.url + "/portal/api/login",
        content=b"[" * 30_000 + b"]" * 30_000,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_json"
    assert httpx.get(store.url + "/healthz").json() == {"status": "ok", "database": "ok", "disk": "ok"}

"""Unauthenticated shipper endpoints read small bodies under a cap, and JSON of any nesting is a
400, never a 500 (a login with a 200 MiB JSON body cost +215 MiB; 30,000 levels of nesting
ended in RecursionError)."""

from __future__ import annotations

import httpx
import pytest

from builder.jsonsafe import nesting_depth
from tests.support.serving import ServedStore
from tests.support.shipper import served_fixtures

store, client, auth = served_fixtures("shipper-bodies")
ENDPOINTS = ("/api/v1/maintainers/login/", "/api/v2/download/build/counter/")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_deeply_nested_json_is_a_400(client: httpx.Client, path: str) -> None:
    body = b"[" * 30_000 + b"]" * 30_000
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and "JSON parse error" in answer.json()["detail"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_large_body_is_refused_before_it_is_read(client: httpx.Client, path: str) -> None:
    def stream():
        for _ in range(64):  # 4 MiB, sent as a stream without a Content-Length
            yield b" " * 65536

    answer = client.post(path, content=stream(), headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert "too large" in answer.json()["detail"]
    json_type = {"content-type": "application/json"}
    big = client.post(path, content=b"{" + b" " * 300_000 + b"}", headers=json_type)
    assert big.status_code == 413


def test_the_server_is_fine_afterwards(store: ServedStore) -> None:
    assert httpx.get(store.url + "/healthz").json() == {"status": "ok", "database": "ok", "disk": "ok"}


def test_nesting_depth_skips_strings() -> None:
    assert nesting_depth(b'{"a": "[[[[", "b": [1, {"c": "\\"]]]"}]}') == 3
    assert nesting_depth(b"[]") == 1 and nesting_depth(b"7") == 0

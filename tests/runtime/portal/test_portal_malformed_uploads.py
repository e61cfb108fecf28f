"""Malformed APKs through a real ``depot serve``: 422 with the reader's stable code, never a 500.

The cases are the ones that used to crash the upload (zlib.error, NotImplementedError,
RuntimeError, UnicodeDecodeError) or were accepted although apksigner refuses them, plus a sweep
of seeded mutants (``tests/support/apk_mutants.py``). The expected code is what the reader says
in-process (``inspect_apk`` as the portal calls it), so the test checks the HTTP mapping, and
that nothing is recorded or kept. The token is authorised before the body is read: a bad token
or a declared body over the limit is answered without reading it, and the token's scope is
compared before the signatures are checked.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from builder.portal.apk import ApkError, inspect_apk
from tests.support.apk_factory import SigningKey
from tests.support.apk_mutants import (
    MALFORMED_CASES,
    malformed_base,
    malformed_case,
    mutants,
    recipes,
    seeded_key,
)
from tests.support.portal_client import (
    UPLOAD,
    add_user,
    make_token,
    portal_store,
    stored_files,
    upload,
    version_count,
)
from tests.support.serving import ServedStore

POLICY = """
[portal]
upload_limit_bytes = 1000000
"""
CODES = {"apk_malformed", "apk_unsigned", "apk_signature_invalid", "apk_limit_exceeded"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Callable[[], SigningKey]]:
    rsa_key = seeded_key("depot-malformed-rsa", "rsa", "Depot Malformed RSA")
    ec_key = seeded_key("depot-malformed-ec", "ec", "Depot Malformed EC")
    return {"rsa": lambda: rsa_key, "ec": lambda: ec_key}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedStore]:
    with portal_store(tmp_path_factory.mktemp("portal-malformed"), POLICY) as served:
        yield served


@pytest.fixture(scope="module")
def client(store: ServedStore) -> Iterator[httpx.Client]:
    with store.client() as c:
        yield c


@pytest.fixture(scope="module")
def token(store: ServedStore) -> str:
    return make_token(store.data, add_user(store.data, "mallory"))


def _base(keys: dict[str, Callable[[], SigningKey]]) -> bytes:
    return malformed_base(keys["rsa"]())


def expected_code(data: bytes, tmp_path: Path) -> str | None:
    path = tmp_path / "expected.apk"
    path.write_bytes(data)
    try:
        inspect_apk(path)  # what the portal applies: apksigner's verdict
    except ApkError as exc:
        return exc.code
    return None


@pytest.mark.parametrize("name", MALFORMED_CASES)
def test_malformed_apks_get_422_with_the_readers_code(
    name: str,
    keys: dict[str, Callable[[], SigningKey]],
    store: ServedStore,
    client: httpx.Client,
    token: str,
    tmp_path: Path,
) -> None:
    apk = malformed_case(name, keys["rsa"]())
    code = expected_code(apk, tmp_path)
    assert code in CODES, f"{name}: the reader accepts it ({code})"
    before = (version_count(store.data), stored_files(store.data))
    response = upload(client, token, apk)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert (version_count(store.data), stored_files(store.data)) == before


def test_seeded_mutants_never_get_a_500(
    keys: dict[str, Callable[[], SigningKey]], store: ServedStore, client: httpx.Client, tmp_path: Path
) -> None:
    chosen = [
        r
        for r in recipes(keys)
        if r.name in {"v1v2-rsa-min23", "zip-descriptors", "v2-rsa-min24", "v1-rsa-sha1-min3"}
    ]
    bases = {r.name: r.build() for r in chosen}
    sweeper = make_token(store.data, add_user(store.data, "sweeper"))
    seen = set()
    for m in mutants(bases, seed=7, per_base=12):
        response = upload(client, sweeper, m.data)
        assert response.status_code in (201, 409, 422), f"{m.name}: {response.status_code} {response.text}"
        if response.status_code == 422:
            assert response.json()["error"]["code"] in CODES, m.name
            assert response.json()["error"]["code"] == expected_code(m.data, tmp_path), m.name
        seen.add(response.status_code)
    assert 422 in seen and 201 in seen
    log = store.log.read_text(errors="replace")
    assert "Traceback" not in log and "the APK reader failed" not in log


def test_the_scope_is_compared_before_the_signatures_are_checked(
    keys: dict[str, Callable[[], SigningKey]], store: ServedStore, client: httpx.Client
) -> None:
    scoped = make_token(store.data, add_user(store.data, "scoped"), scope="com.example.only")
    tampered = malformed_case("flipped-byte-in-manifest-mf", keys["rsa"]())  # another package, broken
    response = upload(client, scoped, tampered)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "token_scope"


def _raw_post(store: ServedStore, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST with a huge declared body and send none of it: the answer must come anyway."""
    url = urlparse(store.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.putrequest("POST", UPLOAD)
        for key, value in {"Content-Type": "multipart/form-data; boundary=x", **headers}.items():
            conn.putheader(key, value)
        conn.putheader("Content-Length", str(10**9))
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_bad_tokens_and_oversized_bodies_are_answered_before_the_body_is_read(
    store: ServedStore, token: str
) -> None:
    status, body = _raw_post(store, {"Authorization": "Bearer depot_ci_not-a-token"})
    assert status == 401 and b"token_invalid" in body
    status, body = _raw_post(store, {"Authorization": f"Bearer {token}"})
    assert status == 413 and b"upload_too_large" in body

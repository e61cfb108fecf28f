"""The CI portal's HTTP API against a real `depot serve`, with APKs built by the tests: the
counterparts of the fixture APKs (``apk_factory.fixture_like``) and others. The real fixture APKs
get the same verdicts in an extra check at the end, when ../shared/fixtures is there."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.apk_factory import build_apk, fixture_like, other_key
from tests.support.paths import needs_shared_fixtures
from tests.support.portal_client import (
    PASSWORD,
    UPLOAD,
    add_user,
    bearer,
    fixture,
    make_token,
    portal_store,
    stored_files,
    upload,
    version_count,
    wait_validation,
)
from tests.support.serving import ServedStore

POLICY = """
[portal]
forbidden_permissions = ["android.permission.READ_SMS"]
review_permissions = ["android.permission.CAMERA"]
upload_limit_bytes = 200000
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    with portal_store(tmp_path_factory.mktemp("portal"), POLICY) as served:
        yield served


@pytest.fixture(scope="module")
def client(store: ServedStore) -> httpx.Client:
    with store.client() as c:
        yield c


@pytest.fixture(scope="module")
def alice(store: ServedStore) -> tuple[int, str]:
    uid = add_user(store.data, "alice")
    return uid, make_token(store.data, uid)


@pytest.fixture(scope="module")
def bob(store: ServedStore) -> tuple[int, str]:
    uid = add_user(store.data, "bob")
    return uid, make_token(store.data, uid)


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_signed_release_apk_is_accepted(client: httpx.Client, store: ServedStore, alice) -> None:
    apk = fixture_like("com.politedroid_3.apk")
    response = upload(client, alice[1], apk)
    assert response.status_code == 201, response.text
    body = response.json()
    version = body["version"]
    assert set(version) == {"id", "app_id", "version_code", "version_name", "status"}
    assert version["version_code"] == 3 and version["version_name"] == "1.2"
    assert version["status"] == "draft"
    assert set(body["validation_run"]) == {"id", "status"} and body["validation_run"]["status"] == "running"
    assert body["size"] == len(apk)
    assert body["sha256"] == hashlib.sha256(apk).hexdigest()
    assert (store.data / "portal" / "apks" / f"{version['id']}.apk").read_bytes() == apk

    run = wait_validation(client, alice[1], version["id"])
    assert run["id"] == body["validation_run"]["id"]
    assert run["status"] == "passed" and run["findings"] == []
    got = client.get(f"/portal/api/versions/{version['id']}", headers=bearer(alice[1])).json()
    assert got == {
        "id": version["id"],
        "app_id": version["app_id"],
        "package": "com.politedroid",
        "version_code": 3,
        "version_name": "1.2",
        "status": "in_review",
        "open_issue_count": 0,
    }
    release = client.get(f"/portal/api/versions/{version['id']}/release", headers=bearer(alice[1])).json()
    assert release["live"] is False and release["targets"] == {"countries": [], "vehicle_contexts": []}


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("golden-aligned-in.apk", "apk_unsigned"),
        ("empty-unsigned.apk", "apk_malformed"),
        ("v2-only-truncated-cd.apk", "apk_malformed"),
        ("golden-aligned-v1v2-out-tampered.apk", "apk_signature_invalid"),
        ("v2-only-with-rsa-pkcs1-sha256-2048-sig-does-not-verify.apk", "apk_signature_invalid"),
    ],
)
def test_unsigned_malformed_tampered_and_broken_apks_get_422(
    client: httpx.Client, store: ServedStore, bob, name: str, code: str
) -> None:
    before = (version_count(store.data), stored_files(store.data))
    assert_error(upload(client, bob[1], fixture_like(name)), 422, code)
    assert (version_count(store.data), stored_files(store.data)) == before


def test_not_an_apk_at_all_gets_422(client: httpx.Client, bob) -> None:
    assert_error(upload(client, bob[1], b"<html>not an apk</html>"), 422, "apk_malformed")
    assert_error(upload(client, bob[1], b""), 422, "apk_malformed")


def test_debug_signed_apk_gets_the_blocking_debug_certificate_finding(client: httpx.Client, bob) -> None:
    response = upload(client, bob[1], fixture_like("Test-debug.apk"))
    assert response.status_code == 201, response.text
    vid = response.json()["version"]["id"]
    run = wait_validation(client, bob[1], vid)
    assert run["status"] == "failed"
    codes = {f["code"]: f for f in run["findings"]}
    assert codes["debug_certificate"]["severity"] == "blocking"
    assert "CN=Android Debug, O=Android, C=US" in codes["debug_certificate"]["message"]
    version = client.get(f"/portal/api/versions/{vid}", headers=bearer(bob[1])).json()
    assert version["status"] == "draft"
    assert version["open_issue_count"] == len(run["findings"])


def test_debuggable_and_permission_policy_findings(client: httpx.Client, bob, tmp_path: Path) -> None:
    apk = build_apk(
        package="com.example.policy",
        version_code=5,
        debuggable=True,
        permissions=(
            "android.permission.READ_SMS",
            "android.permission.CAMERA",
            "android.permission.INTERNET",
        ),
    )
    vid = upload(client, bob[1], apk).json()["version"]["id"]
    run = wait_validation(client, bob[1], vid)
    found = sorted((f["code"], f["severity"]) for f in run["findings"])
    assert found == [
        ("debuggable", "blocking"),
        ("permission_forbidden", "blocking"),
        ("permission_review", "warning"),
    ]
    assert run["status"] == "failed"


def test_v2_only_apk_below_api_24_is_refused_as_apksigner_refuses_it(client: httpx.Client, alice) -> None:
    """minSdk 23 devices verify only v1 signatures: apksigner's verdict on a v2-only APK is
    "DOES NOT VERIFY" (Missing META-INF/MANIFEST.MF), and so is the portal's."""
    response = upload(client, alice[1], fixture_like("v2-only-with-rsa-pkcs1-sha256-2048.apk"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "apk_signature_invalid"
    assert "MANIFEST.MF" in response.json()["error"]["message"]
    accepted = upload(client, alice[1], fixture_like("golden-aligned-v1v2-out.apk"))  # v1 + v2, minSdk 23
    assert accepted.status_code == 201, accepted.text


def test_version_code_must_increase(client: httpx.Client, store: ServedStore, alice) -> None:
    # tinyapp is at versionCode 10 (previous test); this build has versionCode 10 too, other bytes
    before = (version_count(store.data), stored_files(store.data))
    error = assert_error(
        upload(client, alice[1], fixture_like("golden-aligned-v1v2v3-out.apk")),
        409,
        "version_code_not_incremented",
    )
    assert error["details"] == {"version_code": 10, "highest_version_code": 10}
    assert "10" in error["message"]
    assert (version_count(store.data), stored_files(store.data)) == before
    newer = upload(client, alice[1], fixture_like("com.politedroid_4.apk"))  # 4 > 3: accepted
    assert newer.status_code == 201, newer.text


def test_retrying_the_same_upload_returns_the_original_answer(
    client: httpx.Client, store: ServedStore, bob
) -> None:
    apk = build_apk(package="com.example.retry", version_code=1)
    first = upload(client, bob[1], apk)
    assert first.status_code == 201
    count = version_count(store.data)
    again = upload(client, bob[1], apk)
    assert again.status_code == 201
    assert again.json() == first.json()

    apk2 = build_apk(package="com.example.retry", version_code=2)
    keyed = upload(client, bob[1], apk2, headers={"Idempotency-Key": "build-42"})
    assert keyed.status_code == 201
    replay = upload(client, bob[1], apk2, headers={"Idempotency-Key": "build-42"})
    assert replay.status_code == 201 and replay.json() == keyed.json()
    assert version_count(store.data) == count + 1

    other = build_apk(package="com.example.retry", version_code=3)
    assert_error(
        upload(client, bob[1], other, headers={"Idempotency-Key": "build-42"}), 409, "idempotency_key_reused"
    )
    assert version_count(store.data) == count + 1


def test_checksum_header_is_verified(client: httpx.Client, bob) -> None:
    apk = build_apk(package="com.example.checksum", version_code=1)
    assert_error(
        upload(client, bob[1], apk, headers={"X-Content-SHA256": "0" * 64}), 400, "checksum_mismatch"
    )


def test_signer_change_is_a_blocking_finding(client: httpx.Client, bob) -> None:
    first = upload(client, bob[1], build_apk(package="com.example.pinned", version_code=1))
    run = wait_validation(client, bob[1], first.json()["version"]["id"])
    assert run["status"] == "passed"  # pins the signer
    second = upload(client, bob[1], build_apk(package="com.example.pinned", version_code=2, key=other_key()))
    assert second.status_code == 201
    run = wait_validation(client, bob[1], second.json()["version"]["id"])
    assert run["status"] == "failed"
    assert [f["code"] for f in run["findings"]] == ["signer_changed"]
    assert run["findings"][0]["severity"] == "blocking"


def test_token_failures_get_401_and_store_nothing(client: httpx.Client, store: ServedStore, bob) -> None:
    uid = bob[0]
    revoked = make_token(store.data, uid)
    from runtime.storage import open_database
    from runtime.tokens import Tokens, token_hash

    db = open_database(store.data)
    row = db.table("tokens").rows_where("token_hash = ?", [token_hash(revoked)])[0]
    Tokens(db).revoke(row["id"])
    db.close()
    expired = make_token(store.data, uid, expires_in=timedelta(seconds=-1))
    apk = build_apk(package="com.example.auth", version_code=1)
    before = (version_count(store.data), stored_files(store.data))
    assert_error(upload(client, None, apk), 401, "token_missing")
    assert_error(upload(client, "depot_ci_" + "x" * 43, apk), 401, "token_invalid")
    assert_error(upload(client, revoked, apk), 401, "token_revoked")
    assert_error(upload(client, expired, apk), 401, "token_expired")
    response = client.post(UPLOAD, files={"apk": ("a.apk", apk)}, headers={"Authorization": "Basic Ym9iOng="})
    assert_error(response, 401, "token_missing")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert (version_count(store.data), stored_files(store.data)) == before


def test_wrong_package_scope_and_foreign_package_get_403(
    client: httpx.Client, store: ServedStore, alice, bob
) -> None:
    scoped = make_token(store.data, bob[0], scope="com.example.only")
    before = (version_count(store.data), stored_files(store.data))
    error = assert_error(
        upload(client, scoped, build_apk(package="com.example.other", version_code=1)), 403, "token_scope"
    )
    assert "com.example.only" in error["message"]
    # alice owns com.politedroid (she uploaded it first)
    assert_error(upload(client, bob[1], fixture_like("com.politedroid_4.apk")), 403, "package_not_owned")
    tinyapp = fixture_like("golden-aligned-v1v2v3-out.apk")
    assert_error(upload(client, bob[1], tinyapp), 403, "package_not_owned")
    assert (version_count(store.data), stored_files(store.data)) == before
    ok = upload(client, scoped, build_apk(package="com.example.only", version_code=1))
    assert ok.status_code == 201


def test_versions_of_other_accounts_are_not_visible(client: httpx.Client, alice, bob) -> None:
    vid = upload(client, bob[1], build_apk(package="com.example.private", version_code=1)).json()["version"][
        "id"
    ]
    for suffix in ("", "/validation", "/release"):
        assert_error(
            client.get(f"/portal/api/versions/{vid}{suffix}", headers=bearer(alice[1])),
            404,
            "version_not_found",
        )
    assert_error(client.get("/portal/api/versions/nope", headers=bearer(bob[1])), 404, "version_not_found")


def test_bad_requests_have_the_error_shape(client: httpx.Client, store: ServedStore, bob) -> None:
    before = stored_files(store.data)
    assert_error(client.post(UPLOAD, content=b"x", headers=bearer(bob[1])), 400, "invalid_multipart")
    no_part = client.post(UPLOAD, files={"other": ("a.apk", b"x")}, headers=bearer(bob[1]))
    assert_error(no_part, 400, "invalid_multipart")
    assert_error(upload(client, bob[1], b"\0" * 300_000), 413, "upload_too_large")
    assert_error(client.get("/portal/api/nothing-here"), 404, "not_found")
    assert stored_files(store.data) == before


def test_an_upload_cut_off_mid_body_leaves_nothing_behind(store: ServedStore, bob) -> None:
    apk = fixture_like("com.politedroid_4.apk")
    boundary = "cutcutcut"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="apk"; filename="a.apk"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + apk + f"\r\n--{boundary}--\r\n".encode()
    before = (version_count(store.data), stored_files(store.data))
    host, port = store.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            (
                f"POST {UPLOAD} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bob[1]}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[: len(body) // 2]
        )
        time.sleep(0.2)  # let the server write the first half to its temporary file
    for _ in range(200):
        if (version_count(store.data), stored_files(store.data)) == before:
            break
        time.sleep(0.025)
    assert (version_count(store.data), stored_files(store.data)) == before


def test_ci_token_endpoints_with_a_portal_session(client: httpx.Client, store: ServedStore) -> None:
    add_user(store.data, "dana")
    assert_error(client.get("/portal/api/ci-tokens"), 401, "session_missing")
    bad = client.post("/portal/api/login", json={"name": "dana", "password": "wrong password"})
    assert_error(bad, 401, "invalid_credentials")
    with httpx.Client(base_url=store.url, timeout=10) as session:
        assert (
            session.post("/portal/api/login", json={"name": "dana", "password": PASSWORD}).status_code == 200
        )
        created = session.post(
            "/portal/api/ci-tokens", json={"name": "github", "app": "com.example.dana", "expires_days": 30}
        )
        assert created.status_code == 201
        secret = created.json()["secret"]
        token = created.json()["token"]
        assert secret.startswith("depot_ci_") and secret.startswith(token["prefix"])
        assert token["scope"] == "com.example.dana" and token["expires"]
        assert_error(
            session.post("/portal/api/ci-tokens", json={"expires_days": 5000}), 400, "invalid_request"
        )

        assert (
            upload(session, secret, build_apk(package="com.example.dana", version_code=1)).status_code == 201
        )
        listed = session.get("/portal/api/ci-tokens").json()["tokens"]
        assert [t["id"] for t in listed] == [token["id"]]
        assert listed[0]["last_used"] is not None
        assert secret not in session.get("/portal/api/ci-tokens").text

        assert session.delete(f"/portal/api/ci-tokens/{token['id']}").status_code == 204
        assert_error(session.delete(f"/portal/api/ci-tokens/{token['id']}"), 404, "token_not_found")
        assert session.get("/portal/api/ci-tokens").json()["tokens"] == []
        assert_error(
            upload(session, secret, build_apk(package="com.example.dana", version_code=2)),
            401,
            "token_revoked",
        )


# -- the real fixture APKs (extra check) -----------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, separate_database) -> tuple[httpx.Client, str]:
    """A store of its own for the real APKs: their packages are those of the generated ones."""
    with contextlib.ExitStack() as stack:
        with separate_database():  # and a database of its own, on PostgreSQL
            served = stack.enter_context(portal_store(tmp_path_factory.mktemp("portal-real"), POLICY))
            token = make_token(served.data, add_user(served.data, "carol"))
        yield stack.enter_context(served.client()), token


# In upload order: (file, HTTP status, the error code or the validation finding; "" = passed)
REAL_UPLOADS = [
    ("com.politedroid_3.apk", 201, ""),
    ("golden-aligned-in.apk", 422, "apk_unsigned"),
    ("empty-unsigned.apk", 422, "apk_malformed"),
    ("v2-only-truncated-cd.apk", 422, "apk_malformed"),
    ("golden-aligned-v1v2-out-tampered.apk", 422, "apk_signature_invalid"),
    ("v2-only-with-rsa-pkcs1-sha256-2048-sig-does-not-verify.apk", 422, "apk_signature_invalid"),
    ("Test-debug.apk", 201, "debug_certificate"),
    ("v2-only-with-rsa-pkcs1-sha256-2048.apk", 422, "apk_signature_invalid"),  # minSdk 23 needs v1
    ("golden-aligned-v1v2v3-out.apk", 201, ""),
    ("com.politedroid_4.apk", 201, ""),
]
# size and SHA-256 as ../shared/fixtures/README.md states them
README_FILES = {
    "com.politedroid_3.apk": (17552, "665d03d61ebc642289fda697f71a59305b0202b16cafc5ffdae91cbe91f0b25d")
}


@needs_shared_fixtures
@pytest.mark.parametrize(("name", "status", "outcome"), REAL_UPLOADS, ids=[u[0] for u in REAL_UPLOADS])
def test_real_fixture_apks_get_the_verdicts_of_their_counterparts(
    real: tuple[httpx.Client, str], name: str, status: int, outcome: str
) -> None:
    client, token = real
    apk = fixture(name)
    response = upload(client, token, apk)
    assert response.status_code == status, response.text
    if status != 201:
        assert response.json()["error"]["code"] == outcome
        return
    body = response.json()
    assert (body["size"], body["sha256"]) == (len(apk), hashlib.sha256(apk).hexdigest())
    if name in README_FILES:
        assert (body["size"], body["sha256"]) == README_FILES[name]
    run = wait_validation(client, token, body["version"]["id"])
    codes = [f["code"] for f in run["findings"]]
    if outcome:
        assert outcome in codes and run["status"] == "failed"
    else:
        assert codes == [] and run["status"] == "passed"

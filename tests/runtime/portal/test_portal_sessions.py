"""Portal sessions live in the database: logout and a password change end them, so a copied
cookie stops working; the cookie is an opaque random token, HttpOnly and path-scoped."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtime.storage import open_database
from tests.support.portal_client import PASSWORD, add_user, make_token
from tests.support.qt import DEVICE
from tests.support.serving import ServedStore, depot_command, serve_store

COOKIE = "depot_portal_session"
TOKENS = "/portal/api/ci-tokens"
NEW_PASSWORD = "a brand new password"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ServedStore]:
    with serve_store(tmp_path, env={"DEPOT_SECRET_KEY": "portal-session-test-key-of-32-bytes"}) as served:
        yield served


def login(store: ServedStore, client: httpx.Client, name: str, password: str = PASSWORD) -> str:
    response = client.post("/portal/api/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    return response.cookies[COOKIE]


def copied(store: ServedStore, cookie: str) -> httpx.Client:
    return httpx.Client(base_url=store.url, cookies={COOKIE: cookie}, timeout=30)


def change_password(data: Path, name: str, password: str) -> None:
    done = subprocess.run(
        depot_command("user", "add", name, "--password-stdin", "--data", str(data)),
        input=password + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_cookie_is_an_opaque_revocable_token(store: ServedStore) -> None:
    add_user(store.data, "dana")
    with httpx.Client(base_url=store.url, timeout=30) as c:
        response = c.post("/portal/api/login", json={"name": "dana", "password": PASSWORD})
        header = response.headers["set-cookie"].lower()
        assert "httponly" in header and "path=/portal/api" in header and "samesite=" in header
        assert "secure" not in header  # plain http here
        cookie = response.cookies[COOKIE]
        assert cookie.startswith("depot_portal_session_")
    db = open_database(store.data)
    try:
        rows = db.table("tokens").rows_where("purpose = 'portal_session'")
        assert len(rows) == 1 and rows[0]["expires"]  # 12 hours, stored as a hash only
        assert cookie not in str(rows[0])
    finally:
        db.close()


def test_copied_cookie_stops_working_after_logout(store: ServedStore) -> None:
    add_user(store.data, "dana")
    with httpx.Client(base_url=store.url, timeout=30) as c:
        cookie = login(store, c, "dana")
        with copied(store, cookie) as thief:
            assert thief.get(TOKENS).status_code == 200
        assert c.post("/portal/api/logout").status_code == 204
        assert c.get(TOKENS).status_code == 401
        assert c.post("/portal/api/logout").status_code == 204  # twice is harmless
    with copied(store, cookie) as thief:
        refused = thief.get(TOKENS)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "session_invalid"
        assert thief.post(TOKENS, json={"name": "stolen"}).status_code == 401


def test_password_change_ends_sessions(store: ServedStore) -> None:
    add_user(store.data, "dana")
    add_user(store.data, "erin")
    with httpx.Client(base_url=store.url, timeout=30) as c, httpx.Client(base_url=store.url) as other:
        cookie = login(store, c, "dana")
        login(store, other, "erin")
        assert c.get(TOKENS).status_code == 200
        change_password(store.data, "dana", NEW_PASSWORD)
        assert c.get(TOKENS).status_code == 401
        with copied(store, cookie) as thief:
            assert thief.get(TOKENS).json()["error"]["code"] == "session_invalid"
        assert other.get(TOKENS).status_code == 200  # another user's session is untouched
        bad = c.post("/portal/api/login", json={"name": "dana", "password": PASSWORD})
        assert bad.status_code == 401
        login(store, c, "dana", NEW_PASSWORD)
        assert c.get(TOKENS).status_code == 200


def test_forged_and_foreign_cookies_are_refused(store: ServedStore) -> None:
    user_id = add_user(store.data, "dana")
    ci_token = make_token(store.data, user_id)  # a live token of another purpose
    for value in ("depot_portal_session_forged", ci_token, "", "x" * 5000):
        with copied(store, value) as c:
            response = c.get(TOKENS)
            assert response.status_code == 401
            assert response.json()["error"]["code"] in ("session_invalid", "session_missing")


def test_password_change_ends_qt_sessions(tmp_path: Path) -> None:
    from tests.support.qt import USER, USER_PASSWORD, qt_store

    with qt_store(tmp_path) as store, httpx.Client(base_url=store.url, timeout=30) as c:
        purchase = {"id": "com.example.plain", "device_id": DEVICE}
        assert c.get("/login", params={"username": USER, "password": USER_PASSWORD}).json() == {
            "status": "ok"
        }
        assert c.get("/app/purchase", params=purchase).json()["status"] == "ok"
        change_password(store.data, USER, NEW_PASSWORD)
        assert c.get("/app/purchase", params=purchase).status_code == 403
        assert c.get("/logout").json() == {"status": "failed"}

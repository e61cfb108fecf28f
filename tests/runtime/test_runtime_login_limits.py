"""Failed-login limits shared by every password login (shipper, Qt /login and /upload, portal):
after N failures from one address an account is refused there even with the right password until
the window ends, other accounts still log in, a success forgets the failures, and a stranger's
failures never lock the owner out of the addresses the owner logs in from."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtime.ratelimit import LoginRates, LoginThrottledError, Rate, guarded_login
from runtime.storage import open_database
from tests.support.qt import ADMIN, ADMIN_PASSWORD, DEVICE, SECRET, USER, USER_PASSWORD, add_user
from tests.support.serving import ServedStore, serve_store

# Day-long windows, so a window boundary cannot fall inside the test in practice.
LIMITS = {"DEPOT_LOGIN_ACCOUNT_RATE": "2/day", "DEPOT_LOGIN_ADDRESS_RATE": "50/day"}
PURCHASE = {"id": "com.example.plain", "device_id": DEVICE}


class Checker:
    """A password check that counts its calls (each real one costs a slow hash)."""

    def __init__(self, password: str) -> None:
        self.password, self.calls = password, 0

    def __call__(self, name: str, given: str) -> object:
        def check() -> str | None:
            self.calls += 1
            return name if given == self.password else None

        return check


RATES = LoginRates(pair=Rate(2, 60), address=Rate(5, 60), account=Rate(4, 3600))


def attempt(db, check: Checker, name: str, given: str, now: float, address: str = "10.0.0.1") -> object:
    return asyncio.run(guarded_login(db, name, address, RATES, check(name, given), now=now))


def test_guarded_login_with_explicit_time(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    check = Checker("right")
    assert attempt(db, check, "alice", "wrong", 120.0) is None
    assert attempt(db, check, "Alice", "wrong", 125.0) is None  # names count case-insensitively
    with pytest.raises(LoginThrottledError) as refused:
        attempt(db, check, "alice", "right", 130.0)
    assert refused.value.retry_after == 50
    assert check.calls == 2  # refused without spending a password hash
    assert attempt(db, check, "bob", "right", 131.0) == "bob"  # another account is not affected
    assert attempt(db, check, "alice", "right", 180.0) == "alice"  # the window passed
    # a success forgets the failures: fail, succeed, fail, and the right password still works
    assert attempt(db, check, "alice", "wrong", 181.0) is None
    assert attempt(db, check, "alice", "right", 182.0) == "alice"
    assert attempt(db, check, "alice", "wrong", 183.0) is None
    assert attempt(db, check, "alice", "right", 184.0) == "alice"


def test_guarded_login_per_address(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    check = Checker("right")
    for n in range(5):
        assert attempt(db, check, f"user{n}", "wrong", 300.0) is None
    with pytest.raises(LoginThrottledError):
        attempt(db, check, "carol", "right", 301.0)
    assert attempt(db, check, "carol", "right", 301.0, address="10.0.0.2") == "carol"
    assert attempt(db, check, "carol", "right", 360.0) == "carol"  # the next window


def test_a_stranger_cannot_lock_the_owner_out(tmp_path: Path) -> None:
    """The public maintainer list names every account: ten wrong passwords from one address
    used to lock the account for its owner everywhere."""
    db = open_database(tmp_path)
    check = Checker("right")
    assert attempt(db, check, "dana", "right", 1000.0, address="192.0.2.10") == "dana"  # her address
    for n in range(2):  # a stranger guesses from two addresses until each pair is locked
        for _ in range(2):
            assert attempt(db, check, "dana", "wrong", 1001.0, address=f"198.51.100.{n}") is None
        with pytest.raises(LoginThrottledError):
            attempt(db, check, "dana", "right", 1002.0, address=f"198.51.100.{n}")
    # the account-wide limit (4 a window) is used up by the stranger's addresses...
    with pytest.raises(LoginThrottledError):
        attempt(db, check, "dana", "right", 1003.0, address="203.0.113.7")  # a new address waits
    # ...but the owner's own address is never locked by it
    assert attempt(db, check, "dana", "right", 1004.0, address="192.0.2.10") == "dana"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ServedStore]:
    data = tmp_path / "var"
    add_user(data, USER, USER_PASSWORD)
    add_user(data, ADMIN, ADMIN_PASSWORD, staff=True)
    with serve_store(tmp_path, env={"DEPOT_SECRET_KEY": SECRET, **LIMITS}) as served:
        yield served


def qt_login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    return client.get("/login", params={"username": name, "password": password})


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def test_qt_login_and_upload_are_limited(store: ServedStore) -> None:
    with httpx.Client(base_url=store.url, timeout=30) as c:
        for _ in range(2):
            failed = qt_login(c, USER, "wrong password")
            assert failed.json() == {"status": "authentication-failed"}
            assert "retry-after" not in failed.headers
        refused = qt_login(c, USER, USER_PASSWORD)  # the right password, but the account is locked
        assert refused.status_code == 200
        assert refused.json()["status"] == "authentication-failed"
        assert "too many failed logins" in refused.json()["error"]
        assert 1 <= int(refused.headers["retry-after"]) <= 86400
        assert c.get("/app/purchase", params=PURCHASE).status_code == 403  # not logged in
        # Basic auth on /upload counts against the same account
        upload = c.post("/upload", headers=basic(USER, USER_PASSWORD))
        assert upload.status_code == 429
        assert upload.json()["status"] == "failed"
        assert 1 <= int(upload.headers["retry-after"]) <= 86400
        # and so does the portal's login
        portal = c.post("/portal/api/login", json={"name": USER, "password": USER_PASSWORD})
        assert portal.status_code == 429
    with httpx.Client(base_url=store.url, timeout=30) as c:  # another account is not affected
        assert qt_login(c, ADMIN, ADMIN_PASSWORD).json() == {"status": "ok"}
        assert c.get("/app/purchase", params=PURCHASE).json()["status"] == "ok"


def test_qt_upload_basic_failures_lock_the_account(store: ServedStore) -> None:
    with httpx.Client(base_url=store.url, timeout=30) as c:
        for _ in range(2):
            bad = c.post("/upload", headers=basic(ADMIN, "wrong password"))
            assert bad.status_code == 401
            assert bad.headers["www-authenticate"] == 'Basic realm=""'
        assert c.post("/upload", headers=basic(ADMIN, ADMIN_PASSWORD)).status_code == 429
        assert qt_login(c, ADMIN, ADMIN_PASSWORD).json()["status"] == "authentication-failed"
        assert qt_login(c, USER, USER_PASSWORD).json() == {"status": "ok"}


def test_success_resets_the_count(store: ServedStore) -> None:
    with httpx.Client(base_url=store.url, timeout=30) as c:
        for _ in range(3):  # with a limit of 2, these would lock without the reset
            assert qt_login(c, USER, "wrong password").json() == {"status": "authentication-failed"}
            assert qt_login(c, USER, USER_PASSWORD).json() == {"status": "ok"}


def test_portal_login_is_limited(store: ServedStore) -> None:
    with httpx.Client(base_url=store.url, timeout=30) as c:
        for _ in range(2):
            bad = c.post("/portal/api/login", json={"name": ADMIN, "password": "wrong password"})
            assert bad.status_code == 401
            assert bad.json()["error"]["code"] == "invalid_credentials"
        refused = c.post("/portal/api/login", json={"name": ADMIN, "password": ADMIN_PASSWORD})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_attempts"
        seconds = int(refused.headers["retry-after"])
        assert 1 <= seconds <= 86400
        assert str(seconds) in refused.json()["error"]["message"]
        assert "depot_portal_session" not in refused.cookies
        assert c.get("/portal/api/ci-tokens").status_code == 401
        ok = c.post("/portal/api/login", json={"name": USER, "password": USER_PASSWORD})
        assert ok.status_code == 200
        assert c.get("/portal/api/ci-tokens").status_code == 200

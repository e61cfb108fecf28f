"""Rate limits kept in SQLite: anonymous and per-user request rates answer 429 with Retry-After
and DRF's detail (shippy sleeps for the first number in it); failed logins are limited per
account and per address."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from runtime.ratelimit import Rate, RateLimiter, throttled_detail
from runtime.storage import open_database
from tests.support.shipper import PASSWORD, USER, shipper_store

# Day-long windows, so a window boundary cannot fall inside the test in practice.
LIMITS = {
    "DEPOT_SHIPPER_ANON_RATE": "8/day",
    "DEPOT_SHIPPER_USER_RATE": "3/day",
    "DEPOT_LOGIN_ACCOUNT_RATE": "2/day",
    "DEPOT_LOGIN_ADDRESS_RATE": "3/day",
}
LOGIN = "/api/v1/maintainers/login/"


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429
    seconds = int(response.headers["retry-after"])
    assert 1 <= seconds <= 86400
    assert response.json() == {"detail": throttled_detail(seconds)}
    assert int(re.findall(r"\d+", response.json()["detail"])[0]) == seconds  # what shippy reads


def test_rates_parse() -> None:
    assert Rate.parse("10/minute") == Rate(10, 60)
    assert Rate.parse("10/second") == Rate(10, 1)
    assert Rate.parse("5/15min") == Rate(5, 900)
    assert Rate.parse("off") is None
    with pytest.raises(ValueError):
        Rate.parse("ten per minute")
    assert throttled_detail(1) == "Request was throttled. Expected available in 1 second."


def test_fixed_windows(tmp_path: Path) -> None:
    limiter = RateLimiter(open_database(tmp_path))
    rate = Rate(2, 60)
    assert limiter.hit("k", rate, now=120.0) is None
    assert limiter.hit("k", rate, now=130.0) is None
    assert limiter.hit("k", rate, now=150.5) == 30
    assert limiter.blocked("k", rate, now=151.0) == 29
    assert limiter.hit("other", rate, now=151.0) is None
    assert limiter.hit("k", rate, now=180.0) is None  # a new window
    assert limiter.hit("k", None, now=181.0) is None


def test_limits_against_depot_serve(tmp_path: Path) -> None:
    with shipper_store(tmp_path, env=LIMITS) as store, store.client() as client:
        token = client.post(LOGIN, data={"username": USER, "password": PASSWORD}).json()["token"]  # anon 1
        auth = {"Authorization": f"Token {token}"}
        for _ in range(3):
            assert client.get("/api/v1/maintainers/token_check/", headers=auth).status_code == 200
        assert_throttled(client.get("/api/v1/maintainers/token_check/", headers=auth))
        # failed logins: the account locks after two, even for the right password
        for _ in range(2):
            assert (
                client.post(LOGIN, data={"username": USER, "password": "wrong"}).status_code == 404
            )  # anon 2, 3
        assert_throttled(client.post(LOGIN, data={"username": USER, "password": PASSWORD}))  # anon 4
        # the address locks after three failures, whatever the account
        assert (
            client.post(LOGIN, data={"username": "other_user", "password": "no"}).status_code == 404
        )  # anon 5
        assert_throttled(
            client.post(LOGIN, data={"username": "other_user", "password": "password2"})
        )  # anon 6
        # anonymous requests per address
        for _ in range(2):
            assert client.get("/api/v1/download/count/all/").status_code == 200  # anon 7, 8
        assert_throttled(client.get("/api/v1/download/count/all/"))
        # static files are never throttled
        assert client.get("/api/v1/updater/los/bullhead/gapps/").status_code == 200

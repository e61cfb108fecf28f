"""The console's frame: sign-in, sessions, the guard, CSRF and the security headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.console.session import COOKIE
from tests.support.console import PASSWORD, ConsoleStore, console_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsoleStore]:
    with console_store(tmp_path) as s:
        yield s


def test_a_page_needs_a_session_and_sends_back_after_sign_in(store: ConsoleStore) -> None:
    answer = store.client.get("/console/", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login?next=/console/"
    login = store.client.get("/console/login?next=/console/")
    assert login.status_code == 200 and 'name="password"' in login.text
    assert "default-src 'self'" in login.headers["content-security-policy"]
    answer = store.client.post(
        "/console/login",
        data={"name": "dev", "password": PASSWORD, "next": "/console/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = answer.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie  # plain http here
    home = store.client.get("/console/")
    assert home.status_code == 200 and "Hello, dev" in home.text
    assert home.headers["cache-control"] == "no-store"


def test_secure_cookie_behind_https(store: ConsoleStore) -> None:
    answer = store.client.post(
        "/console/login",
        data={"name": "dev", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
        follow_redirects=False,
    )
    assert "Secure" in answer.headers["set-cookie"]


def test_wrong_password_and_open_redirects(store: ConsoleStore) -> None:
    wrong = store.client.post("/console/login", data={"name": "dev", "password": "nope"})
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
    for target in (
        "https://evil.example/",
        "//evil.example/",
        "/console/../x",
        "/elsewhere",
        "/console\\@evil",
    ):
        answer = store.client.post(
            "/console/login",
            data={"name": "dev", "password": PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert answer.headers["location"] in ("/console/", target) and answer.headers["location"].startswith(
            "/console/"
        )
        assert "evil" not in answer.headers["location"]


def test_forms_need_the_sessions_csrf_token_and_this_origin(store: ConsoleStore) -> None:
    csrf = store.sign_in("dev")
    assert store.client.post("/console/logout", data={}).status_code == 403
    assert store.client.post("/console/logout", data={"csrf": "0" * 64}).status_code == 403
    cross = store.client.post(
        "/console/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert store.client.get("/console/").status_code == 200  # still signed in
    out = store.client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert store.client.get("/console/", follow_redirects=False).status_code == 303


def test_a_copied_cookie_dies_with_the_session_and_sign_out_everywhere(store: ConsoleStore) -> None:
    def use(cookie: str | None) -> int:
        store.client.cookies.clear()
        if cookie:
            store.client.cookies.set(COOKIE, cookie)
        return store.client.get("/console/", follow_redirects=False).status_code

    csrf = store.sign_in("dev")
    stolen = store.client.cookies.get(COOKIE)
    store.client.post("/console/logout", data={"csrf": csrf})
    assert use(stolen) == 303

    use(None)
    store.sign_in("dev")
    laptop = store.client.cookies.get(COOKIE)
    use(None)
    store.sign_in("dev")  # a second session, on a phone
    phone = store.client.cookies.get(COOKIE)
    assert use(laptop) == 200 and use(phone) == 200
    store.client.post("/console/logout", data={"csrf": store.csrf(), "everywhere": "1"})
    assert use(laptop) == 303 and use(phone) == 303


def test_a_huge_or_many_fielded_form_is_refused(store: ConsoleStore) -> None:
    csrf = store.sign_in("dev")
    assert store.client.post("/console/logout", data={"csrf": csrf, "x": "y" * 100_000}).status_code == 403
    many = "&".join(f"f{i}=1" for i in range(500)) + f"&csrf={csrf}"
    answer = store.client.post(
        "/console/logout", content=many, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 403


def test_static_files_and_unknown_ones(store: ConsoleStore) -> None:
    css = store.client.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert store.client.get("/console/static/../../etc/passwd").status_code == 404
    assert store.client.get("/console/static/nope.js").status_code == 404

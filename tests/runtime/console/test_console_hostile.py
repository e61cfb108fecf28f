"""A hostile review of the console: XSS, CSRF, role escalation, IDOR, open redirects, sessions,
form caps, 500s. Each test is what held, or a fault the review found and that is now fixed
(numbers from clients parsed as ASCII digits below 2**63, the upload token ended at sign-out,
one upload token per session)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.sidecars import read_sidecar
from runtime.accounts import Accounts
from runtime.console.pages import safe_next
from runtime.console.session import same_site
from runtime.storage import configured_url, open_database
from runtime.tokens import Tokens
from tests.support.console import PASSWORD, ConsoleStore, console_store

MINE = "Bliss-v14-bullhead-OFFICIAL-gapps-20200608"
THEIRS = "Bliss-v14-angler-OFFICIAL-vanilla-20200608"
TOKEN_RE = re.compile(r'data-token="(depot_ota_[A-Za-z0-9_-]+)"')
XSS = "<script>alert(1)</script>\"'><img src=x onerror=alert(1)>"
HUGE_ID = "9" * 30  # a valid int, too large for SQLite's INTEGER


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsoleStore]:
    with console_store(tmp_path) as s:
        yield s


def db_do(store: ConsoleStore, fn: Any) -> Any:
    db = open_database(store.data)
    try:
        return fn(db)
    finally:
        db.close()


def user_id(store: ConsoleStore, name: str) -> int:
    u = db_do(store, lambda db: Accounts(db).get(name))
    assert u is not None
    return u.id


def build_ids(text: str) -> dict[str, int]:
    rows = re.findall(r'<tr data-build="([^"]+)">.*?/console/ota/builds/(\d+)"', text, re.S)
    return {stem: int(i) for stem, i in rows}


def no_raw_xss(text: str) -> None:
    assert "<script>alert(1)" not in text
    assert "<img src=x" not in text


# -- 500s: digits that int() refuses, ids SQLite refuses ---------------------------------------------


def test_ci_token_expiry_in_unicode_digits_is_refused(store: ConsoleStore) -> None:
    """'²'.isdigit() is True but int('²') raises: developer.create_token answers 500."""
    csrf = store.sign_in("dev")
    answer = store.client.post("/console/ci-tokens", data={"csrf": csrf, "name": "ci", "expires_days": "²"})
    assert answer.status_code == 400, answer.status_code
    assert db_do(store, lambda db: Tokens(db).list(user_id(store, "dev"), "ci")) == []


def test_ci_token_expiry_with_5000_digits_is_refused(store: ConsoleStore) -> None:
    """int() of more than 4300 digits raises ValueError (Python's int max_str_digits)."""
    csrf = store.sign_in("dev")
    answer = store.client.post(
        "/console/ci-tokens", data={"csrf": csrf, "name": "ci", "expires_days": "9" * 5000}
    )
    assert answer.status_code == 400, answer.status_code


def test_ota_notice_with_unicode_digits_is_ignored(store: ConsoleStore) -> None:
    """maintainer._notice: value.isdigit() then int(value): GET /console/ota?uploaded=² is 500."""
    store.sign_in("maint")
    for query in ("uploaded=%C2%B2", "enabled=%D9%A1", "disabled=" + "9" * 5000):
        answer = store.client.get(f"/console/ota?{query}")
        assert answer.status_code == 200, (query[:20], answer.status_code)


def test_revoking_a_huge_ci_token_id_is_a_404(store: ConsoleStore) -> None:
    """developer.revoke_token: int() accepts the id, Tokens.get passes it to SQLite: OverflowError."""
    csrf = store.sign_in("dev")
    answer = store.client.post(f"/console/ci-tokens/{HUGE_ID}/revoke", data={"csrf": csrf})
    assert answer.status_code == 404, answer.status_code


def test_staff_actions_on_huge_ids_are_404s(store: ConsoleStore) -> None:
    """staff.token_revoke and _user_action/user_password: huge ids go to SQLite and overflow."""
    csrf = store.sign_in("staff")
    codes = {}
    for path in (
        f"/console/tokens/{HUGE_ID}/revoke",
        f"/console/users/{HUGE_ID}/disable",
        f"/console/users/{HUGE_ID}/enable",
        f"/console/users/{HUGE_ID}/staff",
        f"/console/users/{HUGE_ID}/devices",
        f"/console/users/{HUGE_ID}/password",
    ):
        codes[path] = store.client.post(path, data={"csrf": csrf}).status_code
    assert all(code == 404 for code in codes.values()), codes


def test_huge_and_bad_build_ids_and_version_ids_are_not_500s(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    for path in (f"/console/ota/builds/{HUGE_ID}", "/console/ota/builds/abc", "/console/ota/builds/-1"):
        code = store.client.post(path, data={"csrf": csrf, "enable": "false"}).status_code
        assert code == 404, (path, code)
    for path in ("/console/review/%3Cscript%3E", f"/console/review/{HUGE_ID}"):
        answer = store.client.get(path)
        assert answer.status_code == 404
        no_raw_xss(answer.text)
    assert store.client.post("/console/tokens/abc/revoke", data={"csrf": csrf}).status_code == 404


# -- stored and reflected XSS -----------------------------------------------------------------------


def test_user_controlled_strings_are_escaped_on_staff_pages(store: ConsoleStore) -> None:
    dev = user_id(store, "dev")
    db_do(store, lambda db: db.execute("UPDATE users SET full_name = ? WHERE id = ?", [XSS, dev]))
    db_do(store, lambda db: Tokens(db).create(dev, "ci", name=XSS, scope=XSS))
    csrf = store.sign_in("staff")
    for path in ("/console/users", "/console/tokens", f"/console/tokens?user={XSS}&purpose={XSS}"):
        answer = store.client.get(path)
        assert answer.status_code == 200
        no_raw_xss(answer.text)
    # error messages echoing input
    answer = store.client.post("/console/users", data={"csrf": csrf, "name": XSS, "password": "x"})
    assert answer.status_code == 400
    no_raw_xss(answer.text)
    answer = store.client.post("/console/tokens", data={"csrf": csrf, "user": "dev", "name": XSS, "app": XSS})
    no_raw_xss(answer.text)
    answer = store.client.get("/console/fleet", params={"done": "paused", "item": XSS})
    assert answer.status_code == 200
    no_raw_xss(answer.text)
    answer = store.client.post(
        "/console/fleet/rollout",
        data={
            "csrf": csrf,
            "target": "module",
            "name": XSS,
            "version": XSS,
            "action": "pause",
            "reason": XSS,
        },
    )
    assert answer.status_code in (404, 409), answer.status_code
    no_raw_xss(answer.text)


def test_developer_strings_are_escaped(store: ConsoleStore) -> None:
    csrf = store.sign_in("dev")
    answer = store.client.post("/console/ci-tokens", data={"csrf": csrf, "name": XSS, "app": XSS})
    no_raw_xss(answer.text)
    answer = store.client.post("/console/ci-tokens", data={"csrf": csrf, "name": XSS[:60]})
    no_raw_xss(answer.text)
    no_raw_xss(store.client.get("/console/ci-tokens").text)
    answer = store.client.get("/console/stats", params={"item": XSS})
    assert answer.status_code == 200
    no_raw_xss(answer.text)


def test_login_next_is_escaped_in_the_form(store: ConsoleStore) -> None:
    answer = store.client.get("/console/login", params={"next": '/console/"><script>alert(1)</script>'})
    assert answer.status_code == 200
    no_raw_xss(answer.text)


# -- open redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/console/",
        "/\\evil.example",
        "/console/\\..\\\\evil.example",
        "\t//evil.example/console/",
        " //evil.example/console/",
        "/\t/evil.example/console/",
        "javascript:alert(1)//console/",
        "http:/console/",
        "/console@evil.example/",
    ],
)
def test_next_never_leaves_the_site(target: str) -> None:
    result = safe_next(target)
    assert result.startswith("/console/") and not result.startswith("//")
    assert "\\" not in result


def test_login_redirect_stays_on_site(store: ConsoleStore) -> None:
    for target in ("//evil.example/", "/console/..%2f..%2f/evil.example", "/console/\r\nSet-Cookie: x=1"):
        answer = store.client.post(
            "/console/login",
            data={"name": "dev", "password": PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.startswith("/console/") and "\n" not in location and "\r" not in location
        assert "set-cookie" not in {k.lower() for k in answer.headers if k.lower() == "x"}
        store.client.cookies.clear()


# -- sessions, cookies, CSRF, origin ----------------------------------------------------------------


def test_login_issues_a_fresh_session_and_strict_cookie(store: ConsoleStore) -> None:
    store.client.cookies.set("depot_console", "attacker-chosen", path="/console")
    answer = store.client.post(
        "/console/login", data={"name": "dev", "password": PASSWORD}, follow_redirects=False,
        headers={"X-Forwarded-Proto": "https"},
    )  # fmt: skip
    cookie = answer.headers["set-cookie"]
    assert "attacker-chosen" not in cookie
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/console" in low and "secure" in low


def test_csrf_of_another_session_and_cross_site_posts_are_refused(store: ConsoleStore) -> None:
    other = store.sign_in("dev")
    store.client.cookies.clear()
    store.sign_in("dev")
    answer = store.client.post("/console/ci-tokens", data={"csrf": other, "name": "x"})
    assert answer.status_code == 403
    csrf = store.csrf()
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://testserver.evil.example"},
    ):
        answer = store.client.post("/console/ci-tokens", data={"csrf": csrf, "name": "x"}, headers=headers)
        assert answer.status_code == 403, headers
    assert db_do(store, lambda db: Tokens(db).list(user_id(store, "dev"), "ci")) == []
    # the sign-in form refuses another site too (login CSRF)
    store.client.cookies.clear()
    answer = store.client.post(
        "/console/login", data={"name": "dev", "password": PASSWORD},
        headers={"Origin": "http://evil.example"}, follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 403 and "set-cookie" not in answer.headers


def test_same_site_rule_for_origin_null() -> None:
    class Fake:
        def __init__(self, headers: dict[str, str]) -> None:
            from starlette.datastructures import URL, Headers

            self.headers = Headers(headers)
            self.url = URL("http://store.example/console/x")

    assert same_site(Fake({"origin": "null", "sec-fetch-site": "same-origin"}))  # type: ignore[arg-type]
    assert not same_site(Fake({"origin": "null"}))  # type: ignore[arg-type]
    assert not same_site(Fake({"origin": "null", "sec-fetch-site": "none"}))  # type: ignore[arg-type]


def test_csrf_in_the_query_string_does_not_count(store: ConsoleStore) -> None:
    csrf = store.sign_in("dev")
    answer = store.client.post(f"/console/ci-tokens?csrf={csrf}", data={"name": "x"})
    assert answer.status_code == 403


def test_disabled_account_loses_session_and_tokens(store: ConsoleStore) -> None:
    store.sign_in("maint")
    token = TOKEN_RE.search(store.client.get("/console/ota").text)
    assert token
    maint_cookie = store.client.cookies.get("depot_console")
    store.client.cookies.clear()
    csrf = store.sign_in("staff")
    maint = user_id(store, "maint")
    assert store.client.post(f"/console/users/{maint}/disable", data={"csrf": csrf}).status_code == 200
    store.client.cookies.clear()
    store.client.cookies.set("depot_console", maint_cookie, path="/console")
    assert store.client.get("/console/", follow_redirects=False).status_code == 303
    auth = {"Authorization": f"Token {token[1]}"}
    assert store.client.get("/api/v1/maintainers/token_check/", headers=auth).status_code == 401


def test_password_reset_ends_the_console_upload_token(store: ConsoleStore) -> None:
    store.sign_in("maint")
    token = TOKEN_RE.search(store.client.get("/console/ota").text)
    assert token
    store.client.cookies.clear()
    csrf = store.sign_in("staff")
    maint = user_id(store, "maint")
    store.client.post(f"/console/users/{maint}/password", data={"csrf": csrf, "password": "another-pass-123"})
    auth = {"Authorization": f"Token {token[1]}"}
    assert store.client.get("/api/v1/maintainers/token_check/", headers=auth).status_code == 401


def test_sign_out_ends_the_pages_upload_token(store: ConsoleStore) -> None:
    """Signing out (even 'everywhere') leaves the OTA token the page embedded usable against the
    shipper API until the account opens the OTA page again (maintainer.upload_token only revokes
    lazily), and each use renews it: a token copied from an open tab outlives the session."""
    store.sign_in("maint")
    token = TOKEN_RE.search(store.client.get("/console/ota").text)
    assert token
    store.client.post("/console/logout", data={"csrf": store.csrf(), "everywhere": "1"})
    auth = {"Authorization": f"Token {token[1]}"}
    assert store.client.get("/api/v1/maintainers/token_check/", headers=auth).status_code == 401


def test_one_live_upload_token_per_session(store: ConsoleStore) -> None:
    """A GET with a side effect: each view of /console/ota creates a new live ota token for the
    same session and none of the earlier ones of that live session is revoked, so reloading the
    page piles up bearer tokens (each renewable for DEPOT_OTA_TOKEN_DAYS)."""
    store.sign_in("maint")
    for _ in range(5):
        assert store.client.get("/console/ota").status_code == 200
    live = db_do(store, lambda db: Tokens(db).list(user_id(store, "maint"), "ota"))
    assert len(live) <= 1, len(live)


# -- role escalation and IDOR ----------------------------------------------------------------------


def test_developer_cannot_reach_staff_or_maintainer_actions(store: ConsoleStore) -> None:
    csrf = store.sign_in("dev")
    staff = user_id(store, "staff")
    dev = user_id(store, "dev")
    for path in (
        f"/console/users/{dev}/staff",
        f"/console/users/{staff}/disable",
        f"/console/users/{dev}/devices",
        f"/console/users/{staff}/password",
        "/console/users",
        "/console/tokens",
        "/console/fleet/rollout",
        "/console/qt/remove",
        "/console/review/x/approve",
        "/console/ota/builds/1",
    ):
        answer = store.client.post(
            path, data={"csrf": csrf, "staff": "1", "device": "bullhead", "password": "p" * 20}
        )
        assert answer.status_code == 403, path
    me = db_do(store, lambda db: Accounts(db).by_id(dev))
    assert not me.staff and not me.devices
    answer = store.client.post(
        "/console/qt/upload", files={"package": ("a.tar.gz", b"x")}, data={"csrf": csrf}
    )
    assert answer.status_code == 403


def test_developer_cannot_revoke_anothers_or_non_ci_tokens(store: ConsoleStore) -> None:
    staff = user_id(store, "staff")
    theirs, _ = db_do(store, lambda db: Tokens(db).create(staff, "ci", name="staff-ci"))
    csrf = store.sign_in("dev")
    session_id = db_do(store, lambda db: Tokens(db).list(user_id(store, "dev"), "console_session"))[0].id
    assert store.client.post(f"/console/ci-tokens/{theirs.id}/revoke", data={"csrf": csrf}).status_code == 404
    assert (
        store.client.post(f"/console/ci-tokens/{session_id}/revoke", data={"csrf": csrf}).status_code == 404
    )
    assert db_do(store, lambda db: Tokens(db).get(theirs.id)) is not None
    assert store.client.get("/console/").status_code == 200


def test_maintainers_page_token_cannot_act_for_another_device(store: ConsoleStore) -> None:
    store.sign_in("staff")
    theirs = build_ids(store.client.get("/console/ota").text)[THEIRS]
    store.client.cookies.clear()
    store.sign_in("maint")
    token = TOKEN_RE.search(store.client.get("/console/ota").text)
    assert token
    answer = store.client.post(
        "/api/v1/maintainers/build/enabled_status_modify/",
        headers={"Authorization": f"Token {token[1]}"},
        json={"build_id": theirs, "enable": False},
    )
    assert answer.status_code in (401, 403)
    assert read_sidecar(store.repo / "builds/angler" / f"{THEIRS}.zip").get("enabled", True) is True
    # nor does its notice name another device's build
    assert THEIRS not in store.client.get(f"/console/ota?enabled={theirs}").text


def test_stats_item_of_another_account_shows_nothing(store: ConsoleStore) -> None:
    from runtime import downloads

    counter = downloads.counter_for(configured_url(store.data))
    counter.record("apk", "com.other.app 1", 3)
    counter.record("ota", "angler/Secret-build", 2)
    counter.record("ota", "bullhead/../angler/x", 2)
    counter.flush()
    store.sign_in("maint")
    for item in ("apk:com.other.app 1", "ota:angler/Secret-build"):
        page = store.client.get("/console/stats", params={"item": item}).text
        assert "com.other.app" not in page and "Secret-build" not in page


# -- form caps, static files ------------------------------------------------------------------------


def test_form_caps(store: ConsoleStore) -> None:
    csrf = store.sign_in("dev")
    big = store.client.post("/console/ci-tokens", data={"csrf": csrf, "name": "x" * 70_000})
    assert big.status_code == 403
    many = "&".join(f"f{i}=1" for i in range(300)) + f"&csrf={csrf}&name=x"
    answer = store.client.post(
        "/console/ci-tokens", content=many, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 403
    assert db_do(store, lambda db: Tokens(db).list(user_id(store, "dev"), "ci")) == []


def test_static_files_do_not_traverse(store: ConsoleStore) -> None:
    for path in (
        "/console/static/..%2fpages.py",
        "/console/static/%2e%2e%2fsession.py",
        "/console/static/../pages.py",
        "/console/static/console.css%00",
        "/console/static/__init__.py",
    ):
        answer = store.client.get(path)
        assert answer.status_code == 404, path
        assert "import" not in answer.text


# -- download counting and log import ---------------------------------------------------------------


def test_hostile_log_lines_are_skipped(tmp_path: Path) -> None:
    from runtime.downloadlog import import_log, parse_line
    from runtime.storage import open_database as open_db

    def line(uri: str = "/files/ab/0123456789abcd/com.ex.app-3.apk", status: str = "200",
             when: str = "01/Dec/2026:10:00:00 +0100", rng: str = "-", upstream: str = "-",
             method: str = "GET") -> str:  # fmt: skip
        return f'1.2.3.4 - - [{when}] "{method} {uri} HTTP/1.1" {status} 5 "-" "-" "{rng}" "{upstream}"'

    good = line()
    assert parse_line(good) == ("apk", "com.ex.app 3", "2026-12-01")
    assert parse_line(line(rng="bytes=0-")) is not None
    bad = [
        line(uri="/files/ab/../0123456789abcd/com.ex.app-3.apk"),
        line(uri="/files/ab/0123456789abcd/%2e%2e"),
        line(uri="/files/ab/0123456789abcd/%3Cscript%3E.apk"),
        line(uri="/files/ab/0123456789abcd/..%2f..%2fetc.apk"),
        line(status="404"),
        line(status="304"),
        line(rng="bytes=100-"),
        line(upstream="127.0.0.1:8000"),
        line(method="HEAD"),
        line(when="01/Dec/2026:10:00:00 +9999"),
        line(when="01/Dec/99999:10:00:00 +0100"),
        good + " trailing",
        "\x00" * 100,
        "",
    ]
    for text in bad:
        assert parse_line(text) is None, text
    log = tmp_path / "access.log"
    log.write_bytes(
        (good + "\n").encode() + b"\xff\xfe garbage\n" + b"x" * 40_000 + b"\n" + (good + "\n").encode()
    )
    db = open_db(tmp_path / "var")
    try:
        first = import_log(db, log)
        again = import_log(db, log)
    finally:
        db.close()
    assert first.counted == 2 and first.skipped == 2 and again.counted == 0


def test_a_non_numeric_content_length_is_refused(store: ConsoleStore) -> None:
    """pages.form: int(request.headers["content-length"]) unguarded. uvicorn's h11 refuses such a
    header before the app sees it, so this is defence in depth for other ASGI servers and tests."""
    csrf = store.sign_in("dev")
    answer = store.client.post(
        "/console/ci-tokens",
        content=f"csrf={csrf}&name=x".encode(),
        headers={"content-type": "application/x-www-form-urlencoded", "content-length": "abc"},
    )
    assert answer.status_code in (400, 403, 411), answer.status_code


def test_rollout_names_do_not_traverse(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    for name in ("../../../../etc/passwd", "..", "x/../../y"):
        answer = store.client.post(
            "/console/fleet/rollout",
            data={"csrf": csrf, "target": "module", "name": name, "version": "1.0", "action": "pause"},
        )
        assert answer.status_code == 404, name
    answer = store.client.post("/console/qt/remove", data={"csrf": csrf, "purchase_id": "../../etc"})
    assert answer.status_code == 404

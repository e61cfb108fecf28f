"""The developers' pages: /console/apps (their CI portal apps) and /console/ci-tokens.

TestClient tests for each page and action, and a browser test against a real `depot serve`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from runtime.accounts import Accounts
from runtime.portal.review import approve, release
from runtime.storage import open_database
from runtime.tokens import Tokens
from tests.support.apk_factory import build_apk
from tests.support.browser import PHONE, browser_page, requires_chromium, screenshot
from tests.support.console import PASSWORD, ConsoleStore, add_accounts, console_store
from tests.support.serving import serve_store

UPLOAD = "/portal/api/uploads/ci"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsoleStore]:
    with console_store(tmp_path) as s:
        yield s


def ci_token(store: ConsoleStore, name: str, scope: str = "") -> tuple[int, str]:
    db = open_database(store.data)
    try:
        user = Accounts(db).get(name)
        assert user is not None
        token, raw = Tokens(db).create(user.id, "ci", name=f"{name}-made", scope=scope)
        return token.id, raw
    finally:
        db.close()


def upload(store: ConsoleStore, raw: str, apk: bytes) -> dict:
    answer = store.client.post(
        UPLOAD,
        files={"apk": ("app.apk", apk, "application/vnd.android.package-archive")},
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_apps_lists_only_the_users_own_apps_with_findings_and_targets(store: ConsoleStore) -> None:
    _id, dev_raw = ci_token(store, "dev")
    _id, staff_raw = ci_token(store, "staff")
    released = upload(
        store, dev_raw, build_apk(package="com.example.mine", version_code=3, version_name="3.0")
    )
    upload(store, dev_raw, build_apk(package="com.example.debug", debuggable=True))
    upload(store, staff_raw, build_apk(package="com.example.theirs"))
    db = open_database(store.data)
    try:
        version_id = released["version"]["id"]
        approve(db, version_id, "test")
        release(db, store.repo, store.data, version_id, ["DE", "AT"], ["sedan"], "test")
    finally:
        db.close()

    store.sign_in("dev")
    answer = store.client.get("/console/apps")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    text = answer.text
    assert "com.example.mine" in text and "com.example.debug" in text
    assert "com.example.theirs" not in text
    assert "3.0" in text and "live" in text and "DE, AT" in text and "sedan" in text
    assert "debuggable" in text and "blocking" in text and "validation failed" in text
    assert 'href="/console/ci-tokens"' in text

    store.client.cookies.clear()
    store.sign_in("maint")
    assert "No apps yet" in store.client.get("/console/apps").text


def test_apps_needs_a_session(store: ConsoleStore) -> None:
    answer = store.client.get("/console/apps", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login?next=/console/apps"
    assert store.client.post("/console/ci-tokens", data={"name": "x"}).status_code == 403


def test_create_a_token_shows_the_secret_once_and_lists_only_own_tokens(store: ConsoleStore) -> None:
    _other_id, _raw = ci_token(store, "staff")
    csrf = store.sign_in("dev")
    empty = store.client.get("/console/ci-tokens")
    assert empty.status_code == 200 and "no live CI token" in empty.text and "staff-made" not in empty.text

    made = store.client.post(
        "/console/ci-tokens",
        data={"csrf": csrf, "name": "github", "app": "com.example.mine", "expires_days": "30"},
    )
    assert made.status_code == 200
    secret = re.search(r'id="token-secret">(depot_ci_[A-Za-z0-9_-]+)<', made.text)
    assert secret, made.text
    assert 'data-copy="token-secret"' in made.text and "not shown again" in made.text
    raw = secret[1]
    db = open_database(store.data)
    try:
        token = Tokens(db).verify(raw, "ci")
        assert (
            token is not None
            and token.scope == "com.example.mine"
            and token.expires
            and token.name == "github"
        )
    finally:
        db.close()

    listing = store.client.get("/console/ci-tokens").text
    assert (
        raw not in listing and raw[:14] in listing and "github" in listing and "com.example.mine" in listing
    )
    assert "staff-made" not in listing

    # the CI token works for the portal's API
    upload(store, raw, build_apk(package="com.example.mine"))


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": "bad<name>"}, "token name"),
        ({"app": "not a package"}, "not an Android package name"),
        ({"expires_days": "400"}, "between 1 and 365"),
        ({"expires_days": "ten"}, "whole number"),
    ],
)
def test_create_refuses_what_the_api_refuses(store: ConsoleStore, fields: dict, says: str) -> None:
    csrf = store.sign_in("dev")
    answer = store.client.post("/console/ci-tokens", data={"csrf": csrf, **fields})
    assert answer.status_code == 400 and says in answer.text
    assert "depot_ci_" not in answer.text and "no live CI token" in answer.text


def test_create_and_revoke_need_the_csrf_token(store: ConsoleStore) -> None:
    token_id, _raw = ci_token(store, "dev")
    store.sign_in("dev")
    assert store.client.post("/console/ci-tokens", data={"name": "x"}).status_code == 403
    assert store.client.post(f"/console/ci-tokens/{token_id}/revoke", data={}).status_code == 403
    assert (
        store.client.post(
            f"/console/ci-tokens/{token_id}/revoke",
            data={"csrf": store.csrf()},
            headers={"Origin": "https://evil.example"},
        ).status_code
        == 403
    )
    db = open_database(store.data)
    try:
        assert Tokens(db).get(token_id) is not None
        assert [t.name for t in Tokens(db).all(purpose="ci")] == ["dev-made"]
    finally:
        db.close()


def test_revoke_own_token_and_refuse_another_users(store: ConsoleStore) -> None:
    mine, mine_raw = ci_token(store, "dev")
    theirs, theirs_raw = ci_token(store, "staff")
    csrf = store.sign_in("dev")
    refused = store.client.post(f"/console/ci-tokens/{theirs}/revoke", data={"csrf": csrf})
    assert refused.status_code == 404 and "No such CI token" in refused.text
    assert store.client.post("/console/ci-tokens/nope/revoke", data={"csrf": csrf}).status_code == 404
    # a console session token is no CI token: not revocable here
    db = open_database(store.data)
    try:
        dev = Accounts(db).get("dev")
        assert dev is not None
        session_id = Tokens(db).list(dev.id, "console_session")[0].id
    finally:
        db.close()
    assert (
        store.client.post(f"/console/ci-tokens/{session_id}/revoke", data={"csrf": csrf}).status_code == 404
    )

    done = store.client.post(f"/console/ci-tokens/{mine}/revoke", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/console/ci-tokens?revoked={mine}"
    assert f"Token {mine} is revoked" in store.client.get(done.headers["location"]).text
    db = open_database(store.data)
    try:
        assert Tokens(db).verify(mine_raw, "ci") is None
        assert Tokens(db).verify(theirs_raw, "ci") is not None
    finally:
        db.close()
    again = store.client.post(f"/console/ci-tokens/{mine}/revoke", data={"csrf": csrf})
    assert again.status_code == 404


def test_nav_shows_developer_pages_to_everybody(store: ConsoleStore) -> None:
    store.sign_in("dev")
    home = store.client.get("/console/").text
    assert 'href="/console/apps"' in home and 'href="/console/ci-tokens"' in home
    assert 'href="/console/ota"' not in home


# -- in a real browser, against `depot serve` ------------------------------------------------------


def at(path: str) -> Callable[[str], bool]:
    """A URL predicate for wait_for_url: exactly this path (the sign-in page's ?next= is not)."""
    return lambda url: urlsplit(url).path == path


@requires_chromium
@pytest.mark.browser
def test_browser_create_copy_and_revoke_a_ci_token(tmp_path: Path) -> None:
    add_accounts(tmp_path / "var")
    with serve_store(tmp_path) as served, browser_page() as (page, problems):
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
        page.goto(served.url + "/console/ci-tokens")
        assert "/console/login" in page.url
        page.get_by_label("Account name").fill("dev")
        page.get_by_label("Password").fill(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(at("/console/ci-tokens"))
        assert page.get_by_text("You have no live CI token.").is_visible()

        # by keyboard only: the labels name each field
        page.get_by_label("Name (shown in listings)").focus()
        page.keyboard.type("github-actions")
        page.keyboard.press("Tab")
        page.keyboard.type("com.example.app")
        page.keyboard.press("Tab")
        page.keyboard.type("30")
        page.keyboard.press("Enter")
        page.wait_for_selector("#token-secret")
        secret = page.locator("#token-secret").inner_text().strip()
        assert secret.startswith("depot_ci_")
        assert page.get_by_role("button", name="Copy the token").is_visible()  # console.js shows it
        copy = page.locator("button[data-copy]")
        copy.focus()
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.querySelector('button[data-copy]').textContent !== 'Copy the token'"
        )
        said = copy.inner_text()
        if said == "Copied":
            assert page.evaluate("navigator.clipboard.readText()") == secret
        else:  # no clipboard: the secret is selected for Ctrl+C
            assert page.evaluate("String(window.getSelection())").strip() == secret
        screenshot(page, "console-ci-token-created")

        page.get_by_role("link", name="Done").click()
        page.wait_for_url(at("/console/ci-tokens"))
        assert secret not in page.content()  # shown once
        row = page.locator("tr[data-token]")
        assert row.count() == 1 and "github-actions" in row.inner_text()
        page.set_viewport_size(PHONE)
        screenshot(page, "console-ci-tokens-phone")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.get_by_role("button", name=re.compile("Revoke token")).click()
        page.wait_for_url(re.compile(r"/console/ci-tokens\?revoked=\d+$"))
        assert page.get_by_role("status").filter(has_text="is revoked").is_visible()
        assert page.locator("tr[data-token]").count() == 0

        with served.client() as client:
            refused = client.post(UPLOAD, headers={"Authorization": f"Bearer {secret}"}, files={"apk": b"x"})
            assert refused.status_code == 401
        problems.assert_none()

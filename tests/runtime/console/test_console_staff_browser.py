"""The store team's console pages in headless Chromium against a real `depot serve`: review and
release a version uploaded through the CI portal, create and revoke a token, upload a Qt
package; by keyboard, at desk and phone width, with no console error or failed request."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from builder.qt.pack import pack_package
from runtime.accounts import Accounts
from runtime.dialects import load_dialects
from runtime.storage import open_database
from runtime.tokens import Tokens
from tests.support.apk_factory import fixture_like
from tests.support.browser import DESKTOP, PHONE, browser_page, requires_chromium, screenshot
from tests.support.console import PASSWORD, add_accounts
from tests.support.portal_client import bearer, upload, wait_validation
from tests.support.serving import copy_demo_repo, serve_store

POLICY = '\n[portal]\nreview_permissions = ["android.permission.READ_CALENDAR"]\n'


def at(path: str) -> Callable[[str], bool]:
    return lambda url: urlsplit(url).path == path


def ci_token(data: Path) -> str:
    load_dialects()
    db = open_database(data)
    try:
        dev = Accounts(db).get("dev")
        assert dev is not None
        return Tokens(db).create(dev.id, "ci", name="pipeline")[1]
    finally:
        db.close()


def fits(page) -> bool:  # type: ignore[no-untyped-def]
    """Nothing sticks out sideways (wide tables scroll inside their own box)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def sticking_out(page) -> list[str]:  # type: ignore[no-untyped-def]
    """What reaches the window's right edge, and the page's width: for the failure message."""
    script = """() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth - 16)
        .slice(0, 8)
        .map(e => `${e.tagName}.${e.className}#${e.id} ${e.scrollWidth}`)
        .concat([`${document.documentElement.scrollWidth}/${window.innerWidth}`])"""
    return list(page.evaluate(script))


def focused(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.evaluate("document.activeElement && document.activeElement.id"))


def tab_order(page, first: str, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    page.locator(f"#{first}").focus()
    for element_id in expected:
        page.keyboard.press("Tab")
        assert focused(page) == element_id


def both_widths(page, name: str) -> None:  # type: ignore[no-untyped-def]
    screenshot(page, f"console-staff-{name}")
    page.set_viewport_size(PHONE)
    assert fits(page), (name, sticking_out(page))
    screenshot(page, f"console-staff-{name}-phone")
    page.set_viewport_size(DESKTOP)


@requires_chromium
@pytest.mark.browser
def test_browser_review_release_tokens_and_qt_upload(tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    with (repo / "depot.toml").open("a") as f:
        f.write(POLICY)
    add_accounts(tmp_path / "var")
    token = ci_token(tmp_path / "var")
    with serve_store(tmp_path, repo=repo) as served, browser_page() as (page, problems):
        with served.client() as client:
            sent = upload(client, token, fixture_like("com.politedroid_3.apk"))
            assert sent.status_code == 201, sent.text
            version_id = sent.json()["version"]["id"]
            assert wait_validation(client, token, version_id)["status"] == "passed"

        # sign in as staff, by keyboard
        page.goto(served.url + "/console/review")
        assert "/console/login" in page.url
        page.get_by_label("Account name").fill("staff")
        page.get_by_label("Password").fill(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(at("/console/review"))
        row = page.locator(f'tr[data-version="{version_id}"]')
        assert row.count() == 1 and "READ_CALENDAR" in row.inner_text()
        both_widths(page, "review")

        # the version: resolve its finding, approve, release to DE and a new context
        row.get_by_role("link").click()
        page.wait_for_url(at(f"/console/review/{version_id}"))
        assert page.locator("#version-status").inner_text() == "in_review"
        page.get_by_role("button", name=re.compile("Resolve finding")).first.click()
        page.wait_for_url(re.compile(r"\?done=resolved$"))
        page.locator("#approve").click()
        page.wait_for_url(re.compile(r"\?done=approved$"))
        assert page.locator("#version-status").inner_text() == "approved"
        # a bad target is refused in the portal's words (HTTP 400, the one expected error of
        # this visit) and the typed text stays
        problems.assert_none()
        page.get_by_label("Other countries (ISO 3166-1 alpha-2, comma-separated)").fill("Germany")
        page.locator("#release").click()
        page.wait_for_selector("#action-error")
        assert "invalid target 'GERMANY'" in page.locator("#action-error").inner_text()
        assert (
            page.get_by_label("Other countries (ISO 3166-1 alpha-2, comma-separated)").input_value()
            == "Germany"
        )
        assert len(problems.http_errors) == 1 and problems.http_errors[0].startswith("400 ")
        assert len(problems.console_errors) == 1 and "400 (Bad Request)" in problems.console_errors[0]
        problems.http_errors.clear()
        problems.console_errors.clear()
        # by keyboard: the checkbox of DE, then the typed fields
        page.get_by_label("Other countries (ISO 3166-1 alpha-2, comma-separated)").fill("")
        page.get_by_label("DE", exact=True).focus()
        page.keyboard.press("Space")
        assert page.get_by_label("DE", exact=True).is_checked()
        page.get_by_label("Other vehicle contexts (comma-separated)").fill("sedan")
        page.get_by_label("Other vehicle contexts (comma-separated)").press("Enter")
        page.wait_for_url(re.compile(r"\?done=released$"))
        assert page.locator("#version-status").inner_text() == "live"
        assert "DE" in page.locator("#version-targets").inner_text()
        assert "sedan" in page.locator("#version-targets").inner_text()
        both_widths(page, "version")
        with httpx.Client(base_url=served.url) as client:
            germany = client.get("/android/countries/DE.json")
            assert germany.status_code == 200 and "com.politedroid" in germany.text

        # tokens: create one for dev by keyboard, see it once, revoke it
        page.get_by_role("link", name="Tokens", exact=True).click()
        page.wait_for_url(at("/console/tokens"))
        tab_order(page, "token-user", ["token-name", "token-app", "token-days", "token-create"])
        page.get_by_label("Account").select_option("dev")
        page.get_by_label("Name (shown in listings)").fill("from-the-console")
        page.get_by_label(re.compile(r"^Expires after")).fill("30")
        page.get_by_label(re.compile(r"^Expires after")).press("Enter")
        page.wait_for_selector("#token-secret")
        secret = page.locator("#token-secret").inner_text().strip()
        assert secret.startswith("depot_ci_")
        both_widths(page, "tokens-created")
        page.get_by_role("link", name="Done").click()
        page.wait_for_url(at("/console/tokens"))
        assert secret not in page.content()
        mine = page.locator("tr[data-token]").filter(has_text="from-the-console")
        assert mine.count() == 1
        mine.get_by_role("button", name=re.compile("Revoke token")).click()
        page.wait_for_url(re.compile(r"\?done=revoked$"))
        assert page.locator("tr[data-token]").filter(has_text="from-the-console").count() == 0
        both_widths(page, "tokens")
        with served.client() as client:
            refused = client.get(f"/portal/api/versions/{version_id}", headers=bearer(secret))
            assert refused.json()["error"]["code"] == "token_revoked"

        # Qt: upload a package with its fields, by label and keyboard
        page.get_by_role("link", name="Qt apps", exact=True).click()
        page.wait_for_url(at("/console/qt"))
        tab_order(page, "qt-package", ["qt-category", "qt-vendor", "qt-brief", "qt-description", "qt-submit"])
        package = pack_package("com.example.browser", name={"en": "Browser Upload"}, version="2.0.0")
        page.get_by_label("Package (.appkg)").set_input_files(
            files=[{"name": "browser.appkg", "mimeType": "application/octet-stream", "buffer": package}]
        )
        page.get_by_label("Category").select_option("Entertainment")
        page.get_by_label("Brief description").fill("Uploaded from the console")
        page.get_by_label("Description (HTML or plain text)").fill("<p>A longer text</p>")
        page.locator("#qt-submit").click()
        page.wait_for_url(re.compile(r"/console/qt\?done=uploaded$"))
        uploaded = page.locator('tr[data-app="com.example.browser"]')
        assert uploaded.count() == 1 and "Browser Upload" in uploaded.inner_text()
        assert "Entertainment" in uploaded.inner_text()
        assert (served.repo / "apps" / "com.example.browser_All_.appkg").exists()
        both_widths(page, "qt")

        # users: the list, at both widths
        page.get_by_role("link", name="Users", exact=True).click()
        page.wait_for_url(at("/console/users"))
        assert page.locator('tr[data-user="dev"]').count() == 1
        tab_order(page, "user-name", ["user-password", "user-staff"])
        both_widths(page, "users")
        problems.assert_none()

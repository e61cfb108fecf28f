"""/console/stats: downloads per day per item (SVG chart with a table) and shipper's totals, each
role seeing what it answers for; and in a real browser against a real `depot serve`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtime import downloads
from runtime.accounts import Accounts
from runtime.storage import configured_url, open_database
from tests.support.browser import browser_page, requires_chromium, screenshot
from tests.support.console import PASSWORD, ConsoleStore, add_accounts, console_store
from tests.support.serving import serve_store

BULLHEAD = "Bliss-v14-bullhead-OFFICIAL-gapps-20200608"
ANGLER = "Bliss-v14-angler-OFFICIAL-vanilla-20200608"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsoleStore]:
    with console_store(tmp_path) as s:
        yield s


def item_row(page: str, key: str) -> str | None:
    match = re.search(rf'<tr data-item="{re.escape(key)}">(.*?)</tr>', page, re.S)
    return match[1] if match else None


def month(page: str, key: str) -> int:
    row = item_row(page, key)
    assert row is not None, page
    found = re.search(r'<td class="month">(\d+)</td>', row)
    assert found
    return int(found[1])


def own_package(s: ConsoleStore, account: str, package: str) -> None:
    db = open_database(s.data)
    try:
        user = Accounts(db).get(account)
        assert user is not None
        db.execute(
            "INSERT INTO portal_apps (id, package, owner_id, created)"
            " VALUES (?, ?, ?, '2026-01-01T00:00:00Z')",
            [package, package, user.id],
        )
    finally:
        db.close()


def test_a_download_shows_at_once(store: ConsoleStore) -> None:
    store.sign_in("staff")
    before = store.client.get("/console/stats")
    assert before.status_code == 200 and "No downloads in the last 31 days" in before.text
    assert store.client.get(f"/download_check/bullhead/{BULLHEAD}/").status_code == 200
    page = store.client.get("/console/stats").text
    key = f"ota:bullhead/{BULLHEAD}"
    assert month(page, key) == 1
    assert re.search(r'<svg class="chart"[^>]*role="img"[^>]*aria-labelledby="chart-title"', page)
    assert '<title id="chart-title">Downloads per day of every item' in page and "1 in all" in page
    assert '<table id="daily-table">' in page and " style=" not in page
    shipper = re.search(r'<table id="shipper-table">(.*?)</table>', page, re.S)
    assert shipper and re.findall(r"<td>(\d+)</td>", shipper[1]) == ["1", "1", "1", "1"]
    # one item on the chart
    one = store.client.get("/console/stats", params={"item": key}).text
    assert f'<option value="{key}" selected>' in one and "Downloads per day of OTA build bullhead/" in one
    # and a request for nonsense shows everything
    assert "every item" in store.client.get("/console/stats", params={"item": "<script>" * 100}).text


def test_each_role_sees_what_it_answers_for(store: ConsoleStore) -> None:
    own_package(store, "dev", "com.dev.app")
    counter = downloads.counter_for(configured_url(store.data))
    counter.record("apk", "com.dev.app 3", 4)
    counter.record("apk", "com.other.app 1", 5)
    counter.record("module", "ax 2.6.4", 6)
    counter.record("qt", "com.example.plain", 7)
    counter.record("ota", f"bullhead/{BULLHEAD}", 2)
    counter.record("ota", f"angler/{ANGLER}", 3)
    visible = {
        "staff": {"apk:com.dev.app 3", "apk:com.other.app 1", "module:ax 2.6.4", "qt:com.example.plain",
                  f"ota:bullhead/{BULLHEAD}", f"ota:angler/{ANGLER}"},
        "dev": {"apk:com.dev.app 3"},
        "maint": {f"ota:bullhead/{BULLHEAD}"},
    }  # fmt: skip
    every = set().union(*visible.values())
    for name, keys in visible.items():
        store.client.cookies.clear()
        store.sign_in(name)
        page = store.client.get("/console/stats")
        assert page.status_code == 200
        shown = {key for key in every if item_row(page.text, key) is not None}
        assert shown == keys, name
        assert ("shipper-table" in page.text) == (name != "dev")
        # another item named in the query shows nothing of it
        for key in every - keys:
            assert key not in store.client.get("/console/stats", params={"item": key}).text
    store.client.cookies.clear()
    store.sign_in("maint")
    page = store.client.get("/console/stats").text
    assert "your devices: bullhead" in page
    store.client.cookies.clear()
    assert store.client.get("/console/stats", follow_redirects=False).status_code == 303  # signed out


@pytest.mark.browser
@pytest.mark.slow
@requires_chromium
def test_in_a_browser(tmp_path: Path) -> None:
    add_accounts(tmp_path / "var")
    with serve_store(tmp_path) as served, browser_page() as (page, problems):
        page.goto(served.url + "/console/stats")
        page.fill("#name", "staff")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/console/stats")
        assert page.locator("svg.chart title").first.text_content().startswith("Downloads per day")
        assert page.locator("#items-table").count() == 0
        response = httpx.get(f"{served.url}/download_check/bullhead/{BULLHEAD}/", timeout=10)
        assert response.status_code == 200
        page.reload()
        row = page.locator(f'tr[data-item="ota:bullhead/{BULLHEAD}"]')
        assert row.locator("td.month").text_content() == "1"
        assert page.locator("svg.chart").get_attribute("data-total") == "1"
        assert page.locator("#shipper-table td").first.text_content() == "1"
        page.select_option("#item", f"ota:bullhead/{BULLHEAD}")
        page.click("form.actions button")
        page.wait_for_url("**item=ota*")
        screenshot(page, "console-stats")
        page.goto(served.url + "/console/fleet")
        assert page.locator('tr[data-rollout="module ax 2.6.4"]').count() == 1
        page.locator('tr[data-rollout="module ax 2.6.4"] button').click()
        page.wait_for_url("**done=paused**")
        assert page.locator('tr[data-rollout="module ax 2.6.4"] [data-state="paused"]').count() == 1
        screenshot(page, "console-fleet")
        problems.assert_none()

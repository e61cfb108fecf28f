"""The maintainers' page: /console/ota (builds of the devices they maintain, enable/disable,
download counts, the browser upload over shipper's chunked API).

TestClient tests for the page and its action, and browser tests against a real `depot serve`:
toggling a build, an upload paused, reloaded and resumed, the page without script."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from builder.sidecars import read_sidecar
from runtime.accounts import Accounts
from runtime.storage import open_database
from runtime.tokens import Tokens
from tests.support.browser import PHONE, browser_page, requires_chromium, screenshot
from tests.support.console import PASSWORD, ConsoleStore, add_accounts, console_store
from tests.support.serving import ServedStore, serve_store
from tests.support.shipper import NO_THROTTLE, ota_zip

MINE = "Bliss-v14-bullhead-OFFICIAL-gapps-20200608"
OLDER = "Bliss-v14-bullhead-OFFICIAL-gapps-20200601"
THEIRS = "Bliss-v14-angler-OFFICIAL-vanilla-20200608"
NEW = "Bliss-v14-bullhead-OFFICIAL-gapps-20240101"
TOKEN_RE = re.compile(r'data-token="(depot_ota_[A-Za-z0-9_-]+)"')
API = "/api/v1/maintainers/chunked_upload/"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsoleStore]:
    with console_store(tmp_path) as s:
        yield s


def build_ids(text: str) -> dict[str, int]:
    """stem → build id, from the page's toggle forms."""
    rows = re.findall(r'<tr data-build="([^"]+)">.*?/console/ota/builds/(\d+)"', text, re.S)
    return {stem: int(i) for stem, i in rows}


def test_a_developer_may_not_see_or_use_the_ota_page(store: ConsoleStore) -> None:
    store.sign_in("maint")
    ids = build_ids(store.client.get("/console/ota").text)
    store.client.cookies.clear()
    csrf = store.sign_in("dev")
    assert store.client.get("/console/ota").status_code == 403
    answer = store.client.post(f"/console/ota/builds/{ids[MINE]}", data={"csrf": csrf, "enable": "false"})
    assert answer.status_code == 403
    assert read_sidecar(store.repo / "builds/bullhead" / f"{MINE}.zip").get("enabled", True) is True
    assert 'href="/console/ota"' not in store.client.get("/console/").text
    db = open_database(store.data)
    try:
        dev = Accounts(db).get("dev")
        assert dev is not None and Tokens(db).list(dev.id, "ota") == []  # no upload token made
    finally:
        db.close()


def test_a_maintainer_sees_only_their_devices_builds_staff_all(store: ConsoleStore) -> None:
    store.sign_in("maint")
    page = store.client.get("/console/ota")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert set(build_ids(page.text)) == {MINE, OLDER}
    assert THEIRS not in page.text
    assert page.text.index(MINE) < page.text.index(OLDER)  # newest first
    assert "needs JavaScript" in page.text and 'src="/console/static/upload.js"' in page.text
    assert 'href="/console/ota" aria-current="page"' in page.text

    store.client.cookies.clear()
    store.sign_in("staff")
    assert set(build_ids(store.client.get("/console/ota").text)) == {MINE, OLDER, THEIRS}


def test_toggle_is_shippers_enable_disable_and_needs_csrf(store: ConsoleStore) -> None:
    csrf = store.sign_in("maint")
    ids = build_ids(store.client.get("/console/ota").text)
    feed = "/api/v1/updater/los/bullhead/gapps/"
    assert f"{MINE}.zip" in store.client.get(feed).text

    assert store.client.post(f"/console/ota/builds/{ids[MINE]}", data={"enable": "false"}).status_code == 403
    assert (
        store.client.post(
            f"/console/ota/builds/{ids[MINE]}", data={"csrf": "0" * 64, "enable": "false"}
        ).status_code
        == 403
    )
    assert f"{MINE}.zip" in store.client.get(feed).text

    done = store.client.post(
        f"/console/ota/builds/{ids[MINE]}", data={"csrf": csrf, "enable": "false"}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == f"/console/ota?disabled={ids[MINE]}"
    assert read_sidecar(store.repo / "builds/bullhead" / f"{MINE}.zip")["enabled"] is False
    assert f"{MINE}.zip" not in store.client.get(feed).text  # rebuilt: the feed lists only enabled builds
    after = store.client.get(done.headers["location"]).text
    assert f"{MINE}.zip is disabled." in after
    row = after[after.index(f'<tr data-build="{MINE}">') :]
    assert 'name="enable" value="true"' in row[: row.index("</tr>")]

    store.client.post(f"/console/ota/builds/{ids[MINE]}", data={"csrf": csrf, "enable": "true"})
    assert read_sidecar(store.repo / "builds/bullhead" / f"{MINE}.zip")["enabled"] is True
    assert f"{MINE}.zip" in store.client.get(feed).text

    bad = store.client.post(f"/console/ota/builds/{ids[MINE]}", data={"csrf": csrf, "enable": "maybe"})
    assert bad.status_code == 403
    assert (
        store.client.post("/console/ota/builds/12345", data={"csrf": csrf, "enable": "false"}).status_code
        == 404
    )


def test_a_maintainer_may_not_toggle_another_devices_build(store: ConsoleStore) -> None:
    store.sign_in("staff")
    theirs = build_ids(store.client.get("/console/ota").text)[THEIRS]
    store.client.cookies.clear()
    csrf = store.sign_in("maint")
    answer = store.client.post(f"/console/ota/builds/{theirs}", data={"csrf": csrf, "enable": "false"})
    assert answer.status_code == 403 and "do not maintain" in answer.text
    assert read_sidecar(store.repo / "builds/angler" / f"{THEIRS}.zip").get("enabled", True) is True


def test_download_counts_are_shippers(store: ConsoleStore) -> None:
    for kind in ("download", "update", "update"):
        answer = store.client.post(
            "/api/v2/download/build/counter/", data={"file_name": MINE, "download_type": kind}
        )
        assert answer.status_code == 200, answer.text
    assert store.client.get(f"/download_check/bullhead/{MINE}/").status_code == 200
    store.sign_in("maint")
    text = store.client.get("/console/ota").text
    row = text[text.index(f'<tr data-build="{MINE}">') :]
    row = row[: row.index("</tr>")]
    assert "<span data-downloads>4</span>" in row and "4 in 7 days" in row
    older = text[text.index(f'<tr data-build="{OLDER}">') :]
    assert "<span data-downloads>0</span>" in older[: older.index("</tr>")]


def test_the_pages_upload_token_is_a_shipper_token_of_the_session(store: ConsoleStore) -> None:
    store.sign_in("maint")
    first = TOKEN_RE.search(store.client.get("/console/ota").text)
    assert first
    check = store.client.get(
        "/api/v1/maintainers/token_check/", headers={"Authorization": f"Token {first[1]}"}
    )
    assert check.status_code == 200 and check.json() == {"username": "maint"}
    # signing out ends the session: the next OTA page of the account revokes its upload token
    store.client.post("/console/logout", data={"csrf": store.csrf()})
    store.sign_in("maint")
    second = TOKEN_RE.search(store.client.get("/console/ota").text)
    assert second and second[1] != first[1]
    auth = {"Authorization": f"Token {first[1]}"}
    assert store.client.get("/api/v1/maintainers/token_check/", headers=auth).status_code == 401
    db = open_database(store.data)
    try:
        maint = Accounts(db).get("maint")
        assert maint is not None
        live = Tokens(db).list(maint.id, "ota")
        assert len(live) == 1 and live[0].name.startswith("console:") and live[0].expires
    finally:
        db.close()


def test_an_upload_with_the_pages_token_is_shippers_chunked_upload(
    store: ConsoleStore, tmp_path: Path
) -> None:
    store.sign_in("maint")
    token = TOKEN_RE.search(store.client.get("/console/ota").text)
    assert token
    auth = {"Authorization": f"Token {token[1]}"}
    data = ota_zip(tmp_path / f"{NEW}.zip", size=100_000)
    half = 40_000
    first = store.client.put(
        API,
        headers={**auth, "Content-Range": f"bytes 0-{half - 1}/{len(data)}"},
        data={"filename": f"{NEW}.zip"},
        files={"file": (f"{NEW}.zip", data[:half])},
    )
    assert first.status_code == 200, first.text
    upload_id = first.json()["id"]
    assert store.client.get(f"{API}{upload_id}/", headers=auth).json()["offset"] == half
    rest = store.client.put(
        f"{API}{upload_id}/",
        headers={**auth, "Content-Range": f"bytes {half}-{len(data) - 1}/{len(data)}"},
        files={"file": (f"{NEW}.zip", data[half:])},
    )
    assert rest.status_code == 200, rest.text
    done = store.client.post(
        f"{API}{upload_id}/", headers=auth, json={"sha256": hashlib.sha256(data).hexdigest()}
    )
    assert done.status_code == 200, done.text
    build_id = done.json()["build_id"]
    page = store.client.get(f"/console/ota?uploaded={build_id}").text
    assert f"{NEW}.zip is uploaded and published." in page and NEW in build_ids(page)


# -- in a real browser, against `depot serve` ------------------------------------------------------


def at(path: str) -> Callable[[str], bool]:
    return lambda url: urlsplit(url).path == path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedStore]:
    add_accounts(tmp_path / "var")
    with serve_store(tmp_path, env=NO_THROTTLE) as s:
        yield s


def sign_in(page, served: ServedStore, name: str = "maint") -> None:  # type: ignore[no-untyped-def]
    page.goto(served.url + "/console/ota")
    page.get_by_label("Account name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(at("/console/ota"))


def row_of(page, stem: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-build="{stem}"]')


@requires_chromium
@pytest.mark.browser
def test_browser_toggle_a_build_by_keyboard(served: ServedStore) -> None:
    with browser_page() as (page, problems):
        sign_in(page, served)
        assert row_of(page, THEIRS).count() == 0
        button = page.get_by_role("button", name=f"Disable {MINE}.zip")
        button.focus()
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "disabled=" in url)
        assert page.get_by_role("status").filter(has_text=f"{MINE}.zip is disabled.").is_visible()
        assert "disabled" in row_of(page, MINE).inner_text()
        with served.client() as client:
            assert f"{MINE}.zip" not in client.get("/api/v1/updater/los/bullhead/gapps/").text
        screenshot(page, "console-ota-disabled")
        page.get_by_role("button", name=f"Enable {MINE}.zip").click()
        page.wait_for_url(lambda url: "enabled=" in url)
        with served.client() as client:
            assert f"{MINE}.zip" in client.get("/api/v1/updater/los/bullhead/gapps/").text
        problems.assert_none()


@requires_chromium
@pytest.mark.browser
def test_browser_upload_paused_reloaded_and_resumed(served: ServedStore, tmp_path: Path) -> None:
    zip_path = tmp_path / "out" / f"{NEW}.zip"
    zip_path.parent.mkdir()
    data = ota_zip(zip_path, size=400_000)
    small_chunks = "document.getElementById('upload').dataset.chunkSize = '65536'"
    with browser_page() as (page, problems):
        sign_in(page, served)
        assert page.get_by_text("needs JavaScript").is_hidden()
        # each chunk takes a while, so the pause lands between chunks, not after the last one
        page.route(f"**{API}*/", lambda route: (time.sleep(0.15), route.continue_()))
        page.evaluate(small_chunks)
        page.get_by_label("Build file (.zip)").set_input_files(str(zip_path))
        page.get_by_role("button", name="Upload").click()
        page.wait_for_function(
            "() => Object.keys(localStorage).some(k => k.startsWith('depot-console-ota-upload:'))"
        )
        page.get_by_role("button", name="Pause").click()
        page.get_by_role("status").filter(has_text="Paused at").wait_for()
        screenshot(page, "console-ota-upload-paused")
        sent = page.evaluate("document.querySelector('progress').value")
        assert 0 < sent < len(data)

        page.reload()
        page.unroute(f"**{API}*/")
        offer = page.get_by_role("region", name="Interrupted upload")
        offer.wait_for()
        assert f"{NEW}.zip stopped at" in offer.inner_text()
        assert page.evaluate("document.querySelector('progress').value") == sent
        assert page.get_by_role("button", name="Resume").is_visible()
        # the wrong file is refused; the right one resumes where the server says
        other = tmp_path / "out" / "Bliss-v14-bullhead-OFFICIAL-gapps-20240102.zip"
        ota_zip(other)
        page.get_by_label("Build file (.zip)").set_input_files(str(other))
        page.get_by_role("button", name="Resume").click()
        assert "not the file of the interrupted upload" in page.get_by_role("status").inner_text()
        page.evaluate(small_chunks)
        page.get_by_label("Build file (.zip)").set_input_files(str(zip_path))
        page.get_by_role("button", name="Resume").click()
        page.wait_for_url(lambda url: "uploaded=" in url, timeout=60_000)
        assert (
            page.get_by_role("status").filter(has_text=f"{NEW}.zip is uploaded and published.").is_visible()
        )
        assert row_of(page, NEW).count() == 1
        assert page.evaluate("Object.keys(localStorage).length") == 0
        screenshot(page, "console-ota-uploaded")

        with served.client() as client:
            feed = client.get("/api/v1/updater/los/bullhead/gapps/").json()
            entry = next(e for e in feed["response"] if e["filename"] == f"{NEW}.zip")
            assert entry["id"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
        assert (served.repo / "builds/bullhead" / f"{NEW}.zip").read_bytes() == data
        puts = [u for u in problems.requests if API in u]
        assert len(puts) >= 7  # started, paused, asked for the offset, the rest in 64 KiB chunks
        problems.assert_none()


@requires_chromium
@pytest.mark.browser
def test_browser_without_script_lists_and_toggles_and_says_uploads_need_it(served: ServedStore) -> None:
    with browser_page(PHONE, javascript=False) as (page, problems):
        sign_in(page, served)
        assert page.get_by_text("needs JavaScript").is_visible()
        assert page.get_by_label("Build file (.zip)").count() == 1
        assert not page.get_by_label("Build file (.zip)").is_visible()
        page.get_by_role("button", name=f"Disable {OLDER}.zip").click()
        page.wait_for_url(lambda url: "disabled=" in url)
        assert "disabled" in row_of(page, OLDER).inner_text()
        screenshot(page, "console-ota-phone-noscript")
        problems.assert_none()


@requires_chromium
@pytest.mark.browser
def test_browser_phone_width_and_labels(served: ServedStore) -> None:
    with browser_page(PHONE) as (page, problems):
        sign_in(page, served)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        for label in ("Build file (.zip)", "Progress"):
            assert page.get_by_label(label).count() == 1
        # Tab reaches the file input and the upload button in order
        page.get_by_label("Build file (.zip)").focus()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Upload"
        screenshot(page, "console-ota-phone")
        problems.assert_none()


@requires_chromium
@pytest.mark.browser
def test_browser_upload_refused_by_shipper_says_why(served: ServedStore, tmp_path: Path) -> None:
    zip_path = tmp_path / "Bliss-v14-angler-OFFICIAL-vanilla-20240101.zip"  # not maint's device
    ota_zip(zip_path)
    with browser_page() as (page, problems):
        sign_in(page, served)
        page.get_by_label("Build file (.zip)").set_input_files(str(zip_path))
        page.get_by_role("button", name="Upload").click()
        status = page.get_by_role("status").filter(has_text="Not uploaded")
        status.wait_for()
        assert "not authorized to upload for this device" in status.inner_text()
        assert page.evaluate("Object.keys(localStorage).length") == 0  # shipper dropped it
        assert not (served.repo / "builds/angler" / zip_path.name).exists()
        # the refusal is the API's answer, nothing the page broke
        assert [e for e in problems.http_errors if "/chunked_upload/" not in e] == []
        assert all("401" in e for e in problems.http_errors)
        assert problems.failed_requests == []

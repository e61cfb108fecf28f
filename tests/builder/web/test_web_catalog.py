"""The web catalog as a visitor meets it: headless Chromium against a real `depot serve`,
a link checker over the whole site and its sharded search index, hostile descriptions, and
incremental page writes. tests/builder/web/test_web_plan.py checks the renderer's plan without
a build."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from builder.build import BuildResult, build
from builder.device.module import pack_module
from builder.web.render import search_bucket, shard_path
from tests.support.browser import DESKTOP, PHONE, browser_page, requires_chromium, screenshot
from tests.support.repos import add_module, assert_same_tree, clean_build, site_tree
from tests.support.serving import ServedStore, copy_demo_repo, serve_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    with serve_store(tmp_path_factory.mktemp("web")) as served:
        yield served


# -- in the browser -----------------------------------------------------------------------------


@requires_chromium
@pytest.mark.parametrize("viewport,label", [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_visitor_finds_a_module_through_instant_search(store: ServedStore, viewport, label) -> None:
    with browser_page(viewport) as (page, problems):
        page.goto(store.url + "/index.html")
        assert page.locator("h1").first.inner_text() == "Depot Demo Store"
        assert page.get_by_role("heading", name="Device modules and firmware").is_visible()
        screenshot(page, f"home-{label}")
        page.fill("#q", "iot")
        result = page.locator("[data-search-results] a", has_text="iot")
        result.wait_for(state="visible")
        screenshot(page, f"search-{label}")
        result.click()
        page.wait_for_load_state()
        assert page.url.endswith("/modules/pi64/i.html#module-iot")
        section = page.locator("#module-iot")
        assert section.is_visible()
        assert "1.0.5" in section.inner_text()
        assert "Talks to lifts" in section.inner_text()
        screenshot(page, f"platform-{label}")
        problems.assert_none()


@requires_chromium
def test_search_that_finds_nothing_says_so(store: ServedStore) -> None:
    with browser_page() as (page, problems):
        page.goto(store.url + "/index.html")
        page.fill("#q", "zzzz-no-such-thing")
        page.locator("[data-search-results] .none").wait_for(state="visible")
        assert "Nothing matches" in page.locator("[data-search-results]").inner_text()
        problems.assert_none()


@requires_chromium
def test_ota_device_page(store: ServedStore) -> None:
    with browser_page() as (page, problems):
        page.goto(store.url + "/index.html")
        page.get_by_role("link", name=re.compile("Nexus 5X")).click()
        page.wait_for_load_state()
        assert page.url.endswith("/devices/bullhead/index.html")
        assert page.locator("h1").inner_text() == "LG Nexus 5X"
        assert page.get_by_text("Maintained", exact=True).is_visible()
        screenshot(page, "device-desktop")
        problems.assert_none()


@requires_chromium
def test_app_page_shows_icon_description_versions_and_tags(store: ServedStore) -> None:
    with browser_page() as (page, problems):
        page.goto(store.url + "/index.html")
        page.get_by_role("link", name=re.compile("Tagged App")).click()
        page.wait_for_load_state()
        assert page.url.endswith("/apps/com.example.tagged/index.html")
        assert page.locator("h1").inner_text() == "Tagged App"
        icon = page.get_by_alt_text("Tagged App icon")
        assert icon.is_visible()
        assert page.evaluate("document.querySelector('img.avatar').naturalWidth") > 0
        assert "/assets/icons/" in icon.get_attribute("src")
        assert page.locator(".tag", has_text="qt:5.15").is_visible()
        versions = page.locator("table").inner_text()
        assert "All" in versions and "2.1" in versions
        assert page.locator(".description code", has_text="build_target:desktop").is_visible()
        screenshot(page, "app-desktop")
        problems.assert_none()


@requires_chromium
def test_android_app_page_shows_release_countries(store: ServedStore) -> None:
    with browser_page(PHONE) as (page, problems):
        page.goto(store.url + "/index.html")
        # the home page counts the Android apps and links to their list
        page.get_by_role("link", name=re.compile("All Android apps")).click()
        page.wait_for_load_state()
        assert page.url.endswith("/android-apps/index.html")
        page.get_by_role("link", name=re.compile("android.appsecurity.cts.tinyapp")).click()
        page.wait_for_load_state()
        assert "released in AT, DE" in page.locator(".meta").inner_text()
        download = page.get_by_role("link", name=re.compile("Download android.appsecurity"))
        href = download.get_attribute("href")
        assert httpx.get(urljoin(page.url, href)).status_code == 200
        screenshot(page, "android-phone")
        problems.assert_none()


@requires_chromium
def test_pages_work_without_script(store: ServedStore) -> None:
    with browser_page(javascript=False) as (page, problems):
        page.goto(store.url + "/index.html")
        page.fill("#q", "bottom")
        page.press("#q", "Enter")
        page.wait_for_load_state()
        assert "/search.html?q=bottom" in page.url
        # without script the search page says that it needs script, and links to the sections
        assert "Searching needs JavaScript" in page.locator("main").inner_text()
        assert page.locator("[data-search-page] li").count() == 0
        page.get_by_role("link", name="Device modules and firmware").click()
        page.wait_for_load_state()
        assert page.url.endswith("/index.html#h-modules")
        page.get_by_role("link", name=re.compile("pi64")).first.click()
        page.wait_for_load_state()
        assert page.url.endswith("/modules/pi64/index.html")
        page.get_by_role("link", name="Names starting with B").click()
        page.wait_for_load_state()
        assert page.url.endswith("/modules/pi64/b.html")
        assert page.locator("#firmware-bottom-sensor").is_visible()
        # and back to the platform's page, which links to every letter that has something
        page.get_by_role("link", name="pi64", exact=True).first.click()
        page.wait_for_load_state()
        assert page.url.endswith("/modules/pi64/index.html")
        letters = page.locator("main ul.chips a").all_inner_texts()
        assert letters == ["A", "B", "I"]
        problems.assert_none()


@requires_chromium
def test_search_page_lists_the_matches_with_script(store: ServedStore) -> None:
    with browser_page() as (page, problems):
        page.goto(store.url + "/search.html?q=py_axbot")
        results = page.locator("[data-search-page] li")
        results.first.wait_for(state="visible")
        assert page.input_value("#q") == "py_axbot"
        assert results.count() == 1
        assert "py_axbot" in results.first.inner_text()
        assert "1 match" in page.locator("[data-search-status]").inner_text()
        assert "Searching needs JavaScript" not in page.locator("main").inner_text()
        # typing changes the list, and keeps ?q= in step
        page.fill("#q", "zzzz-no-such-thing")
        page.locator("[data-search-status]", has_text="Nothing matches").wait_for(state="visible")
        assert results.count() == 0
        assert page.url.endswith("/search.html?q=zzzz-no-such-thing")
        page.fill("#q", "py_axbot")
        results.first.wait_for(state="visible")
        results.first.get_by_role("link").click()
        page.wait_for_load_state()
        assert page.url.endswith("/modules/opi64/p.html#module-py_axbot")
        assert page.locator("#module-py_axbot").is_visible()
        problems.assert_none()


@requires_chromium
def test_instant_search_loads_the_entry_and_every_shard(store: ServedStore) -> None:
    entry = json.loads((store.site / "search.json").read_text())
    assert entry["schema"] == 2 and entry["shards"]
    with browser_page() as (page, problems):
        page.goto(store.url + "/index.html")
        page.fill("#q", "nexus")
        page.locator("[data-search-results] a", has_text="Nexus 5X").wait_for(state="visible")
        # entries of different shards, merged
        assert page.locator("[data-search-results] a", has_text="Nexus 6P").is_visible()
        fetched = [
            u.removeprefix(store.url + "/")
            for u in problems.requests
            if urlsplit(u).path.startswith("/search")
        ]
        assert sorted(fetched) == sorted(["search.json", *(s["url"] for s in entry["shards"])])
        problems.assert_none()


@requires_chromium
def test_site_opened_from_a_folder_works(store: ServedStore) -> None:
    with browser_page(javascript=False) as (page, problems):
        page.goto((store.site / "index.html").as_uri())
        page.get_by_role("link", name=re.compile("pi64")).first.click()
        page.wait_for_load_state()
        assert page.url.endswith("/modules/pi64/index.html")
        page.get_by_role("link", name="Names starting with A").click()
        page.wait_for_load_state()
        assert page.url.endswith("/modules/pi64/a.html")
        assert page.locator("#module-ax").is_visible()
        assert problems.failed_requests == []


# -- hostile descriptions -------------------------------------------------------------------------

HOSTILE = (
    "<p>Plays <strong>music</strong>.</p><script>window.pwned = 1</script>"
    '<img src="http://203.0.113.9/track.png" onerror="window.pwned = 2">'
    '<p onclick="window.pwned = 3" style="background:url(http://203.0.113.9/x)">Click</p>'
    '<a href="javascript:window.pwned = 4">js link</a> <a href="https://www.qt.io/">Qt</a>'
    '<iframe src="http://203.0.113.9/"></iframe>'
)


def hostile_site(tmp_path: Path) -> Path:
    """A copy of the demo store whose plain app carries a hostile HTML description in its
    sidecar, built the normal way; returns that app's page."""
    repo = copy_demo_repo(tmp_path / "repo")
    sidecar = repo / "apps" / "com.example.plain.appkg.toml"
    lines = [line for line in sidecar.read_text().splitlines() if not line.startswith("description")]
    sidecar.write_text("\n".join([*lines, f"description = '''{HOSTILE}'''"]) + "\n")
    site = tmp_path / "site"
    result = build(repo, site)
    assert result.skipped == {}
    pages = [p for p in (site / "apps").rglob("index.html") if "music" in p.read_text()]
    assert len(pages) == 1
    return pages[0]


def test_hostile_description_is_sanitised_in_the_html(tmp_path: Path) -> None:
    page = hostile_site(tmp_path).read_text()
    html = page[page.index('<section class="description"') :]
    html = html[: html.index("</section>")]
    assert "<strong>music</strong>" in html and 'href="https://www.qt.io/"' in html
    for bad in ("<script", "onerror", "onclick", "javascript:", "203.0.113.9", "<iframe", "<img", "style="):
        assert bad not in html


@requires_chromium
def test_hostile_description_renders_harmlessly(tmp_path: Path) -> None:
    app_page = hostile_site(tmp_path)
    with browser_page() as (page, problems):
        page.goto(app_page.as_uri())
        assert page.get_by_text("Plays").first.is_visible()
        page.get_by_text("Click").click()
        page.wait_for_timeout(200)
        assert page.evaluate("window.pwned") is None
        assert not [u for u in problems.requests if "203.0.113.9" in u]
        screenshot(page, "app-hostile-desktop")


# -- link checker ---------------------------------------------------------------------------------


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        for attribute in ("href", "src", "action", "data-index"):
            if values.get(attribute):
                self.links.append(values[attribute])


def test_search_index_shards_and_links_resolve(store: ServedStore) -> None:
    """search.json names every shard by a URL that carries its SHA-256; each shard holds the
    entries whose names hash to it, sorted, with links relative to the shard that work."""
    entry = json.loads((store.site / "search.json").read_text())
    assert entry["schema"] == 2
    names: list[str] = []
    with httpx.Client(base_url=store.url) as client:
        for shard in entry["shards"]:
            answer = client.get("/" + shard["url"])
            assert answer.status_code == 200
            file, _, version = shard["url"].partition("?v=")
            assert version == shard["sha256"][:16]
            assert hashlib.sha256(answer.content).hexdigest() == shard["sha256"]
            rows = answer.json()
            assert len(rows) == shard["entries"] > 0
            assert rows == sorted(rows, key=lambda e: (e["name"].lower(), e["kind"]))
            for row in rows:
                assert file == shard_path(search_bucket(row["name"]))
                assert not urlsplit(row["url"]).scheme and not row["url"].startswith("/")
                target = urlsplit(urljoin("/" + file, row["url"]))
                page = client.get(target.path)
                assert page.status_code == 200, row
                if target.fragment:
                    assert f'id="{target.fragment}"' in page.text, row
                names.append(row["name"])
    assert len(names) == len(set(names)) == 10
    assert {"ax", "iot", "bottom-sensor", "py_axbot", "Tagged App", "LG Nexus 5X"} <= set(names)


def test_link_checker_finds_no_broken_or_absolute_links(store: ServedStore) -> None:
    pages = sorted(p.relative_to(store.site).as_posix() for p in store.site.rglob("*.html"))
    assert len(pages) >= 6
    parsed: dict[str, Links] = {}
    for page in pages:
        parser = Links()
        parser.feed((store.site / page).read_text())
        parsed[page] = parser
    checked: dict[str, int] = {}
    with httpx.Client(base_url=store.url) as client:
        for page, parser in parsed.items():
            for link in parser.links:
                if link.startswith("data:"):
                    continue
                parts = urlsplit(link)
                assert not parts.scheme and not parts.netloc, f"{page}: absolute link {link}"
                assert not link.startswith("/"), f"{page}: host-absolute link {link}"
                target = urljoin("/" + page, link)
                path = urlsplit(target).path
                if path not in checked:
                    checked[path] = client.get(path).status_code
                assert checked[path] == 200, f"{page}: broken link {link} ({checked[path]})"
                if parts.fragment:
                    target_page = path.lstrip("/")
                    assert parts.fragment in parsed[target_page].ids, f"{page}: missing anchor {link}"
    assert len(checked) >= 10


# -- incremental ----------------------------------------------------------------------------------


def test_home_lists_the_newest_and_updated_apps_first(store: ServedStore) -> None:
    home = (store.site / "index.html").read_text()
    section = home[home.index('id="h-apps"') : home.index('id="h-devices"')]
    order = [section.index(name) for name in ("Tagged App", "Native App", "Plain App")]
    assert order == sorted(order)  # 2026-11-02, 2026-10-20, 2026-09-14 in the demo sidecars
    assert '<time datetime="2026-11-02">' in section


def test_an_invalid_update_date_skips_the_package_with_a_reason(tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    sidecar = repo / "apps" / "com.example.plain.appkg.toml"
    sidecar.write_text(sidecar.read_text().replace('updated = "2026-09-14"', 'updated = "last week"'))
    result = build(repo, tmp_path / "site")
    assert "updated must be a date" in result.skipped["apps/com.example.plain.appkg"]
    assert not (tmp_path / "site" / "apps" / "com.example.plain").exists()


def test_changing_one_app_rewrites_its_page_and_the_pages_that_list_it(tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    site = tmp_path / "site"
    build(repo, site)
    sidecar = repo / "apps" / "com.example.native.appkg.toml"
    sidecar.write_text(sidecar.read_text().replace("Ships a native", "Now ships a native"))
    result = build(repo, site)
    web_files = sorted(p for p in result.written if p.endswith(".html") or p.startswith("search"))
    # its page, the home and category pages that show its brief description, and the search
    # shard that carries it with the entry that names the shard; no other app, device, platform
    # or category page, no other shard, and not search.html, which lists nothing
    assert web_files == [
        "apps/com.example.native/index.html",
        "categories/tools/index.html",
        "index.html",
        "search.json",
        shard_path(search_bucket("Native App")),
    ]
    assert "Now ships a native" in (site / "apps" / "com.example.native" / "index.html").read_text()


def test_changing_one_module_rewrites_only_the_pages_that_show_it(tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    site = tmp_path / "site"
    build(repo, site)
    pack_module(
        repo / "modules" / "py_axbot.1.1.7-opi64.opi64.tar.gz",
        {"bin/py_axbot": b"#!/bin/sh\n"},
        {"description": "Python SDK for the robot"},
    )
    result = build(repo, site)
    pages = sorted(p for p in result.written if p.endswith(".html") or p.startswith("search"))
    # Only the opi64 letter page of "p" shows versions. The home page and the platform's page
    # say that it has modules and its search entry names it, none shows its version, so their
    # bytes are unchanged and they are not rewritten; other platforms, devices, apps and
    # categories do not show it at all.
    assert pages == ["modules/opi64/p.html"]
    assert "1.1.7-opi64" in (site / "modules" / "opi64" / "p.html").read_text()


def web_written(result: BuildResult) -> list[str]:
    return sorted(p for p in result.written if p.endswith(".html") or p.startswith("search"))


def test_an_added_module_rewrites_only_its_letter_page(tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    site = tmp_path / "site"
    build(repo, site)
    index = (site / "modules" / "pi64" / "index.html").read_bytes()
    add_module(repo, "axle", "1.0.0", "pi64")
    result = build(repo, site, changed=["modules/axle.1.0.0.pi64.tar.gz"])
    # the letter page of "a" and the search shard of its name; not the platform's page (the
    # letter was there), not the other letter pages, not the home page
    assert web_written(result) == ["modules/pi64/a.html", "search.json", shard_path(search_bucket("axle"))]
    assert not result.deleted
    assert (site / "modules" / "pi64" / "index.html").read_bytes() == index
    page = (site / "modules" / "pi64" / "a.html").read_text()
    assert page.index('id="module-ax"') < page.index('id="module-axle"')
    assert_same_tree(site_tree(site), clean_build(repo, tmp_path / "clean"))


def test_a_letter_appearing_and_going_rewrites_the_platform_page(tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    site = tmp_path / "site"
    build(repo, site)
    index = (site / "modules" / "pi64" / "index.html").read_bytes()
    module = add_module(repo, "_zeta", "1.0.0", "pi64")
    result = build(repo, site, changed=["modules/_zeta.1.0.0.pi64.tar.gz"])
    assert web_written(result) == [
        "modules/pi64/index.html",
        "modules/pi64/other.html",
        "search.json",
        shard_path(search_bucket("_zeta")),
    ]
    page = (site / "modules" / "pi64" / "index.html").read_text()
    assert page.index('href="i.html"') < page.index('href="other.html"')  # after the letters
    assert "_zeta" not in page
    assert 'id="module-_zeta"' in (site / "modules" / "pi64" / "other.html").read_text()
    assert_same_tree(site_tree(site), clean_build(repo, tmp_path / "clean"))
    # the last name of the letter goes: its page goes, the platform's page is as it was
    module.unlink()
    result = build(repo, site, changed=["modules/_zeta.1.0.0.pi64.tar.gz"])
    # (no other demo name hashes to the shard of "_zeta": it goes too)
    deleted = sorted(p for p in result.deleted if not p.startswith(("files/", "device/", "routes/")))
    assert deleted == ["modules/pi64/other.html", shard_path(search_bucket("_zeta"))]
    assert web_written(result) == ["modules/pi64/index.html", "search.json"]
    assert (site / "modules" / "pi64" / "index.html").read_bytes() == index
    assert_same_tree(site_tree(site), clean_build(repo, tmp_path / "clean-again"))

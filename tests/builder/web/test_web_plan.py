"""The web catalog's plan, without a build: what tests.support.plan.plan_site makes of a repo
(its parts and targets through builder.plan.plan_all). The pages that list the whole store hold
counts and links, the search index is sharded, and a change touches only the files that show it.
The last tests drive headless Chromium over a planned site served as plain files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import posixpath
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from builder.model import Blob, OtaBuild, OtaDevice, StoreSettings
from builder.qt.pack import pack_package
from builder.web.render import LETTER_KEYS, WebCatalog, letter_of, search_bucket, shard_path
from tests.support.browser import browser_page, requires_chromium
from tests.support.repos import add_firmware, add_module, write_settings
from tests.support.serving import copy_demo_repo

PLATFORMS = ("pi64", "opi64")


def plan(repo: Path) -> dict[str, bytes]:
    from tests.support.plan import plan_site  # imports every renderer: only when a test plans

    return plan_site(repo)


def web_files(site: dict[str, bytes]) -> dict[str, bytes]:
    """The web catalog's files of a planned site."""
    return {p: b for p, b in site.items() if p.endswith(".html") or p.startswith(("search", "assets/"))}


def changed(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    """Web catalog files added, dropped or with other bytes."""
    a, b = web_files(before), web_files(after)
    return sorted(p for p in set(a) | set(b) if a.get(p) != b.get(p))


def many_modules(repo: Path, count: int) -> Path:
    """A store of ``count`` modules named mod000, mod001, ... over two platforms, and a
    firmware image per platform."""
    write_settings(repo, list(PLATFORMS))
    for i in range(count):
        add_module(repo, f"mod{i:03d}", "1.0.0", PLATFORMS[i % 2])
    for platform in PLATFORMS:
        add_firmware(repo, "boot", "2.0.1", platform)
    return repo


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return many_modules(tmp_path_factory.mktemp("big") / "repo", 300)


@pytest.fixture(scope="module")
def big(big_repo: Path) -> dict[str, bytes]:
    return plan(big_repo)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return plan(copy_demo_repo(tmp_path_factory.mktemp("demo") / "repo"))


def search_rows(site: dict[str, bytes]) -> dict[str, list[dict[str, str]]]:
    """Every shard search.json names → its rows, checked against what the entry states."""
    entry = json.loads(site["search.json"])
    assert entry["schema"] == 2
    shards: dict[str, list[dict[str, str]]] = {}
    for shard in entry["shards"]:
        file, _, version = shard["url"].partition("?v=")
        data = site[file]
        sha = hashlib.sha256(data).hexdigest()
        assert shard["sha256"] == sha and version == sha[:16]
        rows = json.loads(data)
        assert len(rows) == shard["entries"] > 0  # an empty shard is no file
        shards[file] = rows
    assert [s["url"] for s in entry["shards"]] == sorted(s["url"] for s in entry["shards"])
    # the entry names every shard there is, and no other
    assert sorted(shards) == sorted(p for p in site if p.startswith("search/"))
    return shards


class Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        for attribute in ("href", "src", "action", "data-index"):
            if values.get(attribute):
                self.links.append(values[attribute] or "")


@functools.lru_cache(maxsize=4096)
def _parse(html: bytes) -> Parsed:
    parser = Parsed()
    parser.feed(html.decode())
    return parser


def parsed(site: dict[str, bytes], path: str) -> Parsed:
    return _parse(site[path])


def resolve(from_file: str, url: str) -> tuple[str, str]:
    """A link of a site file → (the site file it names, its fragment); it must be relative."""
    parts = urlsplit(url)
    assert not parts.scheme and not parts.netloc and not url.startswith("/"), f"{from_file}: {url}"
    if not parts.path:
        return from_file, parts.fragment
    return posixpath.normpath(posixpath.join(posixpath.dirname(from_file), parts.path)), parts.fragment


# -- pages that list the whole store --------------------------------------------------------------


def test_home_and_search_pages_do_not_list_the_modules(big: dict[str, bytes], tmp_path: Path) -> None:
    home, search = big["index.html"].decode(), big["search.html"].decode()
    for page in (home, search):
        assert not re.search(r"mod\d\d\d|boot", page)
    # what each platform has, and links, instead
    assert "Modules and firmware" in home
    assert 'href="modules/pi64/index.html"' in home and 'href="modules/opi64/index.html"' in home
    # and they do not grow with the store: with a tenth of the modules, the same pages
    small = plan(many_modules(tmp_path / "small", 30))
    assert small["search.html"] == big["search.html"]
    assert small["index.html"].decode() == home


def test_search_shards_hold_every_entry_exactly_once(big: dict[str, bytes]) -> None:
    shards = search_rows(big)
    seen: Counter[tuple[str, str]] = Counter()
    for file, rows in shards.items():
        assert rows == sorted(rows, key=lambda e: (e["name"].lower(), e["kind"]))
        for row in rows:
            assert set(row) == {"name", "kind", "text", "url"}
            assert file == shard_path(search_bucket(row["name"]))
            seen[row["name"], row["kind"]] += 1
    expected = {(f"mod{i:03d}", f"Module ({PLATFORMS[i % 2]})") for i in range(300)}
    expected |= {("boot", f"Firmware ({p})") for p in PLATFORMS}
    assert set(seen) == expected
    assert set(seen.values()) == {1}
    assert 32 < len(shards) <= 64  # 302 entries hash to most of the 64 shards


def test_search_entries_link_to_pages_and_anchors_that_exist(big: dict[str, bytes]) -> None:
    for file, rows in search_rows(big).items():
        for row in rows:
            path, fragment = resolve(file, row["url"])
            assert path in big, row
            assert fragment in parsed(big, path).ids, row
            if row["kind"].startswith(("Module", "Firmware")):  # the letter page, not the index
                platform = row["kind"].split("(")[1].rstrip(")")
                assert path == f"modules/{platform}/{row['name'][0]}.html", row


def test_a_platform_page_links_to_its_letter_pages_only(big: dict[str, bytes], tmp_path: Path) -> None:
    for platform in PLATFORMS:
        page = big[f"modules/{platform}/index.html"].decode()
        assert not re.search(r"mod\d\d\d|boot|\b150\b|\b151\b", page)  # no names, no counts
        assert f'<p class="lead">{platform} boards</p>' in page
        assert 'href="../../device/index.json"' in page
        links = [
            link
            for link in parsed(big, f"modules/{platform}/index.html").links
            if link in ("b.html", "m.html")
        ]
        assert links == ["b.html", "m.html"]
        # each letter page links back to it, not to the other letters
        for key in ("b", "m"):
            letter = parsed(big, f"modules/{platform}/{key}.html").links
            assert "index.html" in letter and not [
                link for link in letter if re.fullmatch(r"\w+\.html", link) and link != "index.html"
            ]
    assert sorted(p for p in big if p.startswith("modules/")) == sorted(
        f"modules/{p}/{f}" for p in PLATFORMS for f in ("index.html", "b.html", "m.html")
    )
    # a tenth of the modules on the same letters: the same platform pages
    small = plan(many_modules(tmp_path / "small", 30))
    for platform in PLATFORMS:
        assert small[f"modules/{platform}/index.html"] == big[f"modules/{platform}/index.html"]


def test_modules_are_split_by_their_first_character(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_settings(repo, ["pi64"])
    modules = ("zed", "abc", "Alpha", "9lives", "0day", "_private", "-dash", "Mixed_Case")
    for name in modules:
        add_module(repo, name, "1.0.0", "pi64")
    for name in ("alpha-fw", "Boot", "_fw"):
        add_firmware(repo, name, "1.0.0", "pi64")
    site = plan(repo)
    # digits, then letters, then the one page of "_" and "-"; lower and upper case together
    expected = {
        "0": ["module-0day"],
        "9": ["module-9lives"],
        "a": ["module-alpha", "module-abc", "firmware-alpha-fw"],  # modules, then firmware, by name
        "b": ["firmware-boot"],
        "m": ["module-mixed_case"],
        "z": ["module-zed"],
        "other": ["module-dash", "module-_private", "firmware-_fw"],
    }
    pages = sorted(p for p in site if p.startswith("modules/pi64/"))
    assert pages == sorted([f"modules/pi64/{k}.html" for k in expected] + ["modules/pi64/index.html"])
    for key, ids in expected.items():
        page = site[f"modules/pi64/{key}.html"].decode()
        assert re.findall(r'<section class="package" id="([^"]+)"', page) == ids, key
        assert 'href="index.html"' in page
        for kind, heading in (("module-", "<h2>Modules</h2>"), ("firmware-", "<h2>Firmware</h2>")):
            assert (heading in page) == any(i.startswith(kind) for i in ids), key
    index = parsed(site, "modules/pi64/index.html").links
    assert [link for link in index if link.endswith(".html") and "/" not in link] == [
        f"{k}.html" for k in expected
    ]
    assert [k for k in LETTER_KEYS if k in expected] == list(expected)  # the page's order
    assert [letter_of(n) for n in ("Zz", "zz", "5x", "_a", "-a", "\u212a")] == [
        "z",
        "z",
        "5",
        "other",
        "other",
        "other",
    ]
    # the search entries link to the sections on the letter pages
    for file, rows in search_rows(site).items():
        for row in rows:
            path, fragment = resolve(file, row["url"])
            assert path == f"modules/pi64/{letter_of(row['name'])}.html"
            assert fragment in parsed(site, path).ids


def test_every_link_of_every_page_resolves(big: dict[str, bytes], demo: dict[str, bytes]) -> None:
    for site in (big, demo):
        for page in (p for p in site if p.endswith(".html")):
            for link in parsed(site, page).links:
                if link.startswith("data:"):
                    continue
                path, fragment = resolve(page, link)
                if path.startswith("download_check/"):
                    continue  # the runtime's counted OTA downloads
                assert path in site, f"{page}: broken link {link}"
                if fragment:
                    assert fragment in parsed(site, path).ids, f"{page}: missing anchor {link}"


def test_the_demo_store_pages(demo: dict[str, bytes]) -> None:
    home = demo["index.html"].decode()
    assert "Nothing is published yet" not in home
    assert '<span class="count">2</span>' in home  # Entertainment: two apps
    assert "2 builds" in home and "1 build<" in home
    assert "Modules and firmware" in home and "Modules<" in home
    # Android apps: a count and a link to their list, which has the package's card
    assert "android.appsecurity" not in home and "1 app<" in home
    listing = demo["android-apps/index.html"].decode()
    assert 'href="android.appsecurity.cts.tinyapp/index.html"' in listing and "AT, DE" in listing
    # the search page lists nothing and links to the home page's sections
    search = demo["search.html"].decode()
    assert "data-search-page></ul>" in search
    for target in (
        "index.html#h-categories",
        "index.html#h-devices",
        "index.html#h-modules",
        "android-apps/index.html",
    ):
        assert f'href="{target}"' in search
    names = {row["name"] for rows in search_rows(demo).values() for row in rows}
    assert names == {
        "Tagged App", "Native App", "Plain App", "LG Nexus 5X", "Huawei Nexus 6P", "ax", "iot",
        "bottom-sensor", "py_axbot", "android.appsecurity.cts.tinyapp",
    }  # fmt: skip


def test_an_empty_store(tmp_path: Path) -> None:
    write_settings(tmp_path / "repo")
    site = plan(tmp_path / "repo")
    assert "Nothing is published yet" in site["index.html"].decode()
    assert json.loads(site["search.json"]) == {"schema": 2, "shards": []}
    assert not [p for p in site if p.startswith("search/")]
    assert "No Android apps yet" in site["android-apps/index.html"].decode()
    search = site["search.html"].decode()
    assert 'href="index.html"' in search and "#h-" not in search  # the home page has no sections


# -- parts ------------------------------------------------------------------------------------------


def test_declared_devices_without_builds_have_their_page_and_other_builds_show_nowhere(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    write_settings(repo)
    with (repo / "depot.toml").open("a") as toml:
        toml.write('[ota]\ndevices = [{ codename = "walleye", name = "Pixel 2", manufacturer = "Google" }]\n')
    site = plan(repo)
    page = site["devices/walleye/index.html"].decode()
    assert "Google Pixel 2" in page and "No builds for this device yet." in page
    assert "0 builds" in site["index.html"].decode()
    assert "Google Pixel 2" in {r["name"] for rows in search_rows(site).values() for r in rows}
    # a build of a codename the settings do not declare (or hide) belongs to no part
    web = WebCatalog()
    settings = StoreSettings(
        ota_devices=(OtaDevice("walleye", "Pixel 2"), OtaDevice("hidden", "H", visible=False))
    )
    for codename, enabled, shown in (
        ("walleye", True, True),
        ("walleye", False, False),
        ("angler", True, False),
        ("hidden", True, False),
    ):
        blob = Blob(f"builds/{codename}/x.zip", 1, "0" * 64)
        build = OtaBuild(
            codename=codename, variant="gapps", version="1", date="2026-01-01", blob=blob, enabled=enabled
        )
        assert bool(web.parts(build, settings)) is shown, (codename, enabled)


def test_apps_that_share_an_icon_share_one_icon_file(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_settings(repo)
    (repo / "apps").mkdir()
    for name in ("one", "two"):
        (repo / "apps" / f"com.example.{name}.appkg").write_bytes(pack_package(f"com.example.{name}"))
    site = plan(repo)  # plan_site fails when two outputs claim one path
    icons = [p for p in site if p.startswith("assets/icons/")]
    assert len(icons) == 1
    for name in ("one", "two"):
        assert f'src="../../{icons[0]}"' in site[f"apps/com.example.{name}/index.html"].decode()


def test_hostile_metadata_is_escaped_everywhere(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_settings(repo, ["pi64"])
    module = add_module(repo, "evil", "1.0.0", "pi64")
    Path(str(module) + ".toml").write_text("description = \"<img src=x onerror='window.pwned=1'>\"\n")
    site = plan(repo)
    for path in ("modules/pi64/e.html", "modules/pi64/index.html", "index.html", "search.html"):
        assert "<img src=x" not in site[path].decode()
    assert "&lt;img src=x onerror=&#39;window.pwned=1&#39;&gt;" in site["modules/pi64/e.html"].decode()
    # the search index carries the text as data: the script shows it with textContent
    rows = [r for rows in search_rows(site).values() for r in rows]
    assert rows[0]["text"] == "<img src=x onerror='window.pwned=1'>"


# -- what a change touches ---------------------------------------------------------------------------


def test_a_module_description_changes_its_letter_page_and_its_shard(tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    before = plan(repo)
    (repo / "modules" / "ax.2.6.4.pi64.tar.gz.toml").write_text('description = "Motion control, v2"\n')
    after = plan(repo)
    assert changed(before, after) == ["modules/pi64/a.html", "search.json", shard_path(search_bucket("ax"))]


def test_a_new_module_changes_its_letter_page_not_home(big_repo: Path, big: dict[str, bytes]) -> None:
    add_module(big_repo, "mod_new", "0.1.0", "pi64")
    try:
        after = plan(big_repo)
    finally:
        (big_repo / "modules" / "mod_new.0.1.0.pi64.tar.gz").unlink()
    assert changed(big, after) == [
        "modules/pi64/m.html",
        "search.json",
        shard_path(search_bucket("mod_new")),
    ]


def test_a_new_letter_changes_the_platform_page(big_repo: Path, big: dict[str, bytes]) -> None:
    add_module(big_repo, "zz_new", "0.1.0", "pi64")
    try:
        after = plan(big_repo)
    finally:
        (big_repo / "modules" / "zz_new.0.1.0.pi64.tar.gz").unlink()
    assert changed(big, after) == [
        "modules/pi64/index.html",
        "modules/pi64/z.html",
        "search.json",
        shard_path(search_bucket("zz_new")),
    ]
    assert parsed(after, "modules/pi64/index.html").links[-2:] == ["z.html", "../../device/index.json"]


def test_a_new_app_version_changes_its_pages_not_the_others(tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    before = plan(repo)
    sidecar = repo / "apps" / "com.example.plain.appkg.toml"
    sidecar.write_text(sidecar.read_text().replace('updated = "2026-09-14"', 'updated = "2026-12-01"'))
    after = plan(repo)
    # its page does not show the date; its cards do: the home page and its category page
    assert changed(before, after) == ["categories/entertainment/index.html", "index.html"]
    home = after["index.html"].decode()
    assert home.index("Plain App") < home.index("Tagged App")  # now the newest


# -- in the browser, over a planned site served as plain files --------------------------------------


@contextmanager
def serve_files(site: dict[str, bytes], folder: Path) -> Iterator[str]:
    for path, data in site.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@requires_chromium
def test_search_over_many_shards_in_the_browser(big: dict[str, bytes], tmp_path: Path) -> None:
    shards = json.loads(big["search.json"])["shards"]
    with serve_files(big, tmp_path / "site") as url, browser_page() as (page, problems):
        page.goto(url + "/index.html")
        page.fill("#q", "mod123")
        result = page.locator("[data-search-results] a", has_text="mod123")
        result.wait_for(state="visible")
        assert page.locator("[data-search-results] li").count() == 1
        fetched = sorted(
            u.removeprefix(url + "/") for u in problems.requests if urlsplit(u).path.startswith("/search")
        )
        assert fetched == sorted(["search.json", *(s["url"] for s in shards)])  # each once, in parallel
        result.click()
        page.wait_for_load_state()
        assert page.url.endswith("/modules/opi64/m.html#module-mod123")
        assert page.locator("#module-mod123").is_visible()
        # the search page: every match of every shard, merged and sorted, at most 200 shown
        page.goto(url + "/search.html?q=mod")
        status = page.locator("[data-search-status]")
        status.wait_for(state="visible")
        assert "300 matches; the first 200 are shown" in status.inner_text()
        names = page.locator("[data-search-page] li a").all_inner_texts()
        assert names == [f"mod{i:03d}" for i in range(200)]
        page.fill("#q", "boot")
        page.locator("[data-search-status]", has_text="2 matches").wait_for(state="visible")
        kinds = page.locator("[data-search-page] .kind").all_inner_texts()
        assert kinds == ["Firmware (opi64)", "Firmware (pi64)"]
        problems.assert_none()


@requires_chromium
def test_search_page_without_script_links_to_the_sections(big: dict[str, bytes], tmp_path: Path) -> None:
    with serve_files(big, tmp_path / "site") as url, browser_page(javascript=False) as (page, problems):
        page.goto(url + "/search.html?q=mod123")
        assert "Searching needs JavaScript" in page.locator("main").inner_text()
        page.get_by_role("link", name="Device modules and firmware").click()
        page.wait_for_load_state()
        assert page.url.endswith("/index.html#h-modules")
        assert page.get_by_text("Modules and firmware").first.is_visible()
        problems.assert_none()

"""The static mount's in-memory answers (runtime.static.FileCache and StaticFastPath): the same
bytes and headers as the file on disk, never a file a build replaced, ETag and 304, HEAD, large
files streamed, and a cache that stays within its bounds."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Match
from starlette.testclient import TestClient

from builder.build import build
from builder.routes import load_routes
from builder.webpolicy import SECURITY_HEADERS
from runtime.app import create_app
from runtime.config import RuntimeConfig
from runtime.static import CACHE_FILE_MAX, FileCache, StaticSite
from tests.support.device_index import download_url, fetch_platform, package
from tests.support.repos import add_firmware, add_module, copy_demo

BIG = 3 * CACHE_FILE_MAX + 12345  # a firmware image above the cache's file limit


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[TestClient, StaticSite, Path, Path]]:
    repo = copy_demo(tmp_path / "repo")
    add_firmware(repo, "big-sensor", "2.0.0", "pi64", random.Random(5).randbytes(BIG))
    site = tmp_path / "site"
    build(repo, site)
    config = RuntimeConfig.from_folders(repo, site, tmp_path / "var")
    app = create_app(config)
    with TestClient(app) as client:
        yield client, app.state.services.static, repo, site


def routes(site: Path) -> list[dict]:
    return load_routes(site)


def claimed_by_a_dynamic_route(client: TestClient, url: str) -> bool:
    """The dialect's own GET endpoint answers this URL (Qt's session-filtered /app/list)."""
    scope = {"type": "http", "path": url, "method": "GET", "root_path": ""}
    dynamic = client.app.router.routes[:-1]  # type: ignore[attr-defined]  # the last is the static mount
    return any(r.matches(scope)[0] == Match.FULL for r in dynamic)


def test_cached_answers_are_the_files_with_their_headers(store) -> None:
    client, static, _repo, site = store
    checked = 0
    for route in routes(site):
        if (
            route.get("status", 200) != 200
            or route.get("query")
            or claimed_by_a_dynamic_route(client, route["url"])
        ):
            continue
        body = (site / route["file"]).read_bytes()
        if len(body) > CACHE_FILE_MAX:
            continue
        for attempt in ("read", "from memory"):
            response = client.get(route["url"])
            assert response.status_code == 200, (route["url"], attempt)
            assert response.content == body, (route["url"], attempt)
            assert response.headers["content-length"] == str(len(body))
            assert response.headers["content-type"] == route["type"]
            assert response.headers["etag"].startswith('"')
            expected_cache = (
                "public, max-age=31536000, immutable"
                if route["file"].startswith(("files/", "assets/"))
                else "no-cache"
            )
            assert response.headers["cache-control"] == expected_cache
            for name, value in SECURITY_HEADERS:
                assert response.headers[name] == value, (route["url"], name)
        checked += 1
    assert checked > 40
    assert len(static.cache) >= checked - 5  # a few files are reached under two URLs


def test_urls_a_dialect_answers_are_left_to_it(store) -> None:
    """Qt's /app/list is filtered by the session: the dialect answers it, not the file."""
    client, static, _repo, site = store
    table = {r["url"]: r for r in routes(site) if not r.get("query")}
    assert claimed_by_a_dynamic_route(client, "/app/list")
    answer = client.get("/app/list")
    assert answer.status_code == 200
    assert answer.content != (site / table["/app/list"]["file"]).read_bytes()  # compact JSON
    assert not claimed_by_a_dynamic_route(client, "/category/list")  # POST only: GET is static
    icon = next(url for url in table if url.startswith("/app/icons/"))
    assert client.get(icon, params={"x": "1"}).content == (site / table[icon]["file"]).read_bytes()
    assert len(static.cache) == 1


def test_a_file_a_build_replaced_is_served_new_at_once(store) -> None:
    """The entry of the device index keeps its URL and a build rewrites it: the next request
    gets the new bytes, which name the new shards."""
    client, _static, repo, site = store
    before = client.get("/device/index.json")
    assert before.content == (site / "device/index.json").read_bytes()
    assert "lift" not in {m["name"] for m in fetch_platform(client, "pi64")[0]["modules"]}
    add_module(repo, "lift", "0.1.0", "pi64")
    build(repo, site)
    after = client.get("/device/index.json")
    assert after.content == (site / "device/index.json").read_bytes() != before.content
    assert "lift" in {m["name"] for m in fetch_platform(client, "pi64")[0]["modules"]}
    assert after.headers["etag"] != before.headers["etag"]
    stale = client.get("/device/index.json", headers={"If-None-Match": before.headers["etag"]})
    assert stale.status_code == 200


def test_a_replacement_of_the_same_size_and_mtime_is_served_new(store) -> None:
    """A build renames a new file over the old: a new inode, even when the size and the mtime
    come out the same."""
    client, _static, _repo, site = store
    path = next(site / r["file"] for r in routes(site) if r["url"] == "/category/list" and not r.get("query"))
    old = client.get("/category/list").content
    st = path.stat()
    new = old.replace(b"All", b"Any")
    assert len(new) == len(old) and new != old
    temp = path.with_name(".tmp-test")
    temp.write_bytes(new)
    os.utime(temp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(temp, path)
    assert client.get("/category/list").content == new


def test_if_none_match_gives_304_from_memory(store) -> None:
    client, _static, _repo, _site = store
    first = client.get("/device/index.json")
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get("/device/index.json", headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == "no-cache"
        for name, value in SECURITY_HEADERS:
            assert again.headers[name] == value
    assert client.get("/device/index.json", headers={"If-None-Match": '"other"'}).status_code == 200


def test_head_has_the_headers_and_no_body(store) -> None:
    client, _static, _repo, site = store
    get = client.get("/search.json")
    head = client.head("/search.json")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str((site / "search.json").stat().st_size)
    assert head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-type"] == get.headers["content-type"]


def test_ranges_of_a_cached_file_still_work(store) -> None:
    client, _static, _repo, site = store
    full = (site / "search.json").read_bytes()
    client.get("/search.json")  # cached
    part = client.get("/search.json", headers={"Range": "bytes=3-9"})
    assert part.status_code == 206
    assert part.content == full[3:10]
    etag = client.get("/search.json").headers["etag"]
    assert client.get("/search.json", headers={"Range": "bytes=0-1", "If-Range": etag}).status_code == 206


def test_a_large_file_is_streamed_whole_and_not_kept(store) -> None:
    client, static, _repo, _site = store
    index, shard_urls = fetch_platform(client, "pi64")
    version = package(index, "big-sensor", "firmware")["versions"][0]
    url = download_url(shard_urls[0], version)
    response = client.get(url)
    assert response.status_code == 200
    assert len(response.content) == BIG == int(response.headers["content-length"])
    assert hashlib.sha256(response.content).hexdigest() == version["sha256"]
    for name, value in SECURITY_HEADERS:
        assert response.headers[name] == value
    assert static.cache.total <= static.cache.max_total
    assert all(entry.size <= CACHE_FILE_MAX for entry in static.cache._entries.values())
    assert client.get(url, headers={"Range": "bytes=-5"}).content == response.content[-5:]


def test_unknown_paths_keep_their_404(store) -> None:
    client, _static, _repo, _site = store
    for path in ("/nope", "/routes.json.bak", "/files/"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}
        for name, value in SECURITY_HEADERS:
            assert response.headers[name] == value


def test_the_cache_never_holds_more_than_its_bounds(tmp_path: Path) -> None:
    rng = random.Random(11)
    cache = FileCache(max_file=4096, max_total=50_000)
    files = []
    for i in range(200):
        path = tmp_path / f"f{i}"
        path.write_bytes(rng.randbytes(rng.choice([10, 700, 3000, 4096, 5000])))
        files.append(path)
    for _ in range(3):
        for path in rng.sample(files, len(files)):
            entry = cache.get(str(path), "application/octet-stream", "no-cache")
            size = path.stat().st_size
            if size > 4096:
                assert entry is None
            else:
                assert entry is not None and entry.body == path.read_bytes()
            assert cache.total <= 50_000
            assert cache.total == sum(e.size for e in cache._entries.values())
    assert len(cache) > 10
    # least recently used first out: what was just read is still there
    last = files[-1]
    if last.stat().st_size <= 4096:
        cache.get(str(last), "application/octet-stream", "no-cache")
        assert (str(last), "application/octet-stream", "no-cache") in cache._entries
    # a file that is gone is dropped
    victim = next(p for p in files if (str(p), "application/octet-stream", "no-cache") in cache._entries)
    victim.unlink()
    assert cache.get(str(victim), "application/octet-stream", "no-cache") is None
    assert cache.total == sum(e.size for e in cache._entries.values())


def test_small_files_take_no_thread_hop(store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read and answered on the event loop: no worker thread, no anyio file IO."""
    import anyio.to_thread

    client, _static, _repo, site = store

    def no_threads(*args: object, **kwargs: object) -> None:
        raise AssertionError("a static answer went to a worker thread")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_threads)
    for url in ("/search.json", "/search.json", "/index.html", "/category/list"):
        response = client.get(url)
        assert response.status_code == 200
    assert client.get("/search.json").content == (site / "search.json").read_bytes()

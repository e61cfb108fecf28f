"""`depot serve` as a real process on 127.0.0.1: the static catalog over HTTP, as RFC 9110 says."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from builder.device.module import pack_module
from tests.support.device_index import download_url, fetch_platform, package
from tests.support.serving import ServedStore, depot_command, serve_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    with serve_store(tmp_path_factory.mktemp("served")) as served:
        yield served


@pytest.fixture(scope="module")
def client(store: ServedStore) -> httpx.Client:
    with store.client() as c:
        yield c


def blob_url(client: httpx.Client, platform: str = "pi64", module: str = "ax") -> tuple[str, dict]:
    """Follow the device index the way a device does: entry → the platform's shards → blob URL."""
    index, shard_urls = fetch_platform(client, platform)
    version = package(index, module)["versions"][0]
    return download_url(shard_urls[0], version), version


def test_home_page_lists_the_demo_store(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    for text in ("Depot Demo Store", "pi64", "Nexus 5X"):
        assert text in response.text
    # the home page links each platform; the platform page its letters, each letter its modules
    for platform, modules in (("pi64", ("ax", "iot")), ("opi64", ("py_axbot",))):
        page = client.get(f"/modules/{platform}/index.html")
        assert page.status_code == 200
        for name in modules:
            assert f'href="{name[0]}.html"' in page.text
            letter = client.get(f"/modules/{platform}/{name[0]}.html")
            assert letter.status_code == 200 and f'id="module-{name}"' in letter.text


def test_device_index_is_verifiable_end_to_end(client: httpx.Client) -> None:
    entry_response = client.get("/device/index.json")
    assert entry_response.status_code == 200
    assert entry_response.headers["content-type"] == "application/json"
    entry = entry_response.json()
    assert [p["name"] for p in entry["platforms"]] == ["pi64", "opi64"]
    for platform in entry["platforms"]:
        assert platform["shards"], platform["name"]
        for row in platform["shards"]:
            shard = client.get(urljoin("/device/index.json", row["url"]))
            assert shard.status_code == 200
            assert shard.headers["content-type"] == "application/json"
            assert len(shard.content) == row["size"]
            assert hashlib.sha256(shard.content).hexdigest() == row["sha256"]
    url, version = blob_url(client)
    body = client.get(url).content
    assert len(body) == version["size"]
    assert hashlib.sha256(body).hexdigest() == version["sha256"]
    assert version["version"] == "2.6.4"


def test_content_addressed_files_are_cacheable_forever_and_indexes_revalidate(client: httpx.Client) -> None:
    url, _ = blob_url(client)
    assert client.get(url).headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get("/device/index.json").headers["cache-control"] == "no-cache"
    for shard_url in fetch_platform(client, "pi64")[1]:
        assert client.get(shard_url).headers["cache-control"] == "no-cache"


def test_full_get_advertises_ranges_and_length(client: httpx.Client) -> None:
    url, version = blob_url(client)
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["accept-ranges"] == "bytes"
    assert int(response.headers["content-length"]) == version["size"]
    assert response.headers["etag"].startswith('"')


def test_single_range(client: httpx.Client) -> None:
    url, version = blob_url(client)
    full = client.get(url).content
    response = client.get(url, headers={"Range": "bytes=10-19"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 10-19/{version['size']}"
    assert response.headers["content-length"] == "10"
    assert response.content == full[10:20]


def test_open_ended_and_suffix_ranges(client: httpx.Client) -> None:
    url, version = blob_url(client)
    full = client.get(url).content
    resumed = client.get(url, headers={"Range": "bytes=100-"})
    assert resumed.status_code == 206
    assert resumed.content == full[100:]
    assert resumed.headers["content-range"] == f"bytes 100-{version['size'] - 1}/{version['size']}"
    tail = client.get(url, headers={"Range": "bytes=-7"})
    assert tail.status_code == 206
    assert tail.content == full[-7:]


def test_range_end_past_the_file_is_clamped(client: httpx.Client) -> None:
    url, version = blob_url(client)
    full = client.get(url).content
    response = client.get(url, headers={"Range": f"bytes=5-{version['size'] + 1000}"})
    assert response.status_code == 206
    assert response.content == full[5:]


def test_multiple_ranges_come_as_multipart(client: httpx.Client) -> None:
    url, _ = blob_url(client)
    full = client.get(url).content
    response = client.get(url, headers={"Range": "bytes=0-1,20-21"})
    assert response.status_code == 206
    assert response.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert full[0:2] in response.content and full[20:22] in response.content


def test_unsatisfiable_range_is_416_with_the_size(client: httpx.Client) -> None:
    url, version = blob_url(client)
    response = client.get(url, headers={"Range": f"bytes={version['size']}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{version['size']}"


@pytest.mark.parametrize("header", ["bytes=abc", "items=0-5", "bytes=5-2", "bytes"])
def test_a_range_that_cannot_be_parsed_is_ignored(client: httpx.Client, header: str) -> None:
    url, version = blob_url(client)
    response = client.get(url, headers={"Range": header})
    assert response.status_code == 200
    assert len(response.content) == version["size"]


def test_if_range_with_the_current_etag_gives_the_range(client: httpx.Client) -> None:
    url, _ = blob_url(client)
    full = client.get(url)
    response = client.get(url, headers={"Range": "bytes=0-3", "If-Range": full.headers["etag"]})
    assert response.status_code == 206
    assert response.content == full.content[:4]


def test_if_range_with_a_stale_validator_gives_the_whole_file(client: httpx.Client) -> None:
    url, version = blob_url(client)
    for stale in ('"not-the-etag"', "Wed, 21 Oct 2015 07:28:00 GMT", 'W/"weak"'):
        response = client.get(url, headers={"Range": "bytes=0-3", "If-Range": stale})
        assert response.status_code == 200, stale
        assert len(response.content) == version["size"]


def test_head_has_the_headers_and_no_body(client: httpx.Client) -> None:
    url, version = blob_url(client)
    response = client.head(url)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == version["size"]
    assert response.content == b""
    ranged = client.head(url, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"].startswith("bytes 0-9/")
    assert ranged.content == b""


def test_if_none_match_gives_304(client: httpx.Client) -> None:
    first = client.get("/device/index.json")
    again = client.get("/device/index.json", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    other = client.get("/device/index.json", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/files/..%2f..%2fetc%2fpasswd",
        "/routes.json/../../etc/passwd",
        "/device/pi64/",
        "/.site.depot/manifest.json",
    ],
)
def test_unknown_and_traversal_paths_are_404_json(store: ServedStore, path: str) -> None:
    # raw request so the client does not normalise the path
    with httpx.Client(base_url=store.url) as raw:
        request = raw.build_request("GET", store.url)
        request.url = (
            httpx.URL(store.url + path) if "%" in path else request.url.copy_with(raw_path=path.encode())
        )
        response = raw.send(request)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    assert b"root:" not in response.content


def test_a_rebuild_is_visible_without_restarting(store: ServedStore, client: httpx.Client) -> None:
    pack_module(
        store.repo / "modules" / "lift.0.1.0.pi64.tar.gz",
        {"bin/lift": b"#!/bin/sh\n"},
        {"description": "Lift control"},
    )
    result = subprocess.run(
        depot_command(
            "build", "--repo", str(store.repo), "--site", str(store.site), "--data", str(store.data)
        ),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    url, version = blob_url(client, module="lift")
    assert version["version"] == "0.1.0"
    assert client.get(url).status_code == 200
    assert 'href="l.html"' in client.get("/modules/pi64/index.html").text
    assert 'id="module-lift"' in client.get("/modules/pi64/l.html").text


def test_secret_key_is_generated_once_and_private(store: ServedStore) -> None:
    key = store.data / "secret.key"
    assert key.exists()
    assert key.stat().st_mode & 0o077 == 0
    assert len(key.read_text().strip()) >= 32


def test_serve_builds_a_missing_site_and_uses_the_secret_from_the_environment(tmp_path: Path) -> None:
    with serve_store(tmp_path, env={"DEPOT_SECRET_KEY": "from-the-environment-" + "k" * 32}) as served:
        assert (served.site / "routes.json").exists()
        assert httpx.get(served.url + "/device/index.json").status_code == 200
        assert not (served.data / "secret.key").exists()


def test_the_python_module_entry_point_works() -> None:
    result = subprocess.run([sys.executable, "-m", "runtime.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("build", "watch", "serve", "user", "check", "nginx"):
        assert command in result.stdout

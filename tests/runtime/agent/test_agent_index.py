"""The agent's index reading (schema 2, docs/device-index.md), in-process: the entry, every shard
the builder made for the platform, merged; the cache it re-parses offline; and a shard or cache
that is valid JSON but not an object is a StoreIndexError (or ignored), not an AttributeError.

The store is the real builder's, served over HTTP; only the malformed documents are written by
hand."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from builder.build import build
from builder.device.render import bucket_of
from runtime.agent.config import AgentConfig
from runtime.agent.index import (
    StoreIndexError,
    cached_index,
    fetch_index,
    merge_shards,
    parse_platform_index,
)
from tests.support.agent import (
    make_firmware,
    make_module,
    plain_http_server,
    write_store_settings,
)
from tests.support.serving import serve_app

# Names in four buckets, two of them ("ax", "ex") sharing one.
MODULES = {"ax": "5", "ex": "5", "bx": "3", "iot": "f"}
FIRMWARE = {"bottom-sensor": "e"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("built")
    repo, site = base / "repo", base / "site"
    write_store_settings(repo)
    for name in MODULES:
        make_module(repo, name, "1.0")
    make_module(repo, "ax", "1.1")
    make_firmware(repo, "bottom-sensor", "1.4.3", b"\x7fFW" * 100)
    build(repo, site)
    return site


@pytest.fixture
def served(site: Path) -> Iterator[str]:
    with plain_http_server(site) as url:
        yield url


def entry_of(site: Path) -> dict:
    return json.loads((site / "device/index.json").read_bytes())


def test_the_builders_shards_are_fetched_and_merged(site: Path, served: str, tmp_path: Path) -> None:
    assert {name: bucket_of(name) for name in MODULES} == MODULES
    shards = entry_of(site)["platforms"][0]["shards"]
    assert [row["shard"] for row in shards] == ["3", "5", "e", "f"]  # ax and ex share one
    index = fetch_index(AgentConfig(store=served, root=tmp_path))
    assert index.platform == "pi64"
    assert sorted(index.modules) == sorted(MODULES)
    assert [r.version for r in index.modules["ax"].releases] == ["1.1", "1.0"]
    assert list(index.firmware) == ["bottom-sensor"]
    # every URL resolved against the shard that names it (../../files/... from device/pi64/)
    for package in (*index.modules.values(), *index.firmware.values()):
        for release in package.releases:
            assert release.url.startswith(served + "files/"), release.url


def test_the_cache_holds_every_shard_and_is_read_offline(site: Path, served: str, tmp_path: Path) -> None:
    config = AgentConfig(store=served, root=tmp_path, platform="pi64")
    index = fetch_index(config)
    cached = json.loads(config.index_cache.read_bytes())
    rows = entry_of(site)["platforms"][0]["shards"]
    assert cached["schema"] == 2 and cached["platform"] == "pi64"
    assert [s["url"] for s in cached["shards"]] == [
        urljoin(served + "device/index.json", r["url"]) for r in rows
    ]
    assert [s["index"] for s in cached["shards"]] == [
        json.loads((site / "device" / r["url"]).read_bytes()) for r in rows
    ]
    assert cached_index(config) == index  # read from the file alone: nothing is fetched
    # a cache of another platform than the one the agent now follows is not shown
    assert cached_index(AgentConfig(store=served, root=tmp_path, platform="opi64")) is None


def test_an_old_format_cache_is_read_as_before(site: Path, served: str, tmp_path: Path) -> None:
    """What an agent before schema 2 cached: ``{"url", "platform", "index"}``, one platform index."""
    shard = entry_of(site)["platforms"][0]["shards"][1]
    url = served + "device/" + shard["url"]
    config = AgentConfig(store=served, root=tmp_path)
    data = json.loads((site / "device" / shard["url"]).read_bytes())
    config.index_cache.write_text(json.dumps({"url": url, "platform": "pi64", "index": data}))
    index = cached_index(config)
    assert index is not None and sorted(index.modules) == ["ax", "ex"]
    assert index.modules["ax"].releases[0].url.startswith(served + "files/")


@pytest.mark.parametrize(
    "cache",
    [
        {"url": "http://x/", "platform": "pi64", "index": []},
        {"schema": 2, "platform": "pi64", "shards": [{"url": "http://x/", "index": []}]},
        {"schema": 2, "platform": "pi64", "shards": {"url": "http://x/"}},
        {"schema": 2, "platform": "pi64", "shards": ["http://x/"]},
        {"schema": 2, "platform": "pi64", "shards": [{"url": 5, "index": {}}]},
        {"schema": 2, "platform": 7, "shards": []},
        {"schema": 2, "shards": []},
        [],
        "text",
    ],
)
def test_a_cache_the_agent_cannot_read_is_ignored(tmp_path: Path, cache: object) -> None:
    config = AgentConfig(store="http://127.0.0.1:9/", root=tmp_path)
    config.index_cache.write_text(json.dumps(cache))
    assert cached_index(config) is None


def test_a_cache_that_is_not_json_is_ignored(tmp_path: Path) -> None:
    config = AgentConfig(store="http://127.0.0.1:9/", root=tmp_path)
    config.index_cache.write_bytes(b"\xff{truncated")
    assert cached_index(config) is None


def test_one_connection_serves_the_entry_and_every_shard(site: Path, tmp_path: Path) -> None:
    clients: list[tuple[str, int]] = []

    async def file(request: Request) -> Response:
        assert request.client is not None
        clients.append((request.client.host, request.client.port))
        path = (site / request.path_params["path"]).resolve()
        if not path.is_relative_to(site.resolve()) or not path.is_file():
            return Response(b"", status_code=404)
        return Response(path.read_bytes(), media_type="application/json")

    with serve_app(Starlette(routes=[Route("/{path:path}", file)])) as url:
        index = fetch_index(AgentConfig(store=url, root=tmp_path))
    assert sorted(index.modules) == sorted(MODULES)
    assert len(clients) == 1 + 4  # the entry and the four shards
    assert len(set(clients)) == 1, clients  # over one keep-alive connection


# -- malformed documents (hand-written) -------------------------------------------------------


@pytest.mark.parametrize("data", [[], [{"modules": []}], "text", 3, None])
def test_a_platform_index_that_is_not_an_object(data: object) -> None:
    with pytest.raises(StoreIndexError, match="not a JSON object"):
        parse_platform_index(data, "http://store/device/pi64/5.0123456789abcdef.json", "pi64")


def test_a_shard_of_another_platform_is_refused() -> None:
    with pytest.raises(StoreIndexError, match="an index of platform 'opi64', not of pi64"):
        parse_platform_index({"platform": "opi64", "modules": []}, "http://s/device/pi64/5.x.json", "pi64")


def version(url: str) -> dict:
    return {"version": "1.0", "url": url, "size": 3, "sha256": "a" * 64}


def test_a_name_in_two_shards_keeps_the_first_in_bucket_order(caplog: pytest.LogCaptureFixture) -> None:
    first = {"modules": [{"name": "ax", "description": "first", "versions": [version("a.tar.gz")]}]}
    again = {
        "modules": [
            {"name": "ax", "description": "again", "versions": [version("b.tar.gz")]},
            {"name": "bx", "versions": [version("bx.tar.gz")]},
        ],
        "firmware": [{"name": "ax", "versions": [version("fw.bin")]}],  # firmware is another list
    }
    with caplog.at_level(logging.WARNING, logger="runtime.agent"):
        index = merge_shards([("http://s/d/p/3.json", first), ("http://s/d/p/5.json", again)], "pi64")
    assert index.modules["ax"].description == "first"
    assert index.modules["ax"].releases[0].url == "http://s/d/p/a.tar.gz"
    assert index.modules["bx"].releases[0].url == "http://s/d/p/bx.tar.gz"
    assert list(index.firmware) == ["ax"]
    assert "ax is listed more than once (again in http://s/d/p/5.json); the first is kept" in caplog.text


def test_a_first_listing_without_usable_versions_still_holds_the_name() -> None:
    """A later shard cannot take a name over by the first one's versions being unusable."""
    first = {
        "modules": [{"name": "ax", "versions": [{"version": "../x", "url": "a", "size": 1, "sha256": "a"}]}]
    }
    again = {"modules": [{"name": "ax", "versions": [version("b.tar.gz")]}]}
    index = merge_shards([("http://s/d/p/3.json", first), ("http://s/d/p/5.json", again)], "pi64")
    assert index.modules == {}


def store_app(shard: bytes, schema: int = 2) -> Starlette:
    line = {
        "url": "pi64/5.0123456789abcdef.json",
        "size": len(shard),
        "sha256": hashlib.sha256(shard).hexdigest(),
    }
    platform = (
        {"name": "pi64", "shards": [{"shard": "5", **line}]} if schema == 2 else {"name": "pi64", **line}
    )
    entry = {"schema": schema, "platforms": [platform]}

    async def entry_json(request: Request) -> Response:
        return Response(json.dumps(entry), media_type="application/json")

    async def shard_json(request: Request) -> Response:
        return Response(shard, media_type="application/json")

    return Starlette(
        routes=[
            Route("/device/index.json", entry_json),
            Route("/device/pi64/5.0123456789abcdef.json", shard_json),
        ]
    )


@pytest.mark.parametrize("schema", [1, 2])
def test_fetching_a_list_index_over_http_is_a_store_index_error(tmp_path: Path, schema: int) -> None:
    with serve_app(store_app(b"[1, 2, 3]", schema)) as url:
        config = AgentConfig(store=url, root=tmp_path)
        with pytest.raises(StoreIndexError, match="not a JSON object"):
            fetch_index(config)
    assert not config.index_cache.exists()  # nothing unverified is cached


def test_a_shard_that_is_not_json_is_a_store_index_error(tmp_path: Path) -> None:
    with serve_app(store_app(b"{not json")) as url:
        config = AgentConfig(store=url, root=tmp_path)
        with pytest.raises(StoreIndexError, match="is not JSON"):
            fetch_index(config)
    assert not config.index_cache.exists()

"""The agent's index parsing: a platform index that is valid JSON but not an object is a
StoreIndexError (the agent reports it and keeps its cached index), not an AttributeError."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from runtime.agent.config import AgentConfig
from runtime.agent.index import StoreIndexError, cached_index, fetch_index, parse_platform_index
from tests.support.serving import serve_app


@pytest.mark.parametrize("data", [[], [{"modules": []}], "text", 3, None])
def test_a_platform_index_that_is_not_an_object(data: object) -> None:
    with pytest.raises(StoreIndexError, match="not a JSON object"):
        parse_platform_index(data, "http://store/device/pi64/index.json", "pi64")


def store_app(platform_index: bytes) -> Starlette:
    entry = {
        "platforms": [
            {
                "name": "pi64",
                "url": "pi64/index.json",
                "size": len(platform_index),
                "sha256": hashlib.sha256(platform_index).hexdigest(),
            }
        ]
    }

    async def entry_json(request):
        return Response(json.dumps(entry), media_type="application/json")

    async def index_json(request):
        return Response(platform_index, media_type="application/json")

    return Starlette(
        routes=[Route("/device/index.json", entry_json), Route("/device/pi64/index.json", index_json)]
    )


def test_fetching_a_list_index_over_http_is_a_store_index_error(tmp_path: Path) -> None:
    with serve_app(store_app(b"[1, 2, 3]")) as url:
        config = AgentConfig(store=url, root=tmp_path)
        with pytest.raises(StoreIndexError, match="not a JSON object"):
            fetch_index(config)
    assert not config.index_cache.exists()  # nothing unverified is cached


def test_a_cached_index_that_is_not_an_object_is_ignored(tmp_path: Path) -> None:
    config = AgentConfig(store="http://127.0.0.1:9/", root=tmp_path)
    config.index_cache.write_text(json.dumps({"url": "http://x/", "platform": "pi64", "index": []}))
    assert cached_index(config) is None

"""The runtime's rebuilds follow what the endpoint wrote, and still walk repo/ now and then."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import runtime.rebuild
from builder.build import build
from runtime.app import create_app
from runtime.config import Limits, RuntimeConfig
from runtime.rebuild import WALK_EVERY, Rebuilder
from tests.support.repos import add_module, copy_demo
from tests.support.shipper import add_user, login, make_repo, ota_zip, sha256


def spy_on_builds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``changed`` argument of every build the runtime runs, in order (None: a walk)."""
    calls: list[Any] = []
    real = runtime.rebuild.build

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("changed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime.rebuild, "build", spy)
    return calls


def test_a_fed_rebuild_stats_what_it_was_told_and_walks_when_the_last_walk_is_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    calls = spy_on_builds(monkeypatch)
    clock = [1000.0]
    monkeypatch.setattr(runtime.rebuild.time, "monotonic", lambda: clock[0])
    rebuilder = Rebuilder(repo, site)

    first = add_module(repo, "first", "1.0", "pi64")
    asyncio.run(rebuilder.rebuild(changed=[f"modules/{first.name}"]))  # no walk yet: walks
    second = add_module(repo, "second", "1.0", "pi64")
    clock[0] += 1
    result = asyncio.run(rebuilder.rebuild(changed=[f"modules/{second.name}"]))
    assert result is not None and any(p.endswith(second.name) for p in result.written)
    unnamed = add_module(repo, "unnamed", "1.0", "pi64")  # a maintainer's drop nobody named
    clock[0] += 1
    assert asyncio.run(rebuilder.rebuild(changed=[])).written == []
    clock[0] += WALK_EVERY + 1
    late = asyncio.run(rebuilder.rebuild(changed=[]))  # the last walk is old: this one walks
    assert late is not None and any(p.endswith(unnamed.name) for p in late.written)
    asyncio.run(rebuilder.rebuild())  # no feed: a walk
    assert calls == [None, [f"modules/{second.name}"], [], None, None]


def test_a_shipper_upload_feeds_the_rebuild_the_path_of_the_build_it_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shippy's completion names the zip it put in repo/builds/<codename>/ (and any zip whose
    checksum it wrote), so the build after it stats those, not every file of repo/."""
    from starlette.testclient import TestClient

    repo, site, data = make_repo(tmp_path / "repo"), tmp_path / "site", tmp_path / "var"
    build(repo, site)
    add_user(data)
    calls = spy_on_builds(monkeypatch)
    config = RuntimeConfig(repo=repo, site=site, data=data, secret_key="s" * 40, limits=Limits())
    base = "/api/v1/maintainers/chunked_upload/"
    with TestClient(create_app(config), base_url="http://testserver") as client:
        auth = login(client)  # type: ignore[arg-type]
        for day in ("20211111", "20211112"):
            name = f"Bliss-v14.9-bullhead-OFFICIAL-gapps-{day}.zip"
            body = ota_zip(tmp_path / name, size=200_000)
            headers = {**auth, "Content-Range": f"bytes 0-{len(body) - 1}/{len(body)}"}
            put = client.put(base, headers=headers, data={"filename": name}, files={"file": ("file", body)})
            assert put.status_code == 200, put.text
            done = client.post(f"{base}{put.json()['id']}/", headers=auth, data={"sha256": sha256(body)})
            assert done.status_code == 200, done.text
            assert (repo / "builds" / "bullhead" / name).is_file()
    # the first rebuild of a server walks (it has not seen repo/ yet); the next is fed
    assert calls[-2:] == [None, [f"builds/bullhead/{name}"]]

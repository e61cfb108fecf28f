"""The runtime's rebuilds follow what the endpoint wrote, and still walk repo/ now and then."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import runtime.rebuild
from runtime.rebuild import WALK_EVERY, Rebuilder
from tests.support.repos import add_module, copy_demo


def test_a_fed_rebuild_stats_what_it_was_told_and_walks_when_the_last_walk_is_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    calls: list[Any] = []
    real = runtime.rebuild.build

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("changed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime.rebuild, "build", spy)
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

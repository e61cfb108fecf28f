"""Old device index shards stay for a grace period, so a reader of an older entry finds them.

``device/index.json`` names, per platform, its shards ``device/<platform>/<b>.<fp16>.json``
with their size and SHA-256. A client that fetched the entry just before a build must still get
the shards it names: the build keeps the shards of the previous RETAIN_GENERATIONS generations
AND for RETAIN_SECONDS after they stopped being current, serves them (routes.json), and deletes
them after both have passed. A shard whose bytes did not change keeps its name and is current.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

import builder.publish
from builder.build import build, retained_history, state_dir_for
from builder.publish import RETAIN_GENERATIONS, RETAIN_SECONDS
from builder.routes import load_routes
from runtime.static import StaticSite
from tests.support.device_index import device_bucket
from tests.support.repos import (
    add_module,
    assert_same_tree,
    assert_site_usable,
    sha256,
    site_tree,
    write_settings,
)

T0 = 1_800_000_000.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The wall clock the retention reads, moved by the test: ``clock[0] = ...``."""
    now = [T0]
    monkeypatch.setattr(builder.publish, "wall_clock", lambda: now[0])
    return now


def store(tmp_path: Path) -> tuple[Path, Path]:
    """pi64 with two shards (ax's and nav's buckets differ), opi64 with one."""
    repo, site = tmp_path / "repo", tmp_path / "site"
    write_settings(repo, ["pi64", "opi64"], name="Retaining Store")
    add_module(repo, "ax", "1.0", "pi64")
    add_module(repo, "nav", "1.0", "pi64")
    add_module(repo, "iot", "1.0", "opi64")
    assert device_bucket("ax") != device_bucket("nav")
    return repo, site


def shard_row(entry: bytes, platform: str, name: str | None = None) -> dict:
    """The entry's row of the shard of ``platform`` that holds ``name`` (by default the one a
    release (``change``) rewrites: ax's on pi64, iot's on opi64), with its site path."""
    name = name or {"pi64": "ax", "opi64": "iot"}[platform]
    line = next(p for p in json.loads(entry)["platforms"] if p["name"] == platform)
    row = next(r for r in line["shards"] if r["shard"] == device_bucket(name))
    return {**row, "path": posixpath.normpath(posixpath.join("device", row["url"]))}


def assert_serves(site: Path, row: dict) -> None:
    """What a device does with an entry it holds: fetch a shard it names, verify it."""
    static = StaticSite(site)  # the runtime's static mount: it serves only what routes.json lists
    app = Starlette(routes=[Route("/{path:path}", static.endpoint, methods=["GET", "HEAD"])])

    async def fetch() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://store") as c:
            return await c.get("/" + row["path"])

    response = asyncio.run(fetch())
    assert response.status_code == 200, f"/{row['path']} answered {response.status_code}"
    assert (len(response.content), sha256(response.content)) == (row["size"], row["sha256"])


def assert_gone(site: Path, row: dict) -> None:
    assert not (site / row["path"]).exists()
    routes = load_routes(site)
    assert all(r["file"] != row["path"] for r in routes)


def change(repo: Path, n: int) -> None:
    """A release of ax on pi64 only: a new generation of ax's shard, every other shard unchanged."""
    add_module(repo, "ax", f"2.{n}", "pi64")


def test_the_shards_of_a_fetched_entry_survive_a_rebuild(tmp_path: Path, clock: list[float]) -> None:
    repo, site = store(tmp_path)
    build(repo, site)
    entry = (site / "device" / "index.json").read_bytes()  # a device fetched this entry
    old = shard_row(entry, "pi64")

    change(repo, 1)
    result = build(repo, site)

    new = shard_row((site / "device" / "index.json").read_bytes(), "pi64")
    assert new["path"] != old["path"]
    assert old["path"] not in result.deleted and result.retained == 1
    assert retained_history(site) == {old["path"]}
    assert_serves(site, old)  # ... and the shard it names is still served, verified
    assert_serves(site, new)
    now = (site / "device" / "index.json").read_bytes()
    # the shards the release did not touch: the same file, current in both entries, not history
    for platform, name in (("pi64", "nav"), ("opi64", "iot")):
        same = shard_row(entry, platform, name)
        assert same == shard_row(now, platform, name) and same["path"] not in retained_history(site)
        assert_serves(site, same)
    assert_site_usable(site)  # the retained file's route resolves too

    report = json.loads((state_dir_for(site) / "report.json").read_bytes())
    assert report["files_retained"] == 1
    assert report["outputs"] == result.outputs  # retained files are not outputs of this build


def test_old_generations_go_after_n_newer_ones_and_the_grace_time(tmp_path: Path, clock: list[float]) -> None:
    repo, site = store(tmp_path)
    build(repo, site)
    rows = [shard_row((site / "device" / "index.json").read_bytes(), "pi64")]
    for n in range(1, RETAIN_GENERATIONS + 2):
        clock[0] += 1
        change(repo, n)
        build(repo, site)
        rows.append(shard_row((site / "device" / "index.json").read_bytes(), "pi64"))
    # Many newer generations, but within the grace time: every old one is still served.
    for row in rows:
        assert_serves(site, row)
    assert len(retained_history(site)) == RETAIN_GENERATIONS + 1

    clock[0] = T0 + RETAIN_SECONDS + 100  # the grace time is over for every old one
    change(repo, 99)
    result = build(repo, site)

    # The generations before the last RETAIN_GENERATIONS are gone; those are still kept.
    rows.append(shard_row((site / "device" / "index.json").read_bytes(), "pi64"))
    kept, gone = rows[-1 - RETAIN_GENERATIONS : -1], rows[: -1 - RETAIN_GENERATIONS]
    for row in gone:
        assert_gone(site, row)
        assert row["path"] in result.deleted
    for row in kept + rows[-1:]:
        assert_serves(site, row)
    assert retained_history(site) == {row["path"] for row in kept}
    assert_site_usable(site)


def test_the_grace_time_alone_keeps_nothing_n_generations_later(tmp_path: Path, clock: list[float]) -> None:
    """After the grace time, a file still goes only once RETAIN_GENERATIONS newer generations
    were published: a store that rebuilds once a day keeps yesterday's shards."""
    repo, site = store(tmp_path)
    build(repo, site)
    old = shard_row((site / "device" / "index.json").read_bytes(), "pi64")
    change(repo, 1)
    build(repo, site)
    clock[0] += 10 * RETAIN_SECONDS
    for n in range(2, RETAIN_GENERATIONS + 1):
        change(repo, n)
        build(repo, site)
        assert_serves(site, old)
    change(repo, RETAIN_GENERATIONS + 1)
    build(repo, site)
    assert_gone(site, old)


def test_a_no_change_build_deletes_what_is_due(tmp_path: Path, clock: list[float]) -> None:
    """The fast path writes nothing, but it does not keep a retained file past its time."""
    repo, site = store(tmp_path)
    build(repo, site)
    old = shard_row((site / "device" / "index.json").read_bytes(), "pi64")
    for n in range(1, RETAIN_GENERATIONS + 2):  # old is now RETAIN_GENERATIONS generations back
        change(repo, n)
        build(repo, site)
    assert build(repo, site).written == []  # nothing due yet (the grace time): the fast path
    assert_serves(site, old)

    clock[0] += RETAIN_SECONDS
    result = build(repo, site)

    assert old["path"] in result.deleted
    assert_gone(site, old)
    assert build(repo, site).written == []


def test_a_removed_platform_keeps_its_old_shards_for_the_grace(tmp_path: Path, clock: list[float]) -> None:
    repo, site = store(tmp_path)
    build(repo, site)
    old = shard_row((site / "device" / "index.json").read_bytes(), "opi64")
    write_settings(repo, ["pi64"], name="Retaining Store")
    (repo / "modules" / "iot.1.0.opi64.tar.gz").unlink()
    result = build(repo, site)
    entry = json.loads((site / "device" / "index.json").read_bytes())
    assert "opi64" not in {p["name"] for p in entry["platforms"]}
    assert not any(p.startswith("device/opi64/") for p in result.deleted)  # its shard is history
    assert retained_history(site) == {old["path"]}
    assert_serves(site, old)
    for n in range(1, RETAIN_GENERATIONS + 1):  # RETAIN_GENERATIONS newer generations
        change(repo, n)
        build(repo, site)
    clock[0] += RETAIN_SECONDS
    build(repo, site)
    assert_gone(site, old)
    assert not (site / "device" / "opi64").exists()  # its folder went with it


def test_incremental_equals_clean_apart_from_the_retained_history(tmp_path: Path, clock: list[float]) -> None:
    repo, site = store(tmp_path)
    build(repo, site)
    for n in range(1, 3):
        change(repo, n)
        build(repo, site)
    clean = tmp_path / "clean"
    build(repo, clean)
    assert retained_history(clean) == set()
    history = retained_history(site)
    assert len(history) == 2
    assert_same_tree(site_tree(site), site_tree(clean))  # site_tree leaves the history out
    full = site_tree(site, history=True)
    extra = set(full) - set(site_tree(clean, history=True))
    # and the shards of the route table that only the history's rows fill
    assert {p for p in extra if not p.startswith("routes/")} == history
    routes = {r["file"] for r in load_routes(site)}  # the history's rows included
    clean_routes = {r["file"] for r in load_routes(clean)}
    assert routes - clean_routes == history


def test_a_build_after_a_killed_one_keeps_the_history(tmp_path: Path, clock: list[float]) -> None:
    """The full sweep after a killed build removes what no output claims, except the history."""
    repo, site = store(tmp_path)
    build(repo, site)
    old = shard_row((site / "device" / "index.json").read_bytes(), "pi64")
    change(repo, 1)
    build(repo, site)
    (state_dir_for(site) / "build-in-progress").write_text("killed\n")
    (site / "device" / "stray.json").write_text("{}")

    result = build(repo, site)

    assert result.recovered and "device/stray.json" in result.deleted
    assert_serves(site, old)


def test_a_damaged_retained_file_is_dropped_not_served(tmp_path: Path, clock: list[float]) -> None:
    repo, site = store(tmp_path)
    build(repo, site)
    old = shard_row((site / "device" / "index.json").read_bytes(), "pi64")
    change(repo, 1)
    build(repo, site)
    (site / old["path"]).write_text("{}")  # someone edited it: it no longer has the stated bytes

    build(repo, site, full=True)  # the full check of site/ sees the damage and drops it

    assert_gone(site, old)
    assert_site_usable(site)

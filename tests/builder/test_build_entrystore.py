"""The build state's entry store: a base file plus a delta of what changed, never a lost or a
stale entry, whatever order of saves and kills."""

from __future__ import annotations

import json
from pathlib import Path

from builder.entrystore import MIN_DELTA, EntryStore


def entries(n: int) -> dict[str, dict[str, int]]:
    return {f"files/{i:05d}": {"size": i} for i in range(n)}


def reload(path: Path, header: dict | None = None) -> dict:
    return EntryStore(path, header or {"v": 1}).load()


def test_a_few_changes_go_to_the_delta_and_load_back(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    store = EntryStore(path, {"v": 1})
    assert store.load() == {}
    data = entries(2000)
    store.save(data)
    base_bytes = path.read_bytes()

    store = EntryStore(path, {"v": 1})
    data = store.load()
    data = {**data, "files/new": {"size": 7}, "files/00001": {"size": -1}}
    del data["files/00002"]
    store.save(data)

    assert path.read_bytes() == base_bytes  # the big file was not rewritten
    delta = json.loads((tmp_path / "manifest.json.delta").read_bytes())
    assert delta["set"] == {"files/new": {"size": 7}, "files/00001": {"size": -1}}
    assert delta["drop"] == ["files/00002"]
    assert reload(path) == data


def test_many_changes_rewrite_the_base_and_drop_the_delta(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    store = EntryStore(path, {"v": 1})
    store.load()
    store.save(entries(10))
    store = EntryStore(path, {"v": 1})
    data = store.load()
    data["files/extra"] = {"size": 1}
    store.save(data)
    assert (tmp_path / "cache.json.delta").exists()

    data = {**data, **{f"more/{i}": {"size": i} for i in range(MIN_DELTA + 1)}}
    store.save(data)

    assert not (tmp_path / "cache.json.delta").exists()
    assert reload(path) == data


def test_a_delta_of_an_older_base_is_ignored(tmp_path: Path) -> None:
    """A build killed after writing a new base but before removing the old delta."""
    path = tmp_path / "cache.json"
    store = EntryStore(path, {"v": 1})
    store.load()
    store.save({"a": 1})
    store = EntryStore(path, {"v": 1})
    store.load()
    store.save({"a": 2})
    old_delta = (tmp_path / "cache.json.delta").read_bytes()
    newest = {"a": 3, **{f"k{i}": i for i in range(MIN_DELTA + 1)}}
    store.save(newest)  # compacts: new base, delta removed
    (tmp_path / "cache.json.delta").write_bytes(old_delta)  # as if the removal never happened

    assert reload(path) == newest


def test_foreign_or_damaged_files_load_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    store = EntryStore(path, {"v": 1})
    store.load()
    store.save({"a": 1})
    assert reload(path, {"v": 2}) == {}
    (tmp_path / "cache.json.delta").write_bytes(b"{not json")
    assert reload(path) == {"a": 1}
    path.write_bytes(b"\x00garbage")
    assert reload(path) == {}

"""``depot serve`` with a key folder: its rebuilds sign site/tuf/, its static mount serves it,
and a background task signs the timestamp again before it expires (runtime/trust.py)."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import httpx
import pytest

import builder.trust.timestamp
import runtime.trust
from builder.build import build
from builder.trust.keys import init_keys
from runtime.app import create_app
from runtime.config import RuntimeConfig
from tests.support.device_index import shard_files
from tests.support.repos import copy_demo
from tests.support.serving import serve_app
from tests.support.trust import fetch


def version(site: Path) -> int:
    return json.loads((site / "tuf" / "timestamp.json").read_bytes())["signed"]["version"]


def test_serve_signs_the_timestamp_again_before_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, site, keys = copy_demo(tmp_path / "repo"), tmp_path / "site", tmp_path / "keys"
    init_keys(keys)
    build(repo, site, keys=keys)
    assert version(site) == 1
    config = RuntimeConfig(
        repo=repo.resolve(), site=site.resolve(), data=tmp_path / "var", secret_key="k" * 40, keys=keys
    )
    # 13 of its 24 hours have passed: less than half is left, so the task signs it again.
    later = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(hours=13)
    monkeypatch.setattr(builder.trust.timestamp, "utc_now", lambda: later)
    monkeypatch.setattr(runtime.trust, "interval", lambda config: 0.05)
    with serve_app(create_app(config)) as url:
        deadline = time.monotonic() + 10
        while version(site) == 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert version(site) == 2
        time.sleep(0.3)
        assert version(site) == 2  # not due any more: signed once
        assert (
            httpx.get(f"{url}/tuf/timestamp.json").content == (site / "tuf" / "timestamp.json").read_bytes()
        )
        root = (site / "tuf" / "1.root.json").read_bytes()
        entry = fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)
        assert entry == (site / "device" / "index.json").read_bytes()
        for shard in shard_files(site, "pi64"):  # and the shards it names, each a verified target
            assert fetch(url, tmp_path / "device", tmp_path / "dl", shard) == (site / shard).read_bytes()
    assert build(repo, site, keys=keys).written == []  # the manifest knows the re-signed file


def test_the_key_folder_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEPOT_KEYS", raising=False)
    repo, site, data = tmp_path / "repo", tmp_path / "site", tmp_path / "var"
    assert RuntimeConfig.from_folders(repo, site, data).keys is None  # no ./keys
    (tmp_path / "keys").mkdir()
    assert RuntimeConfig.from_folders(repo, site, data).keys == tmp_path / "keys"
    monkeypatch.setenv("DEPOT_KEYS", str(tmp_path / "elsewhere"))
    assert RuntimeConfig.from_folders(repo, site, data).keys == tmp_path / "elsewhere"

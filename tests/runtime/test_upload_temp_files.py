"""Temporary files of uploads live in the data folder, never in repo/, and what killed uploads
left is swept by age when `depot serve` starts and before each upload (kills left
repo/apps/.tmp-* and var/portal/incoming/.tmp-* that survived restarts and landed in backups)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from builder.qt.pack import pack_package
from tests.support.qt import ADMIN, ADMIN_PASSWORD, SECRET, qt_store
from tests.support.serving import serve_store

FIELDS = {"description": "d", "short-description": "s", "category": "Tools", "vendor": "Qt"}


def _leftover(path: Path, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half an upload")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_stale_upload_temp_files_are_swept_and_new_ones_never_touch_repo(tmp_path: Path) -> None:
    data, repo = tmp_path / "var", tmp_path / "repo"
    old = [
        _leftover(data / "incoming" / "qt" / ".tmp-killed-qt", 7200),
        _leftover(data / "portal" / "incoming" / ".tmp-killed-apk", 7200),
    ]
    fresh = _leftover(data / "incoming" / "qt" / ".tmp-another-process", 10)
    with qt_store(tmp_path) as store:
        assert store.repo == repo
        in_repo = _leftover(repo / "apps" / ".tmp-older-depot", 7200)
        assert [p for p in old if p.exists()] == []
        assert fresh.exists()  # may belong to an upload another process is receiving
        package = pack_package("com.example.spooled", name={"en": "Spooled"}, version="1.0")
        with httpx.Client(base_url=store.url, auth=(ADMIN, ADMIN_PASSWORD), timeout=30) as c:
            files = {"package": ("x.appkg", package, "application/octet-stream")}
            assert c.post("/upload", data=FIELDS, files=files).json() == {"status": "ok"}
        assert (repo / "apps" / "com.example.spooled_All_.appkg").read_bytes() == package
        assert in_repo.exists()  # swept at the next start, not under a running server's feet
    names = [p.name for p in (repo / "apps").iterdir() if p.name.startswith(".tmp-") and p != in_repo]
    assert names == []
    with serve_store(tmp_path, repo=repo, env={"DEPOT_SECRET_KEY": SECRET}):
        assert not in_repo.exists()  # the next start sweeps it

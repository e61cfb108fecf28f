"""Big scans read packages in worker processes and store each entry as it arrives; what the
workers do not deliver (one died) is read in-process, so the result is the same either way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import builder.scan
from builder.scan import Scanner
from builder.scan_worker import ScanWorkerError
from builder.settings import load_settings
from tests.support.repos import add_module, write_settings


def store(repo: Path, count: int = 40) -> Path:
    write_settings(repo, ["pi64"])
    for i in range(count):
        add_module(repo, f"m{i:02d}", "1.0", "pi64", f"module {i}\n".encode())
    (repo / "modules" / "broken.1.0.pi64.tar.gz").write_bytes(b"not a tarball")
    return repo


def entries(repo: Path) -> dict[str, Any]:
    scanner = Scanner(repo)
    settings = load_settings(repo)
    stats = builder.scan.walk_repo_stats(repo)
    claimed, _sidecars = scanner.claim(sorted(stats))
    jobs = [(p, r, scanner.key(p, r, settings, stats)) for p, r in sorted(claimed.items())]
    got = dict(scanner.read(jobs, settings, None))
    assert sorted(got) == list(range(len(jobs)))  # every job once
    # as the state stores them: JSON (a worker's entries crossed a pipe as JSON already)
    return {jobs[i][0]: json.loads(json.dumps(entry)) for i, entry in got.items()}


def test_worker_processes_read_what_threads_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = store(tmp_path / "repo")
    here = entries(repo)
    monkeypatch.setattr(builder.scan, "PROCESS_POOL_MIN_FILES", 10)
    monkeypatch.setattr(builder.scan, "_cpus", lambda: 2)
    assert entries(repo) == here
    assert here["modules/broken.1.0.pi64.tar.gz"]["error"]


def test_what_a_failed_worker_did_not_deliver_is_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = store(tmp_path / "repo")
    here = entries(repo)
    real = builder.scan.stream_workers

    def dies_halfway(*args: Any, **kwargs: Any) -> Any:
        for n, item in enumerate(real(*args, **kwargs)):
            if n == 15:
                raise ScanWorkerError("a worker died")
            yield item

    monkeypatch.setattr(builder.scan, "PROCESS_POOL_MIN_FILES", 10)
    monkeypatch.setattr(builder.scan, "_cpus", lambda: 2)
    monkeypatch.setattr(builder.scan, "stream_workers", dies_halfway)
    assert entries(repo) == here

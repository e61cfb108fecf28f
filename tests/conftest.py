"""Fixtures shared by the whole suite. The plain helpers they use live in ``tests/support/``
(``tests.support.repos`` for repos, sites and `depot` processes); a dialect's own fixtures may
sit in the conftest.py of its folder."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.repos import make_big_repo, run_depot, site_tree

# -- scratch space -------------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder on tmpfs when there is one, else ``tmp_path``. For tests that run hundreds
    of builds: what a build leaves behind for a reader, or after a SIGKILL, does not depend on
    fsync (the kernel keeps every completed write and rename), and on tmpfs fsync costs nothing."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="depot-test-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated once per session; tests that change it must work on a copy."""
    return make_big_repo(tmp_path_factory.mktemp("big") / "repo")


@pytest.fixture(scope="session")
def big_clean(big_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A clean build of ``big_repo``: its tree and how long a whole `depot build` process took
    (used only to spread kill points over a build's lifetime, never asserted)."""
    site = tmp_path_factory.mktemp("big-clean") / "site"
    started = time.monotonic()
    done = run_depot("build", "--repo", str(big_repo), "--site", str(site))
    duration = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return {"tree": site_tree(site), "duration": duration, "site": site}

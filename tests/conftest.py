"""Fixtures shared by the whole suite. The plain helpers they use live in ``tests/support/``
(``tests.support.repos`` for repos, sites and `depot` processes); a dialect's own fixtures may
sit in the conftest.py of its folder."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import PostgresCluster, start_cluster
from tests.support.repos import make_big_repo, run_depot, site_tree

# -- the database engine ---------------------------------------------------------------------------
#
# scripts/test runs the suite on SQLite, then the runtime's tests again with
# DEPOT_TEST_DATABASE=postgresql: each of those gets a database of its own on a throwaway
# PostgreSQL server, named by DEPOT_DATABASE_URL, which the runtime (and every `depot` process a
# test starts) reads. A test marked ``sqlite_only`` reads the SQLite file itself and stays on
# SQLite; one marked ``postgresql`` needs the server in both runs.

ON_POSTGRESQL = os.environ.get("DEPOT_TEST_DATABASE", "sqlite") == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not ON_POSTGRESQL:
        return
    runtime = Path(__file__).parent / "runtime"
    kept = [i for i in items if Path(str(i.fspath)).is_relative_to(runtime)]
    if len(kept) != len(items):  # the builder's tests never open the database: run once
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL server (started on first use, stopped at the end)."""
    cluster = start_cluster()
    if isinstance(cluster, str):
        pytest.skip(cluster)
    try:
        yield cluster
    finally:
        cluster.stop()


# Fixtures of a module's lifetime (a served store shared by the module's tests) get the module's
# database, and so do the tests that use them; every other test gets a database of its own.
SHARED_SCOPES = ("module", "class")


@pytest.fixture(scope="module", autouse=True)
def _module_database(request: pytest.FixtureRequest) -> Iterator[None]:
    saved = os.environ.pop("DEPOT_DATABASE_URL", None)
    url = None
    if ON_POSTGRESQL:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = os.environ["DEPOT_DATABASE_URL"] = cluster.create_database("m")
    try:
        yield
    finally:
        os.environ.pop("DEPOT_DATABASE_URL", None)
        if saved is not None:
            os.environ["DEPOT_DATABASE_URL"] = saved
        if url is not None:
            cluster.drop_database(url)


@pytest.fixture(scope="module")
def separate_database(request: pytest.FixtureRequest) -> Iterator[Callable[[], AbstractContextManager[None]]]:
    """For a second store in one module: a database of its own, as it has a data folder of its
    own on SQLite. ``with separate_database():`` around what starts the store and writes to it
    (the store's process keeps the URL; the module's other tests keep theirs)."""
    url = None
    if ON_POSTGRESQL:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database("x")

    @contextmanager
    def using() -> Iterator[None]:
        with pytest.MonkeyPatch.context() as patch:
            if url is not None:
                patch.setenv("DEPOT_DATABASE_URL", url)
            yield

    yield using
    if url is not None:
        cluster.drop_database(url)


def _uses_shared_fixtures(item: pytest.Item) -> bool:
    definitions = getattr(item, "_fixtureinfo").name2fixturedefs  # noqa: B009 - pytest's own record
    return any(
        d.scope in SHARED_SCOPES
        for name, defs in definitions.items()
        if name != "_module_database"
        for d in defs
    )


@pytest.fixture(autouse=True)
def _database_engine(request: pytest.FixtureRequest) -> Iterator[None]:
    # a MonkeyPatch of its own: the test's `monkeypatch` must be undone before the test's other
    # fixtures end, as it would be without this one
    with pytest.MonkeyPatch.context() as patch:
        if not ON_POSTGRESQL or request.node.get_closest_marker("sqlite_only"):
            patch.delenv("DEPOT_DATABASE_URL", raising=False)
            yield
            return
        if _uses_shared_fixtures(request.node):
            yield  # the module's database, which its shared fixtures use too
            return
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database()
        patch.setenv("DEPOT_DATABASE_URL", url)
        try:
            yield
        finally:
            cluster.drop_database(url)


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

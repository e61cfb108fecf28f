"""The runtime's database: what the catalog never shows (accounts, token hashes, counters,
upload sessions, sessions, limits, device reports). SQLite in the data folder by default (WAL
mode, so readers never wait for the one writer), or PostgreSQL when ``DEPOT_DATABASE_URL`` (or
``depot serve --database``) names one, for several runtime nodes (:mod:`runtime.database`
bridges the two). The schema is created or migrated when the database is opened."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from runtime.database import (
    BUILD_LOCK,
    DATABASE_FILE,
    POSTGRESQL,
    Database,
    DatabaseError,
    connect,
    database_url,
    engine_of,
    make_data_folder,
)
from runtime.environment import env_value

log = logging.getLogger("runtime.storage")

__all__ = ["DATABASE_FILE", "Database", "Storage", "make_data_folder", "open_database", "transaction"]


def _core_v1(db: Database) -> None:
    db.table("users").create(
        {
            "id": int,
            "name": str,
            "password_hash": str,
            "staff": int,
            "devices": str,  # JSON list of OTA codenames this user maintains
            "created": str,
        },
        pk="id",
        not_null={"name", "password_hash"},
        defaults={"staff": 0, "devices": "[]"},
    )
    db.table("users").create_index(["name"], unique=True)
    db.table("tokens").create(
        {
            "id": int,
            "user_id": int,
            "purpose": str,  # "ota", "ci", "session", ...
            "name": str,
            "prefix": str,  # the first characters, shown in listings
            "token_hash": str,  # SHA-256 of the raw token; the raw token is never stored
            "scope": str,
            "created": str,
            "expires": str,
            "last_used": str,
            "revoked": int,
        },
        pk="id",
        foreign_keys=[("user_id", "users", "id")],
        defaults={"revoked": 0},
    )
    db.table("tokens").create_index(["token_hash"], unique=True)


Migration = Callable[[Database], None]


# Each part of the runtime owns a namespace with its own append-only list of migrations, so a
# new dialect adds its tables without touching anyone else's history. A dialect module registers
# its list here with register_schema() at import time.
def _core_v2(db: Database) -> None:
    db.table("tokens").create_index(["prefix"])  # tokens are looked up by their shown prefix


def _core_v3(db: Database) -> None:
    db.table("users").add_column("full_name", str, not_null_default="")  # shown as a maintainer's name


def _core_v4(db: Database) -> None:
    db.table("tokens").create_index(["purpose", "expires"])  # sweeping ended sessions


def _core_v5(db: Database) -> None:
    # a disabled account cannot sign in and none of its tokens or sessions work (runtime.accounts)
    db.table("users").add_column("disabled", int, not_null_default=0)


SCHEMAS: dict[str, list[Migration]] = {"core": [_core_v1, _core_v2, _core_v3, _core_v4, _core_v5]}


def register_schema(namespace: str, migrations: list[Migration]) -> None:
    SCHEMAS[namespace] = migrations


def migrate(db: Database) -> dict[str, int]:
    """Bring every namespace to its newest version, one step per transaction (two processes
    or nodes starting at once serialise on the write lock and the second finds nothing to do)."""
    with db.transaction():
        db.execute("CREATE TABLE IF NOT EXISTS schema_versions (namespace TEXT PRIMARY KEY, version INTEGER)")
    versions: dict[str, int] = {}
    for namespace, steps in SCHEMAS.items():
        while True:
            with db.transaction():
                found = db.value("SELECT version FROM schema_versions WHERE namespace = ?", [namespace])
                version = int(found or 0)
                if version < len(steps):
                    steps[version](db)
                    db.execute(
                        "INSERT INTO schema_versions (namespace, version) VALUES (?, ?)"
                        " ON CONFLICT (namespace) DO UPDATE SET version = excluded.version",
                        [namespace, version + 1],
                    )
            if version >= len(steps):
                versions[namespace] = version
                break
    return versions


def configured_url(data: Path, url: str | None = None) -> str:
    """The database a store uses: ``url``, else ``DEPOT_DATABASE_URL``, else ``depot.db`` in
    the data folder."""
    return database_url(data, env_value("DEPOT_DATABASE_URL") if url is None else url)


def open_database(data: Path, url: str | None = None) -> Database:
    """Open (creating and migrating) the store's database (see :func:`configured_url`)."""
    make_data_folder(data)
    db = connect(configured_url(data, url))
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


class Storage:
    """The store's database, one connection per live thread: a connection must not be shared
    across threads while a statement runs, and Starlette runs sync work in a thread pool whose
    threads come and go. A thread's connection is closed as soon as the thread has ended
    (checked whenever a connection is handed out, and by :meth:`close`), so open descriptors
    follow the live threads, not the garbage collector; a PostgreSQL connection the server
    dropped is replaced on the next use."""

    def __init__(self, data: Path, url: str | None = None) -> None:
        self.url = configured_url(data, url)
        open_database(data, self.url).close()
        self._connections: dict[int, tuple[threading.Thread, Database]] = {}
        self._lock = threading.Lock()

    @property
    def db(self) -> Database:
        thread = threading.current_thread()
        with self._lock:
            held = self._connections.get(thread.ident or 0)
            if held is not None and held[0] is thread and not held[1].is_broken():
                return held[1]
            if held is not None and held[0] is thread:
                del self._connections[thread.ident or 0]
                held[1].close()
            self._close_ended()
        db = connect(self.url)
        with self._lock:
            self._connections[thread.ident or 0] = (thread, db)
        return db

    def _close_ended(self) -> None:
        for ident, (thread, db) in list(self._connections.items()):
            if not thread.is_alive():
                del self._connections[ident]
                db.close()

    def open_connections(self) -> int:
        with self._lock:
            self._close_ended()
            return len(self._connections)

    def close(self) -> None:
        """Close every connection (at shutdown)."""
        with self._lock:
            for _thread, db in self._connections.values():
                db.close()
            self._connections.clear()


def transaction(db: Database) -> contextlib.AbstractContextManager[None]:
    """The database's write lock for a read-check-write, across processes and nodes (a report
    counted once, a rollout paused once): see :meth:`Database.transaction`."""
    return db.transaction()


@contextlib.contextmanager
def build_lock(url: str) -> Iterator[None]:
    """On PostgreSQL, the build lock shared by every node: a session advisory lock on a
    connection of its own, held for the whole build and released by the server if the node
    dies; two nodes never publish at once. On SQLite nothing is needed beyond the builder's own
    ``flock`` of the site, which every process on the one machine shares."""
    if engine_of(url) != POSTGRESQL:
        yield
        return
    db = connect(url)
    try:
        # wait as long as the other node's build takes (a cold build of a big store takes
        # minutes), like flock; the 30 s lock_timeout is for the short write transactions
        db.execute("SET lock_timeout = 0")
        db.execute("SELECT pg_advisory_lock(?)", [BUILD_LOCK])
        try:
            yield
        finally:
            try:
                held = db.value("SELECT pg_advisory_unlock(?)", [BUILD_LOCK])
            except DatabaseError:
                held = False
            if not held:
                # the server dropped the lock's connection during the build (a restart, or no
                # keepalive for a minute): another node may have built meanwhile. The build's
                # own flock of the site still held on this host; say so, for the operator
                log.error("the build lock's database connection was lost during the build")
    finally:
        db.close()

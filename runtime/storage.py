"""The runtime's SQLite database: what the catalog never shows (accounts, token hashes,
counters, upload sessions). WAL mode, so readers never wait for the one writer; the schema is
created or migrated when the database is opened."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlite_utils

DATABASE_FILE = "depot.db"
PRIVATE_FOLDER = 0o700  # the data folder
PRIVATE_FILE = 0o600  # depot.db, depot.db-wal, depot.db-shm


def _core_v1(db: sqlite_utils.Database) -> None:
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


Migration = Callable[[sqlite_utils.Database], None]


# Each part of the runtime owns a namespace with its own append-only list of migrations, so a
# new dialect adds its tables without touching anyone else's history. A dialect module registers
# its list here with register_schema() at import time.
def _core_v2(db: sqlite_utils.Database) -> None:
    db.table("tokens").create_index(["prefix"])  # tokens are looked up by their shown prefix


def _core_v3(db: sqlite_utils.Database) -> None:
    db.table("users").add_column("full_name", str, not_null_default="")  # shown as a maintainer's name


def _core_v4(db: sqlite_utils.Database) -> None:
    db.table("tokens").create_index(["purpose", "expires"])  # sweeping ended sessions


def _core_v5(db: sqlite_utils.Database) -> None:
    # a disabled account cannot sign in and none of its tokens or sessions work (runtime.accounts)
    db.table("users").add_column("disabled", int, not_null_default=0)


SCHEMAS: dict[str, list[Migration]] = {"core": [_core_v1, _core_v2, _core_v3, _core_v4, _core_v5]}


def register_schema(namespace: str, migrations: list[Migration]) -> None:
    SCHEMAS[namespace] = migrations


def migrate(db: sqlite_utils.Database) -> dict[str, int]:
    """Bring every namespace to its newest version, one step per transaction (two processes
    starting at once serialise on BEGIN IMMEDIATE and the second finds nothing to do)."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_versions (namespace TEXT PRIMARY KEY, version INTEGER)")
    versions: dict[str, int] = {}
    for namespace, steps in SCHEMAS.items():
        while True:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT version FROM schema_versions WHERE namespace = ?", [namespace]
                ).fetchone()
                version = row[0] if row else 0
                if version >= len(steps):
                    db.execute("COMMIT")
                    versions[namespace] = version
                    break
                steps[version](db)
                db.execute(
                    "INSERT OR REPLACE INTO schema_versions (namespace, version) VALUES (?, ?)",
                    [namespace, version + 1],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    return versions


def make_data_folder(data: Path) -> None:
    """Create the data folder (and any missing parents) private to the runtime's user: it holds
    the database with password and token hashes, the secret key and upload scratch space. A
    folder that exists keeps its mode; its database files are made private on every open."""
    if not data.is_dir():
        data.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            data.mkdir(mode=PRIVATE_FOLDER)
        data.chmod(PRIVATE_FOLDER)  # mkdir's mode passes through the umask; say it exactly


def _make_private(path: Path) -> None:
    """The database, its WAL and its shared-memory index: 0600 whatever the umask. (SQLite
    gives a new -wal and -shm the mode of the database file, so they follow.)"""
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        file = path.with_name(name)
        # a missing file has nothing to protect; another user's is not ours to change
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if file.stat().st_mode & 0o777 != PRIVATE_FILE:
                file.chmod(PRIVATE_FILE)


def connect(path: Path) -> sqlite_utils.Database:
    if not path.exists():  # created private, so it is never readable by others, not even briefly
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    _make_private(path)
    return sqlite_utils.Database(conn)


def open_database(data: Path) -> sqlite_utils.Database:
    """Open (creating and migrating) the database in the data folder."""
    make_data_folder(data)
    db = connect(data / DATABASE_FILE)
    migrate(db)
    return db


class Storage:
    """One connection per live thread: sqlite connections must not be shared across threads
    while a statement runs, and Starlette runs sync work in a thread pool whose threads come and
    go. A thread's connection is closed as soon as the thread has ended (checked whenever a
    connection is handed out, and by :meth:`close`), so open descriptors follow the live
    threads, not the garbage collector."""

    def __init__(self, data: Path) -> None:
        self.path = data / DATABASE_FILE
        open_database(data).close()
        self._connections: dict[int, tuple[threading.Thread, sqlite_utils.Database]] = {}
        self._lock = threading.Lock()

    @property
    def db(self) -> sqlite_utils.Database:
        thread = threading.current_thread()
        with self._lock:
            held = self._connections.get(thread.ident or 0)
            if held is not None and held[0] is thread:
                return held[1]
            self._close_ended()
        db = connect(self.path)
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


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the database's write lock, across processes, so a
    read-check-write (a report counted once, a rollout paused once) cannot interleave."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")

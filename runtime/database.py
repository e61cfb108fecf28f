"""One database interface over two engines: SQLite in the data folder (the embedded default)
and PostgreSQL (``DEPOT_DATABASE_URL=postgresql://…``, for several runtime nodes).

The runtime writes its SQL once, in the dialect both engines agree on (``?`` placeholders,
``INSERT … ON CONFLICT``, ``RETURNING``, ``"quoted"`` names), and this module bridges the rest:

- placeholders become ``%s`` for psycopg (and a literal ``%`` becomes ``%%``);
- in ``CREATE TABLE`` and ``ALTER TABLE``, SQLite's types become PostgreSQL's: ``INTEGER``
  becomes ``BIGINT`` (SQLite's integers are 64-bit), ``INTEGER PRIMARY KEY`` an identity column,
  ``REAL``/``FLOAT`` ``DOUBLE PRECISION`` and ``BLOB`` ``BYTEA``;
- every PostgreSQL table without an integer primary key gets the ``rowid`` identity column that
  SQLite gives every table, so ``ORDER BY rowid`` (insertion order) means the same on both; like
  SQLite's, it is never part of a row read with ``SELECT *`` (:meth:`Database.rows`);
- ``transaction()`` is SQLite's ``BEGIN IMMEDIATE`` (one writer across every process), and on
  PostgreSQL a transaction holding one advisory lock for its duration, which serialises the
  runtime's read-check-write transactions across every node the same way;
- generated ids are unique and increasing on both, but not the same numbers: PostgreSQL never
  hands one out twice and a refused insert uses one up, while SQLite may give the highest id
  again after it was deleted. Nothing in the runtime depends on their values;
- the engines' errors become one family: :class:`IntegrityError`, :class:`DatabaseFullError`
  (answered 507), :class:`DatabaseUnavailableError` (503), :class:`UnstorableTextError` (a NUL,
  which PostgreSQL's text cannot hold: 400) and :class:`DatabaseError`;
- a connection runs one statement at a time, each with its whole result, under its own lock,
  and a PostgreSQL connection the server dropped is opened again (a read is sent again once;
  a write is not, since it may have been applied).

:class:`Table` is the small helper the schemas and simple lookups use (create, add a column,
rows where, insert, update, delete where); everything else is plain SQL through
:meth:`Database.execute`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from builder.errors import DepotError, SettingsError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
DATABASE_FILE = "depot.db"
PRIVATE_FOLDER = 0o700  # the data folder
PRIVATE_FILE = 0o600  # depot.db, depot.db-wal, depot.db-shm

# The advisory lock every write transaction holds on PostgreSQL, and the build lock (held by the
# node that builds, for the whole build). Keys are 64-bit; derived from names so they say what
# they are in pg_locks (objid) and do not collide with another application's small integers.
WRITE_LOCK = zlib.crc32(b"depot:write") | 0x6465_0000_0000  # "de" in the high bytes
BUILD_LOCK = zlib.crc32(b"depot:build") | 0x6465_0000_0000


class DatabaseError(DepotError):
    """The database refused or failed a statement (the message names the engine's reason)."""


class IntegrityError(DatabaseError):
    """A UNIQUE, NOT NULL, CHECK or foreign-key rule refused the write."""


class DatabaseFullError(DatabaseError):
    """The disk under the database is full: nothing was written (the store answers 507)."""


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached or stayed locked too long (the store answers 503)."""


class UnstorableTextError(DatabaseError):
    """A value holds a NUL character, which PostgreSQL's text cannot hold (answered 400)."""


class Cursor:
    """A statement's whole result, fetched while the statement ran under its connection's
    lock (:class:`Database`): SQLite runs a statement step by step as rows are read, so a
    cursor read later could interleave with another thread's statement on the same connection,
    and ``INSERT … RETURNING`` on a full disk would fail in ``fetchone()``, not here. The
    runtime's results are small; psycopg fetches whole results anyway."""

    __slots__ = ("_next", "_rows", "description", "rowcount")

    def __init__(self, rows: list[Any], description: Any, rowcount: int) -> None:
        self._rows, self._next = rows, 0
        self.description, self.rowcount = description, rowcount

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self._rows[self._next :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def make_data_folder(data: Path) -> None:
    """Create the data folder (and any missing parents) private to the runtime's user: it holds
    the SQLite database with password and token hashes, the secret key and upload scratch space.
    A folder that exists keeps its mode; its database files are made private on every open."""
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


# -- where the database is ----------------------------------------------------------------------


def describe(url: str) -> str:
    """The URL without its password, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        if "@" in authority:  # user[:password]@host: the password may itself hold an @
            credentials, _, host = authority.rpartition("@")
            user = credentials.split(":", 1)[0]
            authority = f"{user}:***@{host}" if ":" in credentials else f"{user}@{host}"
        url = f"{scheme}://{authority}{slash}{path}"
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def engine_of(url: str) -> str:
    """``sqlite`` or ``postgresql`` from a database URL; anything else is a settings error."""
    if url.startswith(("postgresql://", "postgres://")):
        return POSTGRESQL
    if url.startswith("sqlite:///"):
        return SQLITE
    raise SettingsError(
        f"database URL {describe(url)!r}: expected postgresql://USER@HOST/NAME or sqlite:///PATH"
    )


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite://")).resolve()


def database_url(data: Path, url: str = "") -> str:
    """The URL a store uses: ``url`` when given, else SQLite's file in the data folder."""
    if url:
        engine_of(url)
        return url
    return f"sqlite://{(data / DATABASE_FILE).resolve()}"


def connect(url: str) -> Database:
    """A new connection in autocommit mode (statements outside :meth:`Database.transaction`
    commit on their own, as with SQLite's ``isolation_level=None``)."""
    if engine_of(url) == POSTGRESQL:
        return _connect_postgresql(url)
    return _connect_sqlite(sqlite_path(url))


def _connect_sqlite(path: Path) -> Database:
    if not path.exists():  # created private, so it is never readable by others, not even briefly
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
    except sqlite3.Error as exc:
        raise _translated(exc) from exc
    _make_private(path)
    return Database(SQLITE, conn, f"sqlite://{path}")


# Every PostgreSQL connection: a lock waited for longer than lock_timeout, or a transaction left
# idle (a node stuck mid-request), ends instead of stopping every writer on every node; TCP
# keepalives notice a node or database host that vanished in about a minute, not two hours.
CONNECT_OPTIONS = {
    "connect_timeout": 10,
    "application_name": "depot",
    "options": "-c lock_timeout=30s -c idle_in_transaction_session_timeout=60s",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def _without_secrets(exc: Exception, url: str) -> str:
    from urllib.parse import unquote

    text = str(exc).strip() or type(exc).__name__
    credentials = url.partition("://")[2].partition("/")[0].rpartition("@")[0]
    password = credentials.split(":", 1)[1] if ":" in credentials else ""
    for secret in {password, unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return text


def _connect_postgresql(url: str) -> Database:
    import psycopg

    try:
        conn = psycopg.connect(url, autocommit=True, **CONNECT_OPTIONS)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        # libpq's message may quote the URL (a % or @ it could not parse): never the password
        reason = _without_secrets(exc, url)
        raise _translated(exc).__class__(f"cannot connect to {describe(url)}: {reason}") from None
    except Exception as exc:  # a URL libpq cannot even parse
        raise DatabaseError(f"cannot connect to {describe(url)}: {type(exc).__name__}") from None
    conn.adapters.register_loader("numeric", _numeric_loader_class())  # sum() of BIGINT is NUMERIC
    return Database(POSTGRESQL, conn, url)


@lru_cache(maxsize=1)
def _numeric_loader_class() -> type:
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        """NUMERIC as int when whole, else float: the runtime's columns are BIGINT and DOUBLE,
        and only an aggregate (sum) turns them into NUMERIC, which JSON cannot carry."""

        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            return int(text) if text.lstrip("-").isdigit() else float(text)

    return NumericLoader


# -- errors ------------------------------------------------------------------------------------


def _translated(exc: Exception) -> DatabaseError:
    """The engine's exception as one of ours (the original stays as ``__cause__``)."""
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(message)
    if isinstance(exc, sqlite3.Error):
        if "database or disk is full" in message or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL":
            return DatabaseFullError(message)
        if "database is locked" in message or "unable to open" in message:
            return DatabaseUnavailableError(message)
        return DatabaseError(message)
    import psycopg

    if isinstance(exc, psycopg.errors.IntegrityError):
        return IntegrityError(message)
    if isinstance(exc, psycopg.errors.DiskFull):
        return DatabaseFullError(message)
    state = getattr(exc, "sqlstate", None) or ""
    # the server is gone, going, refusing connections or out of them, or a lock did not come:
    # the store's condition, for a while (503). Anything else (a query too big, bad input) is
    # a bug or a refusal that waiting will not cure.
    if isinstance(exc, psycopg.InterfaceError) or (
        isinstance(exc, psycopg.OperationalError) and (not state or state[:2] == "08" or state in UNAVAILABLE)
    ):
        return DatabaseUnavailableError(message)
    return DatabaseError(message)


UNAVAILABLE = {"57P01", "57P02", "57P03", "53300", "55P03", "57014"}  # shutdown, crash, starting,
# too many connections, lock_timeout, statement cancelled (statement_timeout)


def _engine_errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


# -- the SQL both engines read ------------------------------------------------------------------

_DDL = re.compile(r"^\s*(CREATE\s+TABLE|ALTER\s+TABLE)\b", re.IGNORECASE)
_TYPES = (
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b", re.I),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\b(REAL|FLOAT)\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
)
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?[^(]+\(", re.IGNORECASE)


@lru_cache(maxsize=2048)
def postgresql_sql(sql: str) -> str:
    """``sql`` as psycopg reads it: placeholders, ``%`` and, for DDL, the types (see module)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":  # a string or a quoted name: copied, % doubled
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # '' inside a string
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif sql.startswith("--", i):  # a comment, to the end of its line
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif ch == "?":
            out.append("%s")
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        else:
            out.append(ch)
            i += 1
    text = "".join(out)
    if _DDL.match(text):
        has_integer_key = bool(_TYPES[0][0].search(text))
        for pattern, replacement in _TYPES:
            text = pattern.sub(replacement, text)
        created = _CREATE_TABLE.match(text)
        if created and not has_integer_key:
            at = created.end()
            text = f"{text[:at]}rowid BIGINT GENERATED BY DEFAULT AS IDENTITY, {text[at:]}"
    return text


def _pg_params(params: Sequence[Any]) -> Sequence[Any]:
    # a bool compared with a BIGINT column is an error on PostgreSQL; SQLite stores it as 0/1
    out = [int(p) if isinstance(p, bool) else p for p in params]
    if any(isinstance(p, str) and "\x00" in p for p in out):
        raise UnstorableTextError("a value holds a NUL character")
    return out


def quote(name: str) -> str:
    """A quoted identifier (both engines read double quotes); ``offset`` and ``window`` are
    reserved words on PostgreSQL."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a plain SQL name: {name!r}")
    return f'"{name}"'


HIDDEN = "rowid"  # PostgreSQL's stand-in for SQLite's implicit rowid: never part of a row


class Database:
    """One connection to either engine. :class:`runtime.storage.Storage` hands out one per
    thread; a connection that reaches another thread anyway stays correct, since its
    statements and transactions run one at a time under its lock."""

    def __init__(self, engine: str, conn: Any, url: str) -> None:
        self.engine = engine
        self.conn = conn  # sqlite3.Connection or psycopg.Connection, for the engine's own tools
        self.url = url
        self._errors = _engine_errors()
        # One statement at a time, each with its whole result, and a transaction's statements
        # together: a connection handed to a worker thread by mistake cannot interleave.
        self._lock = threading.RLock()
        self._in_transaction = False

    @property
    def is_postgresql(self) -> bool:
        return self.engine == POSTGRESQL

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        with self._lock:
            try:
                return self._run(sql, params)
            except self._errors as exc:
                error = _translated(exc)
                if not self._may_retry(sql, error):
                    raise error from exc
            # PostgreSQL dropped the connection (it restarted, a failover, an idle cut): a read
            # outside a transaction is safe to send again on a new one; a write is not (it may
            # have been applied), and its caller gets the 503
            self._reconnect()
            try:
                return self._run(sql, params)
            except self._errors as exc:
                raise _translated(exc) from exc

    def _run(self, sql: str, params: Sequence[Any]) -> Cursor:
        if self.engine == POSTGRESQL:
            raw = self.conn.execute(postgresql_sql(sql), _pg_params(params))
        else:
            raw = self.conn.execute(sql, params)
        rows = raw.fetchall() if raw.description is not None else []
        return Cursor(rows, raw.description, raw.rowcount)

    def _may_retry(self, sql: str, error: DatabaseError) -> bool:
        return (
            isinstance(error, DatabaseUnavailableError)
            and self.is_broken()
            and not self._in_transaction
            and sql.lstrip()[:6].upper() == "SELECT"
        )

    def _reconnect(self) -> None:
        self.close()
        self.conn = _connect_postgresql(self.url).conn

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> None:
        with self._lock:
            self._executemany(sql, seq)

    def _executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> None:
        try:
            if self.engine == POSTGRESQL:
                with self.conn.cursor() as cursor:
                    cursor.executemany(postgresql_sql(sql), [_pg_params(p) for p in seq])
            else:
                self.conn.executemany(sql, seq)
        except self._errors as exc:
            raise _translated(exc) from exc

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Every row as a dict (PostgreSQL's stand-in rowid left out, as SQLite leaves it)."""
        cursor = self.execute(sql, params)
        if cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        if self.engine == POSTGRESQL and HIDDEN in names:
            for row in found:
                row.pop(HIDDEN, None)
        return found

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One writer at a time, across every process and node sharing the database, so a
        read-check-write (a report counted once, a rollout paused once) cannot interleave."""
        with self._lock:  # the connection is this thread's until the transaction ends
            self._in_transaction = True
            try:
                with self._transaction():
                    yield
            finally:
                self._in_transaction = False

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self.engine == POSTGRESQL:
            try:
                with self.conn.transaction():
                    self.execute("SELECT pg_advisory_xact_lock(?)", [WRITE_LOCK])
                    yield
            except self._errors as exc:
                raise _translated(exc) from exc
            return
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def table(self, name: str) -> Table:
        return Table(self, name)

    def table_names(self) -> list[str]:
        if self.engine == POSTGRESQL:
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            sql += " ORDER BY name"
        return [r[0] for r in self.execute(sql).fetchall()]

    def is_broken(self) -> bool:
        """A PostgreSQL connection the server dropped (a restart, a failover): open a new one."""
        return self.engine == POSTGRESQL and bool(self.conn.closed or self.conn.broken)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


PYTHON_TYPES = {int: "INTEGER", str: "TEXT", float: "REAL", bytes: "BLOB"}


class Table:
    """The table helper the schemas and simple lookups use."""

    def __init__(self, db: Database, name: str) -> None:
        self.db, self.name = db, name
        self._q = quote(name)

    def exists(self) -> bool:
        return self.name in self.db.table_names()

    @property
    def columns(self) -> list[str]:
        if self.db.is_postgresql:
            rows = self.db.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
                [self.name],
            ).fetchall()
            return [r[0] for r in rows if r[0] != HIDDEN]
        return [r[1] for r in self.db.execute(f"PRAGMA table_info({self._q})").fetchall()]

    def create(
        self,
        columns: Mapping[str, type],
        pk: str,
        not_null: Iterable[str] = (),
        defaults: Mapping[str, Any] | None = None,
        foreign_keys: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        not_null, defaults = set(not_null), dict(defaults or {})
        parts = []
        for column, kind in columns.items():
            text = f"{quote(column)} {PYTHON_TYPES[kind]}"
            if column == pk:
                text += " PRIMARY KEY"
            if column in not_null:
                text += " NOT NULL"
            if column in defaults:
                text += f" DEFAULT {_literal(defaults[column])}"
            parts.append(text)
        for column, other, other_column in foreign_keys:
            parts.append(f"FOREIGN KEY ({quote(column)}) REFERENCES {quote(other)} ({quote(other_column)})")
        self.db.execute(f"CREATE TABLE {self._q} ({', '.join(parts)})")

    def create_index(self, columns: Sequence[str], unique: bool = False) -> None:
        name = quote(f"idx_{self.name}_{'_'.join(columns)}")
        listed = ", ".join(quote(c) for c in columns)
        self.db.execute(f"CREATE {'UNIQUE ' if unique else ''}INDEX {name} ON {self._q} ({listed})")

    def add_column(self, column: str, kind: type, not_null_default: Any = None) -> None:
        text = f"ALTER TABLE {self._q} ADD COLUMN {quote(column)} {PYTHON_TYPES[kind]}"
        if not_null_default is not None:
            text += f" NOT NULL DEFAULT {_literal(not_null_default)}"
        self.db.execute(text)

    def rows_where(
        self,
        where: str | None = None,
        args: Sequence[Any] = (),
        order_by: str | None = None,
        limit: int | None = None,
        select: str = "*",
    ) -> list[dict[str, Any]]:
        sql = f"SELECT {select} FROM {self._q}"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.db.rows(sql, args)

    def insert(self, row: Mapping[str, Any], returning: str | None = None) -> Any:
        """Insert one row; returns the value of its column ``returning`` (a generated id)."""
        names = ", ".join(quote(c) for c in row)
        marks = ", ".join("?" for _ in row)
        sql = f"INSERT INTO {self._q} ({names}) VALUES ({marks})"
        if returning is None:
            self.db.execute(sql, list(row.values()))
            return None
        return self.db.execute(f"{sql} RETURNING {quote(returning)}", list(row.values())).fetchone()[0]

    def insert_all(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            names = ", ".join(quote(c) for c in row)
            marks = ", ".join("?" for _ in row)
            self.db.execute(f"INSERT INTO {self._q} ({names}) VALUES ({marks})", list(row.values()))

    def update(self, pk_value: Any, changes: Mapping[str, Any], pk: str = "id") -> None:
        if not changes:
            return
        sets = ", ".join(f"{quote(c)} = ?" for c in changes)
        self.db.execute(f"UPDATE {self._q} SET {sets} WHERE {quote(pk)} = ?", [*changes.values(), pk_value])

    def delete_where(self, where: str, args: Sequence[Any] = ()) -> int:
        return self.db.execute(f"DELETE FROM {self._q} WHERE {where}", args).rowcount

    def count(self) -> int:
        return int(self.db.value(f"SELECT count(*) FROM {self._q}"))


def _literal(value: Any) -> str:
    if isinstance(value, bool | int | float):
        return str(int(value) if isinstance(value, bool) else value)
    return "'" + str(value).replace("'", "''") + "'"

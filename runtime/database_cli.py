"""``depot db ...``: the store's database as a whole (docs/operations.md, "Moving the database").

- ``depot db migrate`` brings every namespace's schema to this release's newest version (what
  ``depot serve`` does when it opens the database), for deployments that migrate once before
  rolling the nodes;
- ``depot db copy --from URL --to URL`` copies a whole store between SQLite and PostgreSQL (either
  way, or PostgreSQL to PostgreSQL) into an empty target, checking the row counts at the end.

Kept out of runtime/cli.py like the dialects' commands; runtime/cli.py calls :func:`register`
when ``depot db`` is asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import click

from builder.cli import Store, store_options
from runtime.database import (
    HIDDEN,
    POSTGRESQL,
    SQLITE,
    Database,
    DatabaseError,
    connect,
    describe,
    engine_of,
    make_data_folder,
    postgresql_sql,
    quote,
    sqlite_path,
)

VERSIONS = "schema_versions"
BATCH = 1000  # rows per executemany

# Every module that registers a schema with runtime.storage.register_schema. The dialects import
# theirs anyway (runtime.dialects.load_dialects); the rest are named so that a schema is never
# missed because nothing imported its module yet.
SCHEMA_MODULES = (
    "runtime.downloads",
    "runtime.ratelimit",
    "runtime.qt.session",
    "runtime.shipper.common",
    "runtime.portal.store",
    "runtime.device.store",
)


class DatabaseCopyError(DatabaseError):
    """``depot db copy`` refused (the target is not empty, the schemas differ) or found the copy
    incomplete; the message says which table and what to do."""


def load_schemas() -> None:
    """Register every namespace's migrations (runtime.storage.SCHEMAS)."""
    from runtime.dialects import load_dialects

    load_dialects()
    for name in SCHEMA_MODULES:
        importlib.import_module(name)


def stored_versions(db: Database) -> dict[str, int]:
    """What ``schema_versions`` says (empty for a database never migrated)."""
    if VERSIONS not in db.table_names():
        return {}
    return {r["namespace"]: int(r["version"]) for r in db.rows(f"SELECT namespace, version FROM {VERSIONS}")}


def _versions_text(versions: dict[str, int]) -> str:
    return ", ".join(f"{n} {v}" for n, v in sorted(versions.items())) or "none"


# -- the schema as each engine describes it -----------------------------------------------------


def foreign_keys(db: Database) -> set[tuple[str, str]]:
    """(child, parent) for every foreign key between the database's tables."""
    if db.engine == POSTGRESQL:
        found = db.execute(
            "SELECT c.relname, p.relname FROM pg_constraint k"
            " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE k.contype = 'f' AND n.nspname = current_schema()"
        ).fetchall()
        return {(str(child), str(parent)) for child, parent in found}
    pairs = set()
    for table in db.table_names():
        for row in db.execute(f"PRAGMA foreign_key_list({quote(table)})").fetchall():
            pairs.add((table, str(row[2])))
    return pairs


def parents_first(tables: Sequence[str], keys: set[tuple[str, str]]) -> list[str]:
    """``tables`` ordered so every table comes after the tables its foreign keys name (by name
    among equals, so the order is the same every time). A cycle is refused: neither engine
    would take its rows in any order without deferring the checks."""
    wanted = set(tables)
    needs = {t: {p for c, p in keys if c == t and p in wanted and p != t} for t in tables}
    ordered: list[str] = []
    while needs:
        ready = sorted(t for t, parents in needs.items() if not parents)
        if not ready:
            raise DatabaseCopyError(
                f"the foreign keys between tables {', '.join(sorted(needs))} form a cycle: no copy order"
            )
        for table in ready:
            ordered.append(table)
            del needs[table]
        for parents in needs.values():
            parents.difference_update(ready)
    return ordered


def primary_key(db: Database, table: str) -> list[str]:
    if db.engine == POSTGRESQL:
        found = db.execute(
            "SELECT k.column_name FROM information_schema.table_constraints c"
            " JOIN information_schema.key_column_usage k ON k.constraint_schema = c.constraint_schema"
            " AND k.constraint_name = c.constraint_name AND k.table_name = c.table_name"
            " WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema()"
            " AND c.table_name = ? ORDER BY k.ordinal_position",
            [table],
        ).fetchall()
        return [str(r[0]) for r in found]
    info = db.execute(f"PRAGMA table_info({quote(table)})").fetchall()
    return [str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]


def insertion_order(db: Database, table: str) -> str:
    """The ORDER BY that reads ``table`` in insertion order: SQLite's rowid (PostgreSQL's
    stand-in for it), else the primary key."""
    if db.engine == SQLITE:
        sql = db.value("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]) or ""
        if not re.search(r"\bWITHOUT\s+ROWID\s*;?\s*$", sql, re.IGNORECASE):
            return " ORDER BY rowid"
    elif db.value(
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ? AND column_name = ?",
        [table, HIDDEN],
    ):
        return f" ORDER BY {quote(HIDDEN)}"
    key = primary_key(db, table)
    return f" ORDER BY {', '.join(quote(c) for c in key)}" if key else ""


def identity_columns(db: Database, table: str) -> list[str]:
    """A PostgreSQL table's columns that take their default from a sequence (identity or serial)."""
    found = db.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?"
        " AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')"
        " ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [str(r[0]) for r in found]


def reset_sequences(db: Database, table: str) -> None:
    """Every identity sequence of ``table`` next gives its column's max + 1, so the next insert
    does not collide with a copied id."""
    for column in identity_columns(db, table):
        db.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), coalesce(max({quote(column)}), 0) + 1, false)"
            f" FROM {quote(table)}",
            [quote(table), column],
        )


# -- reading the source ---------------------------------------------------------------------------


@contextlib.contextmanager
def snapshot(db: Database) -> Iterator[None]:
    """One read transaction: every table, and its count, as of one moment (a store still running
    on the source keeps writing, but the copy is of one consistent state)."""
    if db.engine == POSTGRESQL:
        try:
            with db.conn.transaction():
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield
        except _engine_errors() as exc:  # the server went away while the snapshot was open
            raise DatabaseError(str(exc).strip() or type(exc).__name__) from exc
        return
    db.execute("BEGIN")  # deferred: a read snapshot in WAL mode, without the write lock
    try:
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.conn.execute("COMMIT")


def _engine_errors() -> tuple[type[Exception], ...]:
    import psycopg

    return (sqlite3.Error, psycopg.Error)


def batches(
    db: Database, sql: str, args: Sequence[Any] = (), size: int = BATCH
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``sql``, ``size`` at a time, without holding a whole table in memory (a
    server-side cursor on PostgreSQL, inside :func:`snapshot`)."""
    try:
        if db.engine == POSTGRESQL:
            with db.conn.cursor(name="depot_db_copy") as cursor:
                cursor.execute(postgresql_sql(sql), list(args))
                while rows := cursor.fetchmany(size):
                    yield [tuple(r) for r in rows]
            return
        cursor = db.conn.execute(sql, list(args))
        while rows := cursor.fetchmany(size):
            yield [tuple(r) for r in rows]
    except _engine_errors() as exc:
        raise DatabaseError(str(exc).strip() or type(exc).__name__) from exc


def insert_batch(db: Database, sql: str, rows: list[tuple[Any, ...]]) -> None:
    db.executemany(sql, rows)


# -- the copy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Copied:
    table: str
    source: int
    target: int


def _same_database(source: str, target: str) -> bool:
    if engine_of(source) == engine_of(target) == SQLITE:
        return sqlite_path(source) == sqlite_path(target)
    return source == target


def _refuse_unless_ready(source: Database, target: Database, tables: list[str]) -> dict[str, int]:
    versions = stored_versions(source)
    target_versions = stored_versions(target)
    if versions != target_versions:
        differ = sorted(set(versions) | set(target_versions))
        shown = ", ".join(
            f"{n} {versions.get(n, '-')} vs {target_versions.get(n, '-')}"
            for n in differ
            if versions.get(n) != target_versions.get(n)
        )
        raise DatabaseCopyError(
            f"the source and the target are at different schema versions after migrating ({shown});"
            " copy with the depot release that wrote the newer one"
        )
    target_tables = set(target.table_names())
    missing = [t for t in tables if t not in target_tables]
    if missing:
        raise DatabaseCopyError(f"the target has no table {', '.join(missing)} (the source has)")
    filled = [t for t in sorted(target_tables - {VERSIONS}) if target.table(t).count()]
    if filled:
        raise DatabaseCopyError(
            f"the target {describe(target.url)} is not empty: table {', '.join(filled)} has rows"
            " (copy into a new, empty database)"
        )
    return versions


def copy_database(source_url: str, target_url: str, say: Callable[[str], None] = click.echo) -> list[Copied]:
    """Copy every table of the store at ``source_url`` into the empty store at ``target_url``
    (both migrated first and at the same schema versions), in one target transaction; the row
    counts of each table on both sides. Raises :class:`DatabaseCopyError` when it refuses or
    when a count differs (the target then keeps nothing)."""
    from runtime.storage import migrate

    for url in (source_url, target_url):
        engine_of(url)  # a bad URL is a settings error, before anything is opened
    if _same_database(source_url, target_url):
        raise DatabaseCopyError(f"--from and --to name the same database {describe(source_url)}")
    if engine_of(source_url) == SQLITE and not sqlite_path(source_url).is_file():
        raise DatabaseCopyError(f"no SQLite database at {sqlite_path(source_url)}")
    load_schemas()
    with contextlib.ExitStack() as stack:
        source = connect(source_url)
        stack.callback(source.close)
        target = connect(target_url)
        stack.callback(target.close)
        migrate(source)  # the same code that will serve it: it would migrate on the first start
        migrate(target)
        tables = [t for t in source.table_names() if t != VERSIONS]
        versions = _refuse_unless_ready(source, target, tables)
        order = parents_first(tables, foreign_keys(source) | foreign_keys(target))
        say(f"copying {describe(source.url)} -> {describe(target.url)} (schema: {_versions_text(versions)})")
        copied: list[Copied] = []
        with target.transaction(), snapshot(source):
            for table in order:
                copied.append(_copy_table(source, target, table, say))
            wrong = [c for c in copied if c.source != c.target]
            _show(copied, say)
            if wrong:
                raise DatabaseCopyError(
                    "the row counts differ for table "
                    + ", ".join(f"{c.table} ({c.source} in the source, {c.target} copied)" for c in wrong)
                    + "; nothing was written to the target"
                )
    say(f"copied {sum(c.target for c in copied)} rows in {len(copied)} tables")
    return copied


# Throwaway rows a copy leaves behind: rate-limit windows that are over, and keys from before
# they were stored hashed (runtime.ratelimit.stored_key; those could hold anything a client
# sent, a NUL included, which PostgreSQL cannot store). Losing them loses no data: a limit's
# window is at most a day.
TRANSIENT = {"rate_limits": "expires >= ? AND length(key) = 64"}


def _copy_table(source: Database, target: Database, table: str, say: Callable[[str], None]) -> Copied:
    theirs = source.table(table).columns
    ours = target.table(table).columns
    missing = [c for c in theirs if c not in ours]
    if missing:  # the same schema versions were checked: this is a hand-made change
        raise DatabaseCopyError(f"the target's table {table} lacks the columns {', '.join(missing)}")
    columns = theirs
    names = ", ".join(quote(c) for c in columns)
    where, args = "", []
    if table in TRANSIENT:
        where, args = f" WHERE {TRANSIENT[table]}", [time.time()]
    read = f"SELECT {names} FROM {quote(table)}{where}{insertion_order(source, table)}"
    write = f"INSERT INTO {quote(table)} ({names}) VALUES ({', '.join('?' for _ in columns)})"
    try:
        for rows in batches(source, read, args):
            insert_batch(target, write, rows)
        if target.engine == POSTGRESQL:
            reset_sequences(target, table)
    except DatabaseError as exc:
        raise type(exc)(f"copying table {table}: {exc}") from exc
    counted = source.value(f"SELECT count(*) FROM {quote(table)}{where}", args) if where else None
    total = source.table(table).count() if counted is None else int(counted)
    return Copied(table, total, target.table(table).count())


def _show(copied: list[Copied], say: Callable[[str], None]) -> None:
    width = max([len("table"), *(len(c.table) for c in copied)])
    say(f"{'table':<{width}}  {'source':>8}  {'target':>8}")
    for c in copied:
        differs = "" if c.source == c.target else "  DIFFERS"
        say(f"{c.table:<{width}}  {c.source:>8}  {c.target:>8}{differs}")


# -- the commands ---------------------------------------------------------------------------------


def register(main: click.Group) -> None:
    @main.group("db")
    def db_group() -> None:
        """The store's database: migrate it, or copy it between SQLite and PostgreSQL."""

    @db_group.command("migrate")
    @store_options
    @click.option(
        "--database",
        default=None,
        metavar="URL",
        help="postgresql://USER@HOST/NAME or sqlite:///PATH; default: DEPOT_DATABASE_URL,"
        " else depot.db in the data folder.",
    )
    def migrate_command(store: Store, database: str | None) -> None:
        """Bring the database's schema to this release (every namespace), as `depot serve` does
        on start: run it once before rolling the nodes of a new release. Running it again
        changes nothing."""
        from runtime.storage import configured_url, migrate

        url = configured_url(store.data, database)
        load_schemas()
        if engine_of(url) == SQLITE:
            make_data_folder(sqlite_path(url).parent)  # the data folder, unless the URL says elsewhere
        db = connect(url)
        try:
            before = stored_versions(db)
            versions = migrate(db)
            stored = stored_versions(db)
        finally:
            db.close()
        click.echo(f"database {describe(url)}")
        changed = 0
        for namespace in [*versions, *sorted(set(stored) - set(versions))]:
            version = stored[namespace]
            note = ""
            if namespace not in versions:
                note = "  (not a schema of this release)"
            elif before.get(namespace) != version:
                changed += 1
                note = f"  (was {before[namespace]})" if namespace in before else "  (new)"
            click.echo(f"{namespace}\t{version}{note}")
        click.echo(f"migrated {changed} namespaces" if changed else "up to date")

    @db_group.command("copy")
    @click.option("--from", "source", required=True, metavar="URL", help="The store's database now.")
    @click.option("--to", "target", required=True, metavar="URL", help="An empty database to copy it into.")
    def copy_command(source: str, target: str) -> None:
        """Copy a whole store's database into an empty one, e.g. from SQLite to PostgreSQL:
        --from sqlite:///srv/depot/var/depot.db --to postgresql://depot@db/depot. Both are
        migrated first and must be at the same schema versions; the target must have no rows.
        Stop the store (or at least its writers) first: what it writes during the copy stays
        behind in the source."""
        copy_database(source, target)

"""runtime.database against both real engines: the same SQL, written once, gives the same
answers on SQLite and on PostgreSQL; the write lock serialises across connections on both;
each engine's errors arrive as the one family."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import database
from runtime.database import (
    Database,
    DatabaseUnavailableError,
    IntegrityError,
    connect,
    postgresql_sql,
)
from runtime.database_cli import load_schemas
from runtime.storage import SCHEMAS, build_lock, migrate, open_database
from tests.support.postgres import PostgresCluster
from tests.support.serving import free_port

pytestmark = pytest.mark.postgresql


@pytest.fixture
def engines(tmp_path: Path, postgres: PostgresCluster) -> Iterator[dict[str, Database]]:
    url = postgres.create_database("e")
    both = {"sqlite": connect(f"sqlite://{tmp_path / 'one.db'}"), "postgresql": connect(url)}
    try:
        yield both
    finally:
        for db in both.values():
            db.close()
        postgres.drop_database(url)


SCHEMA = """CREATE TABLE things (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,          -- a comment with a quote ' and a mark ?
    "offset" INTEGER NOT NULL DEFAULT 0,
    share REAL,
    note TEXT)"""
KEYED = "CREATE TABLE labels (label TEXT PRIMARY KEY, thing_id INTEGER REFERENCES things(id))"


def test_placeholders_become_psycopgs_outside_strings_and_names() -> None:
    sql = "SELECT '?', \"a?b\", x FROM t WHERE a = ? AND b LIKE 'x%' -- why? it's\nAND c = ?"
    assert postgresql_sql(sql) == "SELECT '?', \"a?b\", x FROM t WHERE a = %s AND b LIKE 'x%%' \nAND c = %s"


def test_the_same_operations_give_the_same_rows_on_both_engines(engines: dict[str, Database]) -> None:
    """Seeded random operations through Table and plain SQL, on both engines side by side."""
    rng = random.Random(16)
    for db in engines.values():
        db.execute(SCHEMA)
        db.execute(KEYED)
    names = [f"n{i}" for i in range(40)]
    for step in range(400):
        name = rng.choice(names)
        action = rng.choice(["insert", "upsert", "update", "delete", "label"])
        outcomes = set()
        for db in engines.values():
            try:
                if action == "insert":
                    db.table("things").insert({"name": name, "share": rng.random(), "note": None})
                elif action == "upsert":
                    db.execute(
                        'INSERT INTO things (name, "offset") VALUES (?, ?) ON CONFLICT (name)'
                        ' DO UPDATE SET "offset" = things."offset" + excluded."offset"',
                        [name, step],
                    )
                elif action == "update":
                    db.execute("UPDATE things SET note = ? WHERE name = ?", [f"it's {step}%", name])
                elif action == "delete":
                    db.execute(
                        "DELETE FROM labels WHERE thing_id IN (SELECT id FROM things WHERE name = ?)", [name]
                    )
                    db.table("things").delete_where("name = ?", [name])
                else:
                    db.execute(
                        "INSERT INTO labels (label, thing_id) SELECT ?, id FROM things WHERE name = ?"
                        " ON CONFLICT DO NOTHING",
                        [f"l{step % 7}", name],
                    )
                outcomes.add("ok")
            except IntegrityError:
                outcomes.add("refused")
        assert len(outcomes) == 1, (step, action, outcomes)
    # generated ids are unique and growing on both, not the same numbers (runtime.database)
    read = 'SELECT name, "offset", note FROM things ORDER BY name'
    assert engines["sqlite"].rows(read) == engines["postgresql"].rows(read)
    labels = "SELECT l.label, t.name FROM labels l JOIN things t ON t.id = l.thing_id ORDER BY l.rowid"
    assert engines["sqlite"].rows(labels) == engines["postgresql"].rows(labels)
    total = 'SELECT sum("offset"), count(*) FROM things'
    assert engines["sqlite"].execute(total).fetchone() == tuple(
        engines["postgresql"].execute(total).fetchone()
    )


def test_generated_ids_and_bools_agree(engines: dict[str, Database]) -> None:
    for db in engines.values():
        db.execute(SCHEMA)
        first = db.table("things").insert({"name": "a"}, returning="id")
        second = db.table("things").insert({"name": "b"}, returning="id")
        assert (first, second) == (1, 2)
        assert db.value('SELECT count(*) FROM things WHERE "offset" = ?', [False]) == 2
        assert db.table("things").columns == ["id", "name", "offset", "share", "note"]


def test_integrity_errors_are_one_kind(engines: dict[str, Database]) -> None:
    for db in engines.values():
        db.execute(SCHEMA)
        db.table("things").insert({"name": "a"})
        with pytest.raises(IntegrityError):
            db.table("things").insert({"name": "a"})
        with pytest.raises(IntegrityError):
            db.execute("INSERT INTO things (name) VALUES (NULL)")


def test_the_write_lock_serialises_read_check_write_across_connections(
    engines: dict[str, Database], tmp_path: Path
) -> None:
    """Two connections each read a counter, wait, and write it plus one: without one writer at
    a time, one increment is lost."""
    for engine, db in engines.items():
        db.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        db.execute("INSERT INTO counter (n) VALUES (0)")
        url = db.url
        errors: list[BaseException] = []

        def bump(url: str = url, errors: list[BaseException] = errors) -> None:
            mine = connect(url)
            try:
                for _ in range(5):
                    with mine.transaction():
                        n = mine.value("SELECT n FROM counter")
                        time.sleep(0.01)
                        mine.execute("UPDATE counter SET n = ?", [n + 1])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                mine.close()

        threads = [threading.Thread(target=bump) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], engine
        assert db.value("SELECT n FROM counter") == 15, engine


def test_a_failed_transaction_leaves_nothing(engines: dict[str, Database]) -> None:
    for db in engines.values():
        db.execute(SCHEMA)
        with pytest.raises(IntegrityError), db.transaction():
            db.table("things").insert({"name": "kept?"})
            db.table("things").insert({"name": "kept?"})
        assert db.value("SELECT count(*) FROM things") == 0
        with db.transaction():  # the connection is usable again
            db.table("things").insert({"name": "yes"})
        assert db.value("SELECT count(*) FROM things") == 1


def test_every_schema_migrates_on_postgresql_and_twice_is_nothing(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    load_schemas()  # every dialect's namespace, and the runtime's own
    assert {"core", "ratelimit", "downloads", "qt", "shipper", "portal", "device"} <= set(SCHEMAS)
    url = postgres.create_database("s")
    try:
        db = open_database(tmp_path, url)
        versions = dict(db.execute("SELECT namespace, version FROM schema_versions").fetchall())
        assert versions == {name: len(steps) for name, steps in SCHEMAS.items()}
        assert migrate(db) == versions
        db.close()
    finally:
        postgres.drop_database(url)


def test_an_unreachable_server_is_unavailable_not_a_crash() -> None:
    with pytest.raises(DatabaseUnavailableError):
        connect(f"postgresql://depot@127.0.0.1:{free_port()}/nothing?connect_timeout=2")


def test_the_build_lock_waits_longer_than_the_write_lock_timeout(
    postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node waits for another node's build however long it takes, like flock: the lock
    timeout of the connections (here 1 s instead of 30 s) is for the short write transactions."""
    options = dict(database.CONNECT_OPTIONS, options="-c lock_timeout=1s")
    monkeypatch.setattr(database, "CONNECT_OPTIONS", options)
    url = postgres.create_database("b")
    try:
        order: list[str] = []
        with build_lock(url):
            waiter = threading.Thread(target=lambda: _build_after(url, order))
            waiter.start()
            time.sleep(2.5)  # well past the 1 s lock timeout
            order.append("first build done")
        waiter.join(30)
        assert order == ["first build done", "second build"]
        db = connect(url)
        try:  # and a write transaction still gives up after the lock timeout
            with pytest.raises(DatabaseUnavailableError):
                holder = connect(url)
                try:
                    with holder.transaction(), db.transaction():
                        pass
                finally:
                    holder.close()
        finally:
            db.close()
    finally:
        postgres.drop_database(url)


def _build_after(url: str, order: list[str]) -> None:
    with build_lock(url):
        order.append("second build")

"""``depot db migrate`` and ``depot db copy``: a populated store moves between SQLite and
PostgreSQL (both ways, and PostgreSQL to PostgreSQL) with every row, and works on arrival."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runtime import downloads
from runtime.accounts import Accounts
from runtime.cli import main
from runtime.database import Database, connect, describe
from runtime.database_cli import VERSIONS, load_schemas, primary_key
from runtime.device.store import Event, Report, by_token, enroll, log_change, record_report
from runtime.portal.store import record_event
from runtime.ratelimit import Rate, RateLimiter
from runtime.shipper.upload import _new_upload
from runtime.storage import SCHEMAS, configured_url, open_database
from runtime.tokens import Tokens
from tests.support.postgres import PostgresCluster

PASSWORD = "correct horse battery staple"
NAV = ("module", "nav", "2.0")


def populate(data: Path) -> tuple[str, dict[str, str]]:
    """A SQLite store with rows in every part, written by the runtime's own code where it has
    some; its URL and the raw secrets it handed out."""
    load_schemas()
    url = f"sqlite://{(data / 'depot.db').resolve()}"
    db = open_database(data, url=url)  # SQLite whatever DEPOT_DATABASE_URL says
    try:
        accounts = Accounts(db)
        alice = accounts.add("alice", PASSWORD, staff=True, full_name="Zoë Ångström")
        bob = accounts.add("bob", PASSWORD, devices=["car"])
        tokens = Tokens(db)
        _ci, ci_raw = tokens.create(alice.id, "ci", name="pipeline", scope="upload")
        gone, _ = tokens.create(bob.id, "ci", name="old")
        tokens.create(bob.id, "portal_session", expires_in=timedelta(hours=1))
        tokens.create(bob.id, "ota", name="shippy")
        db.execute("DELETE FROM tokens WHERE id = ?", [gone.id])  # a gap in the ids
        limiter = RateLimiter(db)
        # live windows (a copy leaves ended ones behind: runtime.database_cli.TRANSIENT)
        limiter.hit("login:bob", Rate(5, 3600), now=time.time())
        limiter.hit("login:203.0.113.9", Rate(5, 3600), now=time.time() + 1.5)
        db.execute(
            "INSERT INTO login_known (account, address, last) VALUES (?, ?, ?)", ["bob", "203.0.113.9", 1.5e9]
        )
        # not in primary-key order, so the insertion order shows
        downloads.add(
            db,
            [
                ("ota", "zeta-1.zip", "2024-05-01", 3),
                ("apk", "alpha", "2024-05-01", 2),
                ("qt", "mid", "2024-05-02", 7),
            ],
        )
        db.execute(
            'INSERT INTO downloads_log_imports (file, path, "offset", head, head_len, lines, counted,'
            " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ["2049:77", "/var/log/nginx/depot.log", 4096, "ab" * 32, 512, 40, 12, "2024-05-02T00:00:00Z"],
        )
        device, device_raw = enroll(db, "car-1", ["beta"])
        enroll(db, "car-2", [])
        report = Report(
            report_id="r1",
            agent_version="1.0",
            platform="arm64",
            installed={"modules": {"nav": "2.0"}, "firmware": {}},
            offered=(NAV,),
            events=(Event("install", *NAV, "succeeded", False, "2024-05-01T10:00:00Z"),),
        )
        record_report(db, device, report, {NAV})
        log_change(db, NAV, "cli:alice", {"arm64": {"percent": 50}})
        db.table("shipper_uploads").insert(_new_upload(bob, "car-20240501.zip", 1234))
        db.execute(
            "INSERT INTO shipper_downloads (time, codename, file_name, build_id, ip, download_type)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [1_700_000_000.75, "car", "car-20240501", 4, "198.51.100.1", "update"],
        )
        now = "2024-05-01T12:00:00Z"
        db.execute(
            "INSERT INTO portal_apps (id, package, owner_id, signer_sha256, created) VALUES (?, ?, ?, ?, ?)",
            ["app1", "com.example.maps", alice.id, "cd" * 32, now],
        )
        db.execute(
            "INSERT INTO portal_versions (id, app_id, version_code, version_name, status, sha256, size,"
            " facts, signer_sha256, uploaded_by, token_id, response, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                "v1",
                "app1",
                3,
                "1.2",
                "in_review",
                "ef" * 32,
                99,
                "{}",
                "cd" * 32,
                alice.id,
                None,
                "{}",
                now,
                now,
            ],
        )
        db.execute(
            "INSERT INTO portal_runs (id, version_id, status, created) VALUES (?, ?, ?, ?)",
            ["run1", "v1", "passed", now],
        )
        db.execute(
            "INSERT INTO portal_findings (id, run_id, version_id, code, severity, message, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            ["f1", "run1", "v1", "min_sdk", "warning", "minSdk is low", now],
        )
        db.execute(
            "INSERT INTO portal_idempotency (user_id, key, sha256, version_id, created)"
            " VALUES (?, ?, ?, ?, ?)",
            [alice.id, "k-1", "ef" * 32, "v1", now],
        )
        record_event(db, "v1", "alice", "submitted", "first upload")
        record_event(db, "v1", "reviewer", "comment", "100% ok")
        db.execute(
            "INSERT INTO qt_sessions (sid_hash, user_id, created) VALUES (?, ?, ?)", ["ab" * 32, bob.id, now]
        )
        empty = [t for t in db.table_names() if t != VERSIONS and not db.table(t).count()]
        assert not empty, f"the test store leaves tables empty: {empty}"
    finally:
        db.close()
    return url, {"ci": ci_raw, "device": device_raw}


def every_row(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows (but schema_versions), ordered by primary key."""
    db = connect(url)
    try:
        found = {}
        for table in db.table_names():
            if table == VERSIONS:
                continue
            order = primary_key(db, table) or db.table(table).columns
            found[table] = db.rows(f'SELECT * FROM "{table}" ORDER BY ' + ", ".join(f'"{c}"' for c in order))
        return found
    finally:
        db.close()


def copy(source: str, target: str) -> Result:
    return CliRunner().invoke(main, ["db", "copy", "--from", source, "--to", target])


def counts(url: str) -> dict[str, int]:
    return {table: len(rows) for table, rows in every_row(url).items()}


def assert_works(url: str, secrets: dict[str, str], original: dict[str, list[dict[str, Any]]]) -> None:
    """The copied store signs in, knows its tokens and devices, and takes new rows whose ids do
    not collide with the copied ones."""
    db = connect(url)
    try:
        accounts = Accounts(db)
        alice = accounts.authenticate("alice", PASSWORD)
        assert alice is not None and alice.staff and alice.full_name == "Zoë Ångström"
        tokens = Tokens(db)
        verified = tokens.verify(secrets["ci"], "ci")
        assert verified is not None and verified.user_id == alice.id
        device = by_token(db, secrets["device"])
        assert device is not None and device.name == "car-1"
        fresh, _ = tokens.create(alice.id, "ci", name="after the move")
        assert fresh.id > max(r["id"] for r in original["tokens"])
        carol = accounts.add("carol", PASSWORD)
        assert carol.id > max(r["id"] for r in original["users"])
        new_device, _ = enroll(db, "car-3", [])
        assert new_device.id > max(r["id"] for r in original["device_devices"])
        record_event(db, "v1", "alice", "approved")
        assert db.value("SELECT max(id) FROM portal_events") == len(original["portal_events"]) + 1
        # insertion order came along: ORDER BY rowid reads what was added first, first
        items = [r[0] for r in db.execute("SELECT item FROM downloads_daily ORDER BY rowid").fetchall()]
        assert items == ["zeta-1.zip", "alpha", "mid"]
    finally:
        db.close()


# -- depot db migrate ---------------------------------------------------------------------------------


def test_migrate_prints_every_namespace_and_twice_changes_nothing(tmp_path: Path) -> None:
    load_schemas()
    data = tmp_path / "var"
    url = configured_url(data)  # DEPOT_DATABASE_URL in the PostgreSQL run, else depot.db in data
    first = CliRunner().invoke(main, ["db", "migrate", "--data", str(data)])
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert lines[0] == f"database {describe(url)}"
    for namespace, steps in SCHEMAS.items():
        assert f"{namespace}\t{len(steps)}  (new)" in lines
    second = CliRunner().invoke(main, ["db", "migrate", "--data", str(data)])
    assert second.exit_code == 0, second.output
    assert second.output.splitlines()[1:] == [f"{n}\t{len(s)}" for n, s in SCHEMAS.items()] + ["up to date"]


def test_migrate_takes_the_database_url(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'elsewhere' / 'store.db'}"
    done = CliRunner().invoke(main, ["db", "migrate", "--data", str(tmp_path / "var"), "--database", url])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0] == f"database {url}"
    assert (tmp_path / "elsewhere" / "store.db").is_file() and not (tmp_path / "var" / "depot.db").exists()


# -- depot db copy, SQLite to SQLite (every run) -------------------------------------------------------


def test_copy_between_sqlite_files_keeps_every_row(tmp_path: Path) -> None:
    source, secrets = populate(tmp_path / "var")
    original = every_row(source)
    target = f"sqlite://{tmp_path / 'new' / 'depot.db'}"
    done = copy(source, target)
    assert done.exit_code == 0, done.output
    assert every_row(target) == original
    shown = [line.split() for line in done.output.splitlines()]
    for table, rows in original.items():
        assert [table, str(len(rows)), str(len(rows))] in shown  # table, source, target
    total = sum(map(len, original.values()))
    assert done.output.splitlines()[-1] == f"copied {total} rows in {len(original)} tables"
    assert_works(target, secrets, original)
    assert every_row(source) == original  # the source is only read


def test_a_target_with_rows_is_refused_and_kept_as_it_was(tmp_path: Path) -> None:
    source, _ = populate(tmp_path / "var")
    target = f"sqlite://{tmp_path / 'other.db'}"
    db = open_database(tmp_path, url=target)
    Accounts(db).add("someone", PASSWORD)
    db.close()
    before = every_row(target)
    done = copy(source, target)
    assert done.exit_code == 1
    assert "Error: " in done.stderr and "not empty: table users has rows" in done.stderr
    assert every_row(target) == before


def test_the_same_database_twice_is_refused(tmp_path: Path) -> None:
    source, _ = populate(tmp_path / "var")
    done = copy(source, f"sqlite://{tmp_path / 'var' / '..' / 'var' / 'depot.db'}")
    assert done.exit_code == 1 and "name the same database" in done.stderr


def test_different_schema_versions_are_refused(tmp_path: Path) -> None:
    source, _ = populate(tmp_path / "var")
    target = f"sqlite://{tmp_path / 'newer.db'}"
    db = open_database(tmp_path, url=target)
    db.execute(f"UPDATE {VERSIONS} SET version = version + 1 WHERE namespace = 'core'")  # a newer release's
    db.close()
    done = copy(source, target)
    assert done.exit_code == 1
    assert "different schema versions" in done.stderr and f"core {len(SCHEMAS['core'])} vs" in done.stderr
    assert not sum(counts(target).values())


def test_a_missing_source_is_an_error_not_a_new_empty_store(tmp_path: Path) -> None:
    done = copy(f"sqlite://{tmp_path / 'nothing.db'}", f"sqlite://{tmp_path / 'new.db'}")
    assert done.exit_code == 1 and "no SQLite database at" in done.stderr
    assert not (tmp_path / "nothing.db").exists()


def test_a_count_that_differs_fails_and_leaves_the_target_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runtime.database_cli

    source, _ = populate(tmp_path / "var")
    target = f"sqlite://{tmp_path / 'new.db'}"
    real = runtime.database_cli.insert_batch

    def lossy(db: Database, sql: str, rows: list[tuple[Any, ...]]) -> None:
        real(db, sql, rows[:-1] if "downloads_daily" in sql else rows)

    monkeypatch.setattr(runtime.database_cli, "insert_batch", lossy)
    done = copy(source, target)
    assert done.exit_code == 1
    assert "Error: the row counts differ for table downloads_daily (3 in the source, 2 copied)" in done.stderr
    assert "DIFFERS" in done.output
    assert not sum(counts(target).values())


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def test_a_table_larger_than_a_batch_arrives_whole_and_in_order(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    from runtime.database_cli import BATCH

    source = f"sqlite://{tmp_path / 'big.db'}"
    load_schemas()
    db = open_database(tmp_path, url=source)
    rows = [("apk", f"item-{(i * 7919) % 10007:05d}", "2024-05-01", i) for i in range(2 * BATCH + 345)]
    downloads.add(db, rows)  # not in key order
    db.close()
    target = f"sqlite://{tmp_path / 'copy.db'}"
    if engine == "postgresql":
        postgres: PostgresCluster = request.getfixturevalue("postgres")
        target = postgres.create_database("big")
        request.addfinalizer(lambda: postgres.drop_database(target))
    done = copy(source, target)
    assert done.exit_code == 0, done.output
    copied = connect(target)
    try:
        found = copied.execute("SELECT kind, item, day, count FROM downloads_daily ORDER BY rowid").fetchall()
    finally:
        copied.close()
    assert [tuple(r) for r in found] == rows


# -- depot db copy with PostgreSQL ---------------------------------------------------------------------


@pytest.mark.postgresql
def test_sqlite_to_postgresql_and_back(tmp_path: Path, postgres: PostgresCluster) -> None:
    source, secrets = populate(tmp_path / "var")
    original = every_row(source)
    created = [postgres.create_database("copy"), postgres.create_database("copy")]
    try:
        # the test server trusts every local connection, so a password is accepted and ignored
        target = created[0].replace("://depot@", "://depot:s3cret-pw@")
        done = copy(source, target)
        assert done.exit_code == 0, done.output
        assert "s3cret-pw" not in done.output and describe(target) in done.output
        assert every_row(target) == original

        # PostgreSQL to SQLite, and to PostgreSQL: the same rows again, in the same order
        back = f"sqlite://{tmp_path / 'back' / 'depot.db'}"
        assert copy(target, back).exit_code == 0
        assert every_row(back) == original
        again = copy(target, created[1])
        assert again.exit_code == 0, again.output
        assert every_row(created[1]) == original

        assert_works(target, secrets, original)
        assert_works(back, secrets, original)
        assert_works(created[1], secrets, original)

        # a second copy into the filled database is refused and changes nothing
        before = every_row(target)
        refused = copy(source, target)
        assert refused.exit_code == 1
        assert "not empty: table" in refused.stderr and "s3cret-pw" not in refused.stderr
        assert every_row(target) == before
    finally:
        for url in created:
            postgres.drop_database(url)


@pytest.mark.postgresql
def test_migrate_a_postgresql_database(postgres: PostgresCluster, tmp_path: Path) -> None:
    url = postgres.create_database("mig")
    try:
        data = str(tmp_path / "var")
        first = CliRunner().invoke(main, ["db", "migrate", "--database", url, "--data", data])
        assert first.exit_code == 0, first.output
        assert first.output.splitlines()[0] == f"database {url}"
        assert not (tmp_path / "var").exists()  # PostgreSQL needs no data folder
        second = CliRunner().invoke(main, ["db", "migrate", "--database", url])
        assert second.output.splitlines()[-1] == "up to date"
    finally:
        postgres.drop_database(url)

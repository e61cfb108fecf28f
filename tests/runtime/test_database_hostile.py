"""What a hostile client or a failing database server does to the database layer, on whichever
engine the run uses (and some on PostgreSQL always): a NUL or a 6 kB name in a login is a
refusal in the dialect's shape, never a 500 or a 503; a dropped connection is replaced; no
password of a database URL reaches a message."""

from __future__ import annotations

import base64
import random
import string
from pathlib import Path

import pytest

from runtime.database import DatabaseError, connect, describe
from runtime.downloads import DownloadCounter, utc_day
from runtime.storage import open_database
from tests.support.console import console_store
from tests.support.postgres import PostgresCluster

NUL_NAME = "staff\x00"
LONG_NAME = "".join(random.Random(16).choices(string.ascii_letters, k=6000))


@pytest.mark.parametrize("name", [NUL_NAME, LONG_NAME], ids=["nul", "6000-characters"])
def test_a_hostile_login_name_is_refused_in_every_dialect_never_a_server_error(
    tmp_path: Path, name: str
) -> None:
    with console_store(tmp_path) as store:
        client = store.client
        answers = {
            "console": client.post(
                "/console/login", data={"name": name, "password": "x" * 10, "next": "/console/"}
            ),
            "shipper": client.post(
                "/api/v1/maintainers/login/", data={"username": name, "password": "x" * 10}
            ),
            "qt": client.get("/login", params={"username": name, "password": "x" * 10}),
            "portal": client.post("/portal/api/login", json={"name": name, "password": "x" * 10}),
            "device": client.get(
                "/device/api/v1/rollouts/modules/ax/1.0.0",
                headers={"Authorization": "Basic " + base64.b64encode(f"{name}:pw".encode()).decode()},
            ),
        }
        qt = answers.pop("qt")  # Qt's /login answers a failure with 200, as the reference does
        assert qt.status_code == 200 and qt.json()["status"] == "authentication-failed", qt.text
        statuses = {dialect: answer.status_code for dialect, answer in answers.items()}
        assert all(400 <= status < 500 for status in statuses.values()), statuses
        assert client.get("/healthz").json()["status"] == "ok"


def test_urls_are_described_without_their_passwords() -> None:
    assert describe("postgresql://depot:s3cret@db/depot") == "postgresql://depot:***@db/depot"
    assert describe("postgresql://depot:hunter2@pass@db:5432/depot") == "postgresql://depot:***@db:5432/depot"
    assert describe("postgresql://:pw@db/depot") == "postgresql://:***@db/depot"
    assert (
        describe("postgresql://db/depot?user=a&password=p%40ss")
        == "postgresql://db/depot?user=a&password=***"
    )
    assert describe("sqlite:///srv/depot/var/depot.db") == "sqlite:///srv/depot/var/depot.db"


@pytest.mark.postgresql
@pytest.mark.parametrize("password", ["my%pass", "hunter2@pass", "pl@in%20"])
def test_a_connection_error_never_shows_the_password(postgres: PostgresCluster, password: str) -> None:
    url = f"postgresql://depot:{password}@127.0.0.1:{postgres.port}/no_such_database"
    with pytest.raises(DatabaseError) as raised:
        connect(url)
    assert password not in str(raised.value)
    assert password.replace("%20", " ") not in str(raised.value)


def _terminate_others(postgres: PostgresCluster, database: str) -> None:
    admin = connect(postgres.url())
    try:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = ? AND pid <> pg_backend_pid()",
            [database],
        )
    finally:
        admin.close()


@pytest.mark.postgresql
def test_a_dropped_connection_is_replaced_for_reads_and_counters(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database("d")
    name = url.rsplit("/", 1)[1]
    try:
        db = open_database(tmp_path, url)
        counter = DownloadCounter(url)
        counter.record("apk", "a.b 1")
        assert counter.flush() == 1
        _terminate_others(postgres, name)  # as a restart or a failover would
        assert db.value("SELECT count(*) FROM users") == 0  # a read: sent again on a new connection
        counter.record("apk", "a.b 1")
        with pytest.raises(DatabaseError):
            counter.flush()  # a write in flight is not sent twice: its sums wait...
        assert counter.flush() == 1  # ...for the next flush, on a new connection
        total = db.value("SELECT count FROM downloads_daily WHERE item = ? AND day = ?", ["a.b 1", utc_day()])
        assert total == 2
        counter.close()
        db.close()
    finally:
        postgres.drop_database(url)

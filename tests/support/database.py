"""The store's database as a test reads it: whichever engine the run uses (SQLite in the data
folder, or the PostgreSQL database DEPOT_DATABASE_URL names: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.database import Database
from runtime.storage import open_database


@contextmanager
def store_database(data: Path) -> Iterator[Database]:
    db = open_database(data)
    try:
        yield db
    finally:
        db.close()


def dump_database(db: Database) -> str:
    """Every row of every table as text (what a copy of the database would reveal)."""
    lines = []
    for table in db.table_names():
        for row in db.rows(f'SELECT * FROM "{table}"'):
            lines.append(f"{table}: {row!r}")
    return "\n".join(lines)

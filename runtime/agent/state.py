"""The agent's durable state: tasks, their logs, verified downloads, what the store told it
about itself (facts) and the reports waiting to be sent (the outbox), in one SQLite file.

Every change is committed before the agent acts on it (WAL, ``synchronous=FULL``), so after a
power cut the database says what was queued, what was running and what each task logged.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("download", "install", "uninstall")
TARGETS = ("module", "firmware")
QUEUEING, RUNNING, SUCCEEDED, FAILED = "queueing", "running", "succeeded", "failed"
ACTIVE = (QUEUEING, RUNNING)
TERMINAL = (SUCCEEDED, FAILED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    module TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    create_time TEXT NOT NULL,
    start_time TEXT,
    end_time TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    url TEXT,
    file TEXT,
    size INTEGER,
    sha256 TEXT,
    unpacked_size INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks(status, kind);
CREATE INDEX IF NOT EXISTS tasks_by_module ON tasks(target, module);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_task ON logs(task_id, seq);
CREATE TABLE IF NOT EXISTS downloads (
    target TEXT NOT NULL,
    module TEXT NOT NULL,
    version TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    unpacked_size INTEGER,
    PRIMARY KEY (target, module, version)
);
CREATE TABLE IF NOT EXISTS facts (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
"""
# Reports wait here while the store is unreachable; past this many the oldest go (a device
# offline for months still reports its recent history and its state, which every report has).
MAX_OUTBOX = 5000


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())


@dataclass
class Task:
    id: int
    kind: str
    target: str
    module: str
    version: str
    status: str
    create_time: str
    start_time: str | None
    end_time: str | None
    done: int
    total: int
    reason: str | None
    url: str | None
    file: str | None
    size: int | None
    sha256: str | None
    unpacked_size: int | None
    restarts: int

    @property
    def progress(self) -> float:
        if self.status == SUCCEEDED:
            return 1.0
        return min(self.done / self.total, 1.0) if self.total > 0 else 0.0


@dataclass
class Download:
    target: str
    module: str
    version: str
    file: str  # relative to the agent root
    size: int
    sha256: str
    unpacked_size: int | None


class State:
    """Thread-safe access to the agent database (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchone()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def _run(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(args))

    # -- tasks ------------------------------------------------------------------------------

    def add_task(self, kind: str, target: str, module: str, version: str, **fields: Any) -> Task:
        created = now()
        columns = ["kind", "target", "module", "version", "status", "create_time", *fields]
        values = [kind, target, module, version, QUEUEING, created, *fields.values()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({', '.join('?' * len(values))})",
                    values,
                )
                task_id = cur.lastrowid
                assert task_id is not None
                header = f"id: {task_id}\ncreate time: {created}\n{kind} task {module}({version}) added\n"
                self._db.execute("INSERT INTO logs (task_id, text) VALUES (?, ?)", (task_id, header))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        task = self.task(task_id)
        assert task is not None
        return task

    def task(self, task_id: int) -> Task | None:
        row = self._one("SELECT * FROM tasks WHERE id = ?", (task_id,))
        return Task(**dict(row)) if row else None

    def tasks(self, kinds: Iterable[str], target: str | None = None) -> list[Task]:
        kinds = list(kinds)
        sql = f"SELECT * FROM tasks WHERE kind IN ({', '.join('?' * len(kinds))})"
        args: list[Any] = list(kinds)
        if target:
            sql += " AND target = ?"
            args.append(target)
        return [Task(**dict(r)) for r in self._all(sql + " ORDER BY id DESC", args)]

    def active_task(self, target: str, module: str) -> Task | None:
        row = self._one(
            "SELECT * FROM tasks WHERE target = ? AND module = ? AND status IN (?, ?) ORDER BY id LIMIT 1",
            (target, module, *ACTIVE),
        )
        return Task(**dict(row)) if row else None

    def latest_tasks(self, target: str) -> dict[str, Task]:
        rows = self._all(
            "SELECT * FROM tasks WHERE id IN (SELECT MAX(id) FROM tasks WHERE target = ? GROUP BY module)",
            (target,),
        )
        return {r["module"]: Task(**dict(r)) for r in rows}

    def active_tasks(self, target: str) -> dict[str, Task]:
        rows = self._all(
            "SELECT * FROM tasks WHERE target = ? AND status IN (?, ?) ORDER BY id DESC", (target, *ACTIVE)
        )
        return {r["module"]: Task(**dict(r)) for r in rows}

    def next_queued(self, kinds: Iterable[str]) -> Task | None:
        kinds = list(kinds)
        row = self._one(
            f"SELECT * FROM tasks WHERE status = ? AND kind IN ({', '.join('?' * len(kinds))}) "
            "ORDER BY id LIMIT 1",
            (QUEUEING, *kinds),
        )
        return Task(**dict(row)) if row else None

    def start(self, task_id: int) -> None:
        started = now()
        self._run(
            "UPDATE tasks SET status = ?, start_time = COALESCE(start_time, ?) WHERE id = ?",
            (RUNNING, started, task_id),
        )
        self.log(task_id, f"start time: {started}")
        task = self.task(task_id)
        if task is not None:  # the spec's sample log: "<kind> task <name>(<version>) begin"
            self.log(task_id, f"{task.kind} task {task.module}({task.version}) begin")

    def progress(self, task_id: int, done: int, total: int) -> None:
        self._run("UPDATE tasks SET done = ?, total = ? WHERE id = ?", (done, total, task_id))

    def finish(self, task_id: int, status: str, reason: str | None = None) -> None:
        ended = now()
        self._run(
            "UPDATE tasks SET status = ?, end_time = ?, reason = ? WHERE id = ?",
            (status, ended, reason, task_id),
        )
        self.log(task_id, f"end time: {ended}\ntask {status}" + (f": {reason}" if reason else ""))

    def requeue(self, task_id: int) -> int:
        """Put a task interrupted by a restart back in its queue; returns its restart count."""
        self._run("UPDATE tasks SET status = ?, restarts = restarts + 1 WHERE id = ?", (QUEUEING, task_id))
        task = self.task(task_id)
        return task.restarts if task else 0

    def interrupted(self) -> list[Task]:
        return [Task(**dict(r)) for r in self._all("SELECT * FROM tasks WHERE status = ?", (RUNNING,))]

    # -- logs -------------------------------------------------------------------------------

    def log(self, task_id: int, line: str) -> None:
        self._run("INSERT INTO logs (task_id, text) VALUES (?, ?)", (task_id, line + "\n"))

    def log_text(self, task_id: int) -> str:
        return "".join(
            r["text"] for r in self._all("SELECT text FROM logs WHERE task_id = ? ORDER BY seq", (task_id,))
        )

    # -- downloads --------------------------------------------------------------------------

    def add_download(self, d: Download) -> None:
        self._run(
            "INSERT OR REPLACE INTO downloads VALUES (?, ?, ?, ?, ?, ?, ?)",
            (d.target, d.module, d.version, d.file, d.size, d.sha256, d.unpacked_size),
        )

    def downloads(self, target: str, module: str | None = None) -> list[Download]:
        if module is None:
            rows = self._all("SELECT * FROM downloads WHERE target = ?", (target,))
        else:
            rows = self._all("SELECT * FROM downloads WHERE target = ? AND module = ?", (target, module))
        return [Download(**dict(r)) for r in rows]

    def forget_downloads(self, target: str, module: str, version: str | None = None) -> None:
        if version is None:
            self._run("DELETE FROM downloads WHERE target = ? AND module = ?", (target, module))
        else:
            self._run(
                "DELETE FROM downloads WHERE target = ? AND module = ? AND version = ?",
                (target, module, version),
            )

    # -- facts ------------------------------------------------------------------------------

    def fact(self, key: str) -> str | None:
        row = self._one("SELECT value FROM facts WHERE key = ?", (key,))
        return row["value"] if row else None

    def set_fact(self, key: str, value: str) -> None:
        self._run("INSERT OR REPLACE INTO facts (key, value) VALUES (?, ?)", (key, value))

    # -- outbox -----------------------------------------------------------------------------

    def queue_report(self, report_id: str, body: str) -> None:
        """Keep a report until the store took it; the same report_id is queued once."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO outbox (report_id, body) VALUES (?, ?)", (report_id, body)
            )
            self._db.execute(
                "DELETE FROM outbox WHERE seq <= (SELECT MAX(seq) FROM outbox) - ?", (MAX_OUTBOX,)
            )

    def next_report(self) -> tuple[int, str, str] | None:
        row = self._one("SELECT seq, report_id, body FROM outbox ORDER BY seq LIMIT 1")
        return (row["seq"], row["report_id"], row["body"]) if row else None

    def report_sent(self, seq: int) -> None:
        self._run("DELETE FROM outbox WHERE seq = ?", (seq,))

    def reports_waiting(self) -> int:
        row = self._one("SELECT COUNT(*) AS n FROM outbox")
        return int(row["n"]) if row else 0

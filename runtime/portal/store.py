"""The CI portal's database: apps, versions, validation runs, findings, idempotency keys.

What the catalog shows (live versions and their targets) is written to repo/android/ on
release; this database keeps the rest: drafts, review state, findings, who owns a package and
which signer it is pinned to. Writes that must not interleave (two uploads of one package)
run inside ``BEGIN IMMEDIATE``; raw SQL throughout, because sqlite-utils' helpers commit on
their own and would end such a transaction early.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from runtime.clock import now_iso
from runtime.database import Database
from runtime.storage import register_schema

STATUSES = ("draft", "in_review", "approved", "live", "rejected")
SEVERITIES = ("info", "warning", "blocking")


def _v1(db: Database) -> None:
    for sql in (
        """CREATE TABLE portal_apps (
            id TEXT PRIMARY KEY,
            package TEXT NOT NULL UNIQUE,
            owner_id INTEGER NOT NULL REFERENCES users(id),
            signer_sha256 TEXT,            -- pinned on the first version that passed validation
            created TEXT NOT NULL)""",
        """CREATE TABLE portal_versions (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES portal_apps(id),
            version_code INTEGER NOT NULL,
            version_name TEXT NOT NULL,
            status TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            facts TEXT NOT NULL,           -- JSON: manifest facts and the signature report
            signer_sha256 TEXT NOT NULL,
            uploaded_by INTEGER REFERENCES users(id),
            token_id INTEGER,
            response TEXT NOT NULL,        -- the original 201 body, replayed on retries
            reason TEXT,
            countries TEXT NOT NULL DEFAULT '[]',
            vehicle_contexts TEXT NOT NULL DEFAULT '[]',
            released TEXT,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            UNIQUE (app_id, version_code))""",
        "CREATE INDEX portal_versions_sha256 ON portal_versions (app_id, sha256)",
        """CREATE TABLE portal_runs (
            id TEXT PRIMARY KEY,
            version_id TEXT NOT NULL REFERENCES portal_versions(id),
            status TEXT NOT NULL,          -- running, passed, failed
            created TEXT NOT NULL,
            finished TEXT)""",
        "CREATE INDEX portal_runs_version ON portal_runs (version_id)",
        """CREATE TABLE portal_findings (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES portal_runs(id),
            version_id TEXT NOT NULL REFERENCES portal_versions(id),
            code TEXT NOT NULL,
            severity TEXT NOT NULL,
            message TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open',   -- open, resolved
            created TEXT NOT NULL,
            resolved TEXT)""",
        "CREATE INDEX portal_findings_version ON portal_findings (version_id)",
        """CREATE TABLE portal_idempotency (
            user_id INTEGER NOT NULL REFERENCES users(id),
            key TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            version_id TEXT NOT NULL REFERENCES portal_versions(id),
            created TEXT NOT NULL,
            PRIMARY KEY (user_id, key))""",
        """CREATE TABLE portal_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            version_id TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL)""",
    ):
        db.execute(sql)


register_schema("portal", [_v1])


def new_id() -> str:
    return uuid.uuid4().hex


def rows(db: Database, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, list(args))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def one(db: Database, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> dict[str, Any] | None:
    found = rows(db, sql, args)
    return found[0] if found else None


def app_by_package(db: Database, package: str) -> dict[str, Any] | None:
    return one(db, "SELECT * FROM portal_apps WHERE package = ?", [package])


def version(db: Database, version_id: str) -> dict[str, Any] | None:
    """A version joined with its app's package, owner and pin."""
    return one(
        db,
        """SELECT v.*, a.package, a.owner_id, a.signer_sha256 AS pinned_signer
           FROM portal_versions v JOIN portal_apps a ON a.id = v.app_id WHERE v.id = ?""",
        [version_id],
    )


def runs_with_findings(db: Database, version_id: str) -> list[dict[str, Any]]:
    out = []
    for run in rows(
        db, "SELECT * FROM portal_runs WHERE version_id = ? ORDER BY created, rowid", [version_id]
    ):
        findings = rows(
            db,
            "SELECT id, code, severity, message, status FROM portal_findings WHERE run_id = ? ORDER BY rowid",
            [run["id"]],
        )
        out.append(
            {
                "id": run["id"],
                "status": run["status"],
                "created": run["created"],
                "finished": run["finished"],
                "findings": findings,
            }
        )
    return out


def open_issue_count(db: Database, version_id: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM portal_findings WHERE version_id = ? AND status = 'open'", [version_id]
    ).fetchone()
    return int(row[0])


def record_event(db: Database, version_id: str, actor: str, action: str, detail: str = "") -> None:
    db.execute(
        "INSERT INTO portal_events (version_id, actor, action, detail, created) VALUES (?, ?, ?, ?, ?)",
        [version_id, actor, action, detail, now_iso()],
    )


def version_summary(db: Database, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "app_id": row["app_id"],
        "package": row["package"],
        "version_code": row["version_code"],
        "version_name": row["version_name"],
        "status": row["status"],
        "open_issue_count": open_issue_count(db, row["id"]),
    }


def release_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "live": row["status"] == "live",
        "targets": {
            "countries": json.loads(row["countries"] or "[]"),
            "vehicle_contexts": json.loads(row["vehicle_contexts"] or "[]"),
        },
        "released": row["released"],
    }

"""The device dialect's database: enrolled devices, the report ids they sent, and per device per
version what the device told the store (offered, downloaded, installed, failed, rolled back).

What devices install is decided on the device from the static index; this database only keeps
what they reported back, so the store can count a rollout and pause it. Writes that must not
interleave (two copies of one report, two reports that could both pause a rollout) run inside
``BEGIN IMMEDIATE``, which SQLite serialises across every runtime process sharing the file; raw
SQL throughout, because sqlite-utils' helpers commit on their own and would end a transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from builder.errors import DepotError
from builder.settings import GROUP
from runtime.clock import now_iso
from runtime.database import Database, IntegrityError
from runtime.storage import register_schema, transaction
from runtime.tokens import Tokens

DEVICE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")  # \Z: "$" also matches before a final "\n"
TOKEN_PURPOSE = "device"
# Device tokens belong to no person. tokens.user_id names an account for every other kind of
# token (and the dialects look the account up by it), so a device token's owner is one reserved
# account that can never log in or act as a person: its name starts with "@", which
# Accounts.add refuses (nobody can create it or set a password for it), its password hash is no
# scrypt hash (every password check fails), and it is neither staff nor maintains an OTA device.
# Which device a token authenticates is device_devices.token_id; `depot token list` shows the
# owner of device tokens as "@devices".
DEVICES_ACCOUNT = "@devices"
FLAGS = ("offered", "downloaded", "installed", "failed", "rolled_back")
KEEP_REPORT_IDS = 1000  # per device: idempotency keys older than the newest 1000 are forgotten


class DeviceError(DepotError):
    """A device cannot be enrolled, changed or found (a name, a group, a duplicate)."""


def _v1(db: Database) -> None:
    for sql in (
        """CREATE TABLE device_devices (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            groups TEXT NOT NULL DEFAULT '[]',      -- JSON list of group names
            token_id INTEGER NOT NULL UNIQUE REFERENCES tokens(id),
            created TEXT NOT NULL,
            last_report TEXT,                       -- when the store received the last new report
            agent_version TEXT,
            platform TEXT,
            installed TEXT NOT NULL DEFAULT '{}')   -- JSON {"modules": {...}, "firmware": {...}}""",
        """CREATE TABLE device_reports (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            device_id INTEGER NOT NULL REFERENCES device_devices(id) ON DELETE CASCADE,
            report_id TEXT NOT NULL,
            received TEXT NOT NULL,
            events INTEGER NOT NULL,
            UNIQUE (device_id, report_id))""",
        """CREATE TABLE device_versions (
            device_id INTEGER NOT NULL REFERENCES device_devices(id) ON DELETE CASCADE,
            target TEXT NOT NULL,                   -- module, firmware
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            offered INTEGER NOT NULL DEFAULT 0,
            downloaded INTEGER NOT NULL DEFAULT 0,
            installed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            rolled_back INTEGER NOT NULL DEFAULT 0,
            outcome_at TEXT,                        -- finished time of the install outcome kept
            updated TEXT NOT NULL,
            PRIMARY KEY (device_id, target, name, version))""",
        "CREATE INDEX device_versions_version ON device_versions (target, name, version)",
        """CREATE TABLE device_rollout_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            target TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            actor TEXT NOT NULL,                    -- "auto" or "cli:<user>"
            change TEXT NOT NULL,                   -- JSON {platform: {key: value}}
            created TEXT NOT NULL)""",
    ):
        db.execute(sql)


register_schema("device", [_v1])


def rows(db: Database, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, list(args))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


# -- devices -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    id: int
    name: str
    groups: tuple[str, ...]
    token_id: int
    created: str
    last_report: str | None
    agent_version: str | None
    platform: str | None
    installed: dict[str, dict[str, str]]


def _device(row: dict[str, Any]) -> Device:
    return Device(
        row["id"],
        row["name"],
        tuple(json.loads(row["groups"] or "[]")),
        row["token_id"],
        row["created"],
        row["last_report"],
        row["agent_version"],
        row["platform"],
        json.loads(row["installed"] or "{}"),
    )


def parse_groups(text: str) -> list[str]:
    """``"beta,lab"`` → ``["beta", "lab"]`` (sorted, no duplicates); DeviceError on a bad name."""
    groups = sorted({g.strip() for g in text.split(",") if g.strip()})
    bad = [g for g in groups if not GROUP.fullmatch(g)]
    if bad:
        raise DeviceError(f"invalid group {bad[0]!r}: letters, digits and . _ - only, at most 64 characters")
    return groups


def _check_name(name: str) -> None:
    if not DEVICE_NAME.fullmatch(name):
        raise DeviceError(
            f"invalid device name {name!r}: letters, digits and . _ - only, at most 64 characters"
        )


def _devices_account(db: Database) -> int:
    db.execute(
        "INSERT INTO users (name, password_hash, staff, devices, created)"
        " VALUES (?, '!', 0, '[]', ?) ON CONFLICT DO NOTHING",
        [DEVICES_ACCOUNT, now_iso()],
    )
    return int(db.execute("SELECT id FROM users WHERE name = ?", [DEVICES_ACCOUNT]).fetchone()[0])


def enroll(db: Database, name: str, groups: list[str]) -> tuple[Device, str]:
    """Enroll a device; returns it and its raw token, of which only the SHA-256 is kept."""
    _check_name(name)
    if get(db, name) is not None:
        raise DeviceError(f"device {name!r} is already enrolled (remove it first to issue a new token)")
    # Tokens.create commits on its own (autocommit, outside a transaction): so the token comes
    # first, outside a transaction, and is revoked again if another enrollment took the name.
    token, raw = Tokens(db).create(_devices_account(db), TOKEN_PURPOSE, name=name)
    try:
        db.execute(
            "INSERT INTO device_devices (name, groups, token_id, created) VALUES (?, ?, ?, ?)",
            [name, json.dumps(groups), token.id, now_iso()],
        )
    except IntegrityError:
        Tokens(db).revoke(token.id)
        raise DeviceError(f"device {name!r} is already enrolled") from None
    device = get(db, name)
    assert device is not None
    return device, raw


def get(db: Database, name: str) -> Device | None:
    found = rows(db, "SELECT * FROM device_devices WHERE name = ?", [name])
    return _device(found[0]) if found else None


def by_token(db: Database, raw: str) -> Device | None:
    """The enrolled device of a live device token, else None."""
    token = Tokens(db).verify(raw, TOKEN_PURPOSE)
    if token is None:
        return None
    found = rows(db, "SELECT * FROM device_devices WHERE token_id = ?", [token.id])
    return _device(found[0]) if found else None


def all_devices(db: Database) -> list[Device]:
    return [_device(r) for r in rows(db, "SELECT * FROM device_devices ORDER BY name")]


def remove(db: Database, name: str) -> None:
    """Revoke the device's token and forget the device, its report ids and its flags (the
    rollout counts then no longer include it)."""
    with transaction(db):
        device = get(db, name)
        if device is None:
            raise DeviceError(f"no device {name!r}")
        db.execute("UPDATE tokens SET revoked = 1 WHERE id = ?", [device.token_id])
        db.execute("DELETE FROM device_devices WHERE id = ?", [device.id])


def set_groups(db: Database, name: str, groups: list[str]) -> Device:
    with transaction(db):
        if get(db, name) is None:
            raise DeviceError(f"no device {name!r}")
        db.execute("UPDATE device_devices SET groups = ? WHERE name = ?", [json.dumps(groups), name])
    device = get(db, name)
    assert device is not None
    return device


# -- reports -----------------------------------------------------------------------------------

VersionKey = tuple[str, str, str]  # (target, name, version)


@dataclass(frozen=True)
class Event:
    kind: str  # download, install, uninstall, firmware
    target: str  # module, firmware
    name: str
    version: str
    status: str  # succeeded, failed
    rolled_back: bool
    finished: str  # UTC, ISO 8601 with "Z"; the receive time when the device sent none


@dataclass(frozen=True)
class Report:
    report_id: str
    agent_version: str
    platform: str
    installed: dict[str, dict[str, str]]
    offered: tuple[VersionKey, ...]
    events: tuple[Event, ...]


def report_keys(report: Report) -> set[VersionKey]:
    """Every version a report names (offered, or in an event)."""
    return {*report.offered, *((e.target, e.name, e.version) for e in report.events)}


def record_report(
    db: Database, device: Device, report: Report, known: Container[VersionKey]
) -> tuple[bool, set[VersionKey]]:
    """Store one report in one transaction: (duplicate, the versions that got an install
    outcome). A report id the device already sent changes nothing and answers duplicate.

    Only versions in ``known`` (those with a file in repo/: rollouts.existing_versions) get a
    device_versions row; the rest of what a device says about versions that exist nowhere is
    dropped, so the rows per device are bounded by the versions in repo/, not by its reports."""
    now = now_iso()
    outcomes: set[VersionKey] = set()
    with transaction(db):
        cursor = db.execute(
            "INSERT INTO device_reports (device_id, report_id, received, events)"
            " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [device.id, report.report_id, now, len(report.events)],
        )
        if cursor.rowcount == 0:
            return True, outcomes
        # seq is one AUTOINCREMENT over every device, so the cut is this device's row number
        # KEEP_REPORT_IDS + 1 counted from its newest (NULL, nothing deleted, while it has fewer)
        db.execute(
            "DELETE FROM device_reports WHERE device_id = ? AND seq <= "
            "(SELECT seq FROM device_reports WHERE device_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            [device.id, device.id, KEEP_REPORT_IDS],
        )
        db.execute(
            "UPDATE device_devices SET last_report = ?, agent_version = ?, platform = ?, installed = ?"
            " WHERE id = ?",
            [
                now,
                report.agent_version,
                report.platform,
                json.dumps(report.installed, sort_keys=True),
                device.id,
            ],
        )
        for key in report.offered:
            if key not in known:
                continue
            _touch(db, device.id, key, now)
            db.execute(_UPDATE + "offered = 1" + _WHERE, [now, device.id, *key])
        for event in sorted(report.events, key=lambda e: e.finished):  # stable: same time keeps order
            key = (event.target, event.name, event.version)
            if key not in known:
                continue
            if event.kind == "download":
                if event.status == "succeeded":
                    _touch(db, device.id, key, now)
                    db.execute(_UPDATE + "downloaded = 1" + _WHERE, [now, device.id, *key])
            elif event.kind in ("install", "firmware"):
                _touch(db, device.id, key, now)
                ok = event.status == "succeeded"
                # the latest outcome wins: an older event that arrives late changes nothing
                db.execute(
                    _UPDATE
                    + "installed = ?, failed = ?, rolled_back = ?, outcome_at = ?"
                    + _WHERE
                    + " AND (outcome_at IS NULL OR outcome_at <= ?)",
                    [
                        now,
                        int(ok),
                        int(not ok),
                        int(event.rolled_back and not ok),
                        event.finished,
                        device.id,
                        *key,
                        event.finished,
                    ],
                )
                outcomes.add(key)
            # an uninstall changes no flag: the counts say how installs of a version went, and
            # what a device has now is the report's "installed"
    return False, outcomes


_UPDATE = "UPDATE device_versions SET updated = ?, "
_WHERE = " WHERE device_id = ? AND target = ? AND name = ? AND version = ?"


def _touch(db: Database, device_id: int, key: VersionKey, now: str) -> None:
    db.execute(
        "INSERT INTO device_versions (device_id, target, name, version, updated)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [device_id, *key, now],
    )


def counts(db: Database, key: VersionKey) -> dict[str, int]:
    """Per flag, how many enrolled devices have it for this version."""
    sums = ", ".join(f"coalesce(sum({flag}), 0)" for flag in FLAGS)
    row = db.execute(
        f"SELECT {sums} FROM device_versions WHERE target = ? AND name = ? AND version = ?", list(key)
    ).fetchone()
    return {flag: int(value) for flag, value in zip(FLAGS, row, strict=True)}


def failure_rate(found: dict[str, int]) -> float | None:
    """failed / (installed + failed), or None before any device reported an install outcome."""
    outcomes = found["installed"] + found["failed"]
    return found["failed"] / outcomes if outcomes else None


def log_change(db: Database, key: VersionKey, actor: str, change: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO device_rollout_log (target, name, version, actor, change, created)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [*key, actor, json.dumps(change, sort_keys=True), now_iso()],
    )

"""The store team's side: approve, reject, release, withdraw, resolve findings.

Status flow: ``draft`` → (validation passed) ``in_review`` → ``approved`` → ``live``; ``rejected``
from any state before live. Withdrawing a live version takes it back to ``approved`` (it can be
released again). Releasing publishes: the sidecar (status and targets) and then the APK go into
repo/android/, each written to a temporary name, fsynced and renamed, so the catalog never sees
an APK without its targets; withdrawing removes the APK first for the same reason. The caller
rebuilds the catalog afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from builder.atomic import ContentChangedError, copy_temp, fsync_dir
from builder.portal.apk import COUNTRY, FOLDER, VEHICLE_CONTEXT, apk_filename
from builder.sidecars import write_sidecar
from runtime.clock import now_iso
from runtime.database import Database
from runtime.portal.store import one, record_event, rows, version
from runtime.storage import transaction


class ReviewError(ValueError):
    """A refused transition; the message says what state the version is in and why."""


ID_TABLES = {"version": "portal_versions", "finding": "portal_findings"}
MIN_PREFIX = 4  # a shorter prefix would match by accident


def expand_id(db: Database, kind: str, prefix: str) -> str:
    """The full id of the one version (or finding) whose id starts with ``prefix``, as a person
    types it from a listing; a full id is itself. Refused when none or several match."""
    table = ID_TABLES[kind]
    wanted = prefix.strip().lower()
    if one(db, f"SELECT id FROM {table} WHERE id = ?", [wanted]):
        return wanted
    if len(wanted) < MIN_PREFIX or not wanted.isalnum():
        raise ReviewError(f"no {kind} {prefix!r} (give at least {MIN_PREFIX} characters of its id)")
    found = rows(db, f"SELECT id FROM {table} WHERE id LIKE ? ORDER BY id LIMIT 3", [wanted + "%"])
    if not found:
        raise ReviewError(f"no {kind} {prefix!r}")
    if len(found) > 1:
        raise ReviewError(f"{prefix!r} is the start of several {kind} ids: give more characters")
    return str(found[0]["id"])


def stored_apk(data: Path, version_id: str) -> Path:
    return data / "portal" / "apks" / f"{version_id}.apk"


def live_paths(repo: Path, package: str, version_code: int) -> tuple[Path, Path]:
    apk = repo / FOLDER / apk_filename(package, version_code)
    return apk, apk.with_name(apk.name + ".toml")


def _get(db: Database, version_id: str) -> dict:
    row = version(db, version_id)
    if row is None:
        raise ReviewError(f"no version {version_id!r}")
    return row


def _refuse(db: Database, row: dict, action: str, allowed: tuple[str, ...]) -> None:
    if row["status"] not in allowed:
        hint = ""
        if row["status"] == "draft":
            blocking = rows(
                db,
                "SELECT code FROM portal_findings WHERE version_id = ? AND severity = 'blocking'",
                [row["id"]],
            )
            hint = (
                " (validation failed: " + ", ".join(sorted({b["code"] for b in blocking})) + ")"
                if blocking
                else " (validation has not passed yet)"
            )
        raise ReviewError(
            f"cannot {action} version {row['id']} ({row['package']} {row['version_code']}): "
            f"it is {row['status']}{hint}; {action} needs {' or '.join(allowed)}"
        )


def _set_status(db: Database, version_id: str, status: str, **extra: object) -> None:
    sets = ", ".join(["status = ?", "updated = ?", *(f"{k} = ?" for k in extra)])
    db.execute(
        f"UPDATE portal_versions SET {sets} WHERE id = ?", [status, now_iso(), *extra.values(), version_id]
    )


def approve(db: Database, version_id: str, actor: str) -> dict:
    with transaction(db):
        row = _get(db, version_id)
        _refuse(db, row, "approve", ("in_review",))
        _set_status(db, version_id, "approved")
        record_event(db, version_id, actor, "approve")
    return _get(db, version_id)


def reject(db: Database, version_id: str, reason: str, actor: str) -> dict:
    if not reason.strip():
        raise ReviewError("a rejection needs a reason the developer can act on")
    with transaction(db):
        row = _get(db, version_id)
        _refuse(db, row, "reject", ("draft", "in_review", "approved"))
        _set_status(db, version_id, "rejected", reason=reason.strip())
        record_event(db, version_id, actor, "reject", reason.strip())
    return _get(db, version_id)


def parse_targets(countries: str, contexts: str) -> tuple[list[str], list[str]]:
    c = sorted({x.strip().upper() for x in countries.split(",") if x.strip()})
    v = sorted({x.strip() for x in contexts.split(",") if x.strip()})
    if not c:
        raise ReviewError("a release needs at least one country (ISO 3166-1 alpha-2, e.g. DE,AT)")
    bad = [x for x in c if not COUNTRY.match(x)] + [x for x in v if not VEHICLE_CONTEXT.match(x)]
    if bad:
        raise ReviewError(f"invalid target {bad[0]!r}: countries are two letters, contexts [A-Za-z0-9._-]")
    return c, v


def _write_sidecar(apk: Path, row: dict, countries: list[str], contexts: list[str], released: str) -> None:
    fields = {
        "status": "live",
        "version_id": row["id"],
        "countries": countries,
        "vehicle_contexts": contexts,
        "released": released,
    }
    write_sidecar(
        apk, fields, comment="Written by the CI portal when the store team released this version.", kind="apk"
    )


def release(
    db: Database,
    repo: Path,
    data: Path,
    version_id: str,
    countries: list[str],
    contexts: list[str],
    actor: str,
) -> dict:
    """Make a version live for the targets (again, to change them) and publish it to repo/."""
    with transaction(db):
        row = _get(db, version_id)
        _refuse(db, row, "release", ("approved", "live"))
        source = stored_apk(data, version_id)
        if not source.exists():
            raise ReviewError(f"the uploaded APK of version {version_id} is missing from {source.parent}")
        apk, sidecar = live_paths(repo, row["package"], row["version_code"])
        released = row["released"] if row["status"] == "live" and row["released"] else now_iso()
        _write_sidecar(apk, row, countries, contexts, released)
        if not apk.exists():
            try:
                tmp = copy_temp(apk, source, expected_sha256=row["sha256"])
                os.replace(tmp, apk)
            except ContentChangedError as exc:
                sidecar.unlink(missing_ok=True)  # no APK: its sidecar alone would only raise a warning
                raise ReviewError(
                    f"the stored APK of version {version_id} no longer matches its SHA-256"
                ) from exc
            except BaseException:
                sidecar.unlink(missing_ok=True)
                raise
            fsync_dir(apk.parent)
        _set_status(
            db,
            version_id,
            "live",
            countries=json.dumps(countries),
            vehicle_contexts=json.dumps(contexts),
            released=released,
        )
        record_event(db, version_id, actor, "release", ",".join(countries) + "|" + ",".join(contexts))
    return _get(db, version_id)


def withdraw(db: Database, repo: Path, version_id: str, actor: str) -> dict:
    with transaction(db):
        row = _get(db, version_id)
        _refuse(db, row, "withdraw", ("live",))
        apk, sidecar = live_paths(repo, row["package"], row["version_code"])
        for path in (apk, sidecar):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if apk.parent.exists():
            fsync_dir(apk.parent)
        _set_status(db, version_id, "approved", countries="[]", vehicle_contexts="[]", released=None)
        record_event(db, version_id, actor, "withdraw")
    return _get(db, version_id)


def resolve(db: Database, finding_id: str, actor: str) -> dict:
    with transaction(db):
        finding = one(db, "SELECT * FROM portal_findings WHERE id = ?", [finding_id])
        if finding is None:
            raise ReviewError(f"no finding {finding_id!r}")
        if finding["status"] != "open":
            raise ReviewError(f"finding {finding_id} ({finding['code']}) is already {finding['status']}")
        db.execute(
            "UPDATE portal_findings SET status = 'resolved', resolved = ? WHERE id = ?",
            [now_iso(), finding_id],
        )
        record_event(db, finding["version_id"], actor, "resolve", f"{finding_id} {finding['code']}")
    return {**finding, "status": "resolved"}

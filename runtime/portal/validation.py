"""Validation runs: turn an uploaded version's facts and the store's policy into findings.

The upload itself already refused what no store could take (malformed, unsigned, signature
not verifying: 422). A run looks at the rest and records findings with a code, a severity
(``info``, ``warning``, ``blocking``) and a message. A run with a blocking finding fails and the
version stays ``draft``; a run without one passes and the version goes to ``in_review``. The
first passing version of a package pins its signing certificate.

Policy lives in ``repo/depot.toml`` under ``[portal]`` (declared in :mod:`builder.settings`)::

    max_apk_bytes = 209715200           # larger: blocking apk_too_large
    warn_apk_bytes = 104857600          # larger: warning apk_large
    forbidden_permissions = ["android.permission.READ_SMS"]      # blocking permission_forbidden
    review_permissions = ["android.permission.ACCESS_FINE_LOCATION"]  # warning permission_review
    upload_limit_bytes = 2147483648     # a larger upload is cut off with 413
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from builder.errors import SettingsError
from builder.model import PortalSettings
from builder.portal.signature import MIN_SDK_V2
from builder.settings import load_settings
from runtime.clock import now_iso
from runtime.database import Database
from runtime.portal.store import new_id, one, rows, version
from runtime.storage import transaction

log = logging.getLogger("runtime.portal.endpoints")

DEBUG_DN = "CN=Android Debug, O=Android, C=US"
# The debug certificate's subject as name attributes: compared as a multiset, so the order in
# which a certificate encodes them (C, O, CN as the SDK writes them, or CN first) does not matter.
DEBUG_SUBJECT = Counter(
    {
        (NameOID.COMMON_NAME.dotted_string, "Android Debug"): 1,
        (NameOID.ORGANIZATION_NAME.dotted_string, "Android"): 1,
        (NameOID.COUNTRY_NAME.dotted_string, "US"): 1,
    }
)
DEFAULT_MAX_APK_BYTES = PortalSettings.max_apk_bytes
STALE_RUN = timedelta(seconds=60)  # a run still "running" after this was cut off by a restart


@dataclass(frozen=True)
class Policy:
    max_apk_bytes: int = DEFAULT_MAX_APK_BYTES
    warn_apk_bytes: int | None = None
    forbidden_permissions: frozenset[str] = field(default_factory=frozenset)
    review_permissions: frozenset[str] = field(default_factory=frozenset)
    upload_limit_bytes: int = PortalSettings.upload_limit_bytes  # larger bodies are cut off with 413

    @classmethod
    def of(cls, portal: PortalSettings) -> Policy:
        return cls(
            max_apk_bytes=portal.max_apk_bytes,
            warn_apk_bytes=portal.warn_apk_bytes,
            forbidden_permissions=frozenset(portal.forbidden_permissions),
            review_permissions=frozenset(portal.review_permissions),
            upload_limit_bytes=portal.upload_limit_bytes,
        )


def load_policy(repo: Path) -> Policy:
    """The ``[portal]`` table of depot.toml, typed and checked by builder.settings.

    A depot.toml that cannot be used raises SettingsError; it no longer falls back to the
    defaults. The defaults forbid no permission and allow 200 MiB, so falling back would let an
    APK that the store's own policy blocks pass validation and reach review, and nobody would
    notice but the log. Refusing is recoverable: an upload is answered 503 before anything is
    stored (the client retries), and a validation run stays ``running`` until depot.toml is
    fixed, when :func:`finish_stale_runs` completes it with the real policy."""
    return Policy.of(load_settings(repo).portal)


def subject_attributes(facts: dict[str, Any]) -> Counter[tuple[str, str]]:
    """The signer's subject as a multiset of (OID, value). Versions uploaded before the
    attributes were recorded have only the RFC 2253 string; it is parsed back with cryptography."""
    recorded = facts.get("signer_subject_attributes")
    if isinstance(recorded, list):
        return Counter((str(oid), str(value)) for oid, value in recorded)
    subject = str(facts.get("signer_subject", ""))
    try:
        name = x509.Name.from_rfc4514_string(subject.replace(", ", ","))
    except ValueError:
        return Counter()
    return Counter((a.oid.dotted_string, str(a.value)) for a in name)


def is_debug_subject(facts: dict[str, Any]) -> bool:
    return subject_attributes(facts) == DEBUG_SUBJECT


def compute_findings(row: dict[str, Any], policy: Policy) -> list[tuple[str, str, str]]:
    """(code, severity, message) for one version; ``row`` is portal_store.version()."""
    facts = json.loads(row["facts"])
    out: list[tuple[str, str, str]] = []
    if is_debug_subject(facts):
        out.append(
            (
                "debug_certificate",
                "blocking",
                f"The APK is signed with the Android debug certificate ({DEBUG_DN}). "
                "Sign it with your release key.",
            )
        )
    if facts.get("debuggable"):
        out.append(
            (
                "debuggable",
                "blocking",
                'The manifest sets android:debuggable="true". Build the release variant.',
            )
        )
    pinned = row.get("pinned_signer")
    if pinned and pinned != row["signer_sha256"]:
        out.append(
            (
                "signer_changed",
                "blocking",
                f"The signing certificate (SHA-256 {row['signer_sha256']}) differs from the one pinned "
                f"for {row['package']} ({pinned}). Sign with the original key.",
            )
        )
    schemes = facts.get("schemes", {})
    min_sdk = int(facts.get("min_sdk", 1))
    if min_sdk < MIN_SDK_V2 and not schemes.get("v1"):
        verified = ", ".join(s for s, ok in sorted(schemes.items()) if ok) or "none"
        out.append(
            (
                "min_sdk_scheme_mismatch",
                "blocking",
                f"minSdkVersion is {min_sdk}, but devices below API {MIN_SDK_V2} only check v1 (JAR) "
                f"signatures and the APK has {verified}. Add a v1 signature or raise minSdkVersion.",
            )
        )
    size = int(row["size"])
    if size > policy.max_apk_bytes:
        out.append(
            (
                "apk_too_large",
                "blocking",
                f"The APK has {size} bytes; the store accepts at most {policy.max_apk_bytes}.",
            )
        )
    elif policy.warn_apk_bytes and size > policy.warn_apk_bytes:
        out.append(
            (
                "apk_large",
                "warning",
                f"The APK has {size} bytes, more than the recommended {policy.warn_apk_bytes}.",
            )
        )
    for perm in facts.get("permissions", []):
        if perm in policy.forbidden_permissions:
            out.append(
                ("permission_forbidden", "blocking", f"The permission {perm} is not allowed in this store.")
            )
        elif perm in policy.review_permissions:
            out.append(
                (
                    "permission_review",
                    "warning",
                    f"The permission {perm} needs a justification in the store listing.",
                )
            )
    return out


def run_validation(db: Database, repo: Path, run_id: str) -> str | None:
    """Finish a running run (once, even if two processes try); returns its final status."""
    run = one(db, "SELECT * FROM portal_runs WHERE id = ?", [run_id])
    if run is None or run["status"] != "running":
        return run["status"] if run else None
    try:
        policy = load_policy(repo)
    except SettingsError as exc:  # left running: finish_stale_runs completes it once fixed
        log.error("validation run %s waits for a usable depot.toml:\n%s", run_id, exc)
        return "running"
    with transaction(db):
        row = version(db, run["version_id"])
        if row is None:
            return None
        findings = compute_findings(row, policy)
        status = "failed" if any(sev == "blocking" for _, sev, _ in findings) else "passed"
        claimed = db.execute(
            "UPDATE portal_runs SET status = ?, finished = ? WHERE id = ? AND status = 'running'",
            [status, now_iso(), run_id],
        ).rowcount
        if not claimed:
            return None
        for code, severity, message in findings:
            db.execute(
                """INSERT INTO portal_findings (id, run_id, version_id, code, severity, message, created)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                [new_id(), run_id, row["id"], code, severity, message, now_iso()],
            )
        if status == "passed":
            db.execute(
                "UPDATE portal_versions SET status = 'in_review', updated = ?"
                " WHERE id = ? AND status = 'draft'",
                [now_iso(), row["id"]],
            )
            db.execute(
                "UPDATE portal_apps SET signer_sha256 = ? WHERE id = ? AND signer_sha256 IS NULL",
                [row["signer_sha256"], row["app_id"]],
            )
    return status


def finish_stale_runs(db: Database, repo: Path, version_id: str) -> None:
    """Complete runs a restarted process left ``running`` (their background task died with it)."""
    cutoff = (datetime.now(UTC) - STALE_RUN).strftime("%Y-%m-%dT%H:%M:%SZ")
    for run in rows(
        db,
        "SELECT id FROM portal_runs WHERE version_id = ? AND status = 'running' AND created < ?",
        [version_id, cutoff],
    ):
        run_validation(db, repo, run["id"])

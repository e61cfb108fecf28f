"""The timestamp role: the one signed file a device fetches first, signed with the wall clock.

``tuf/timestamp.json`` names the current snapshot with its version, length and SHA-256, and
expires ``[trust] timestamp_hours`` after it was signed, so a device that is fed old metadata
(a freeze attack) notices within that time. It is the only metadata the clock touches, and the
only file of ``tuf/`` that a clean build may not reproduce byte for byte.

It is signed again when the snapshot it must name changed, when its key changed, or when less
than half of its validity is left: a build, ``depot sign-timestamp`` (cron, for a site synced
to a CDN) and ``depot serve`` (a background task) all apply that rule through :func:`sign`.
Its version is one more than the highest of the last one the key folder remembers and the one
in site/, so it never goes back, whichever of them signed last.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.publish import TRUST_TIMESTAMP, Output
from builder.render import fingerprint
from builder.trust.keys import KeyFolder, utc_now

if TYPE_CHECKING:
    from tuf.api.metadata import Metadata, MetaFile, Root, Timestamp

PATH = "tuf/timestamp.json"
JSON = "application/json"


def output(data: bytes) -> Output:
    """The Output of ``tuf/timestamp.json`` with these bytes (``depot sign-timestamp`` records
    the same fingerprint in the manifest, so the next build finds the file as it left it)."""
    return Output(
        path=PATH,
        fingerprint=fingerprint("tuf-timestamp", hashlib.sha256(data).hexdigest()),
        media_type=JSON,
        tier=TRUST_TIMESTAMP,
        render=lambda: data,
    )


def signed_part(data: bytes | None) -> dict[str, Any] | None:
    """The ``signed`` part of a metadata file, read as plain JSON (no signature checked)."""
    if data is None:
        return None
    try:
        signed = json.loads(data)["signed"]
    except (ValueError, KeyError, TypeError):
        return None
    return signed if isinstance(signed, dict) else None


def expires_of(signed: dict[str, Any]) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(str(signed["expires"]), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
    except (KeyError, ValueError):
        return None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def due(site: Path, hours: int, now: datetime.datetime | None = None) -> bool:
    """``site``'s timestamp is missing, unreadable, or has less than half of ``hours`` left.
    Plain JSON, no python-tuf: the no-change fast path asks this."""
    signed = signed_part(_read(site / PATH))
    expires = expires_of(signed) if signed else None
    if expires is None:
        return True
    return expires - (now or utc_now()) < datetime.timedelta(hours=hours) / 2


def sign(
    keys: KeyFolder,
    site: Path,
    snapshot: MetaFile,
    hours: int,
    root: Root | None = None,
    now: datetime.datetime | None = None,
    force: bool = False,
) -> bytes:
    """The bytes of the timestamp that names ``snapshot``: the newest one already signed (in the
    key folder or in site/) when it names that snapshot, verifies with the current root and has
    more than half of ``hours`` left, unless ``force``; else a new one, with the next version.
    The key folder remembers it."""
    from tuf.api.metadata import Metadata, Timestamp

    now = now or utc_now()
    root = root or keys.root().signed
    candidates = [data for data in (keys.last("timestamp"), _read(site / PATH)) if data is not None]
    versions = [int(s.get("version", 0)) for data in candidates if (s := signed_part(data)) is not None]
    if not force:
        for data in sorted(candidates, key=lambda d: -int((signed_part(d) or {}).get("version", 0))):
            current = _usable(data, root, snapshot)
            if current is not None and current.signed.expires - now >= datetime.timedelta(hours=hours) / 2:
                keys.remember("timestamp", data)
                return data
    signers = keys.signers("timestamp", root)
    timestamp = Timestamp(
        version=max(versions, default=0) + 1,
        expires=now + datetime.timedelta(hours=hours),
        snapshot_meta=snapshot,
    )
    md = Metadata(timestamp)
    for signer in signers:
        md.sign(signer, append=True)
    data = md.to_bytes()
    keys.remember("timestamp", data)  # before site/: a version the key folder forgot never goes back
    return data


def _usable(data: bytes, root: Root, snapshot: MetaFile) -> Metadata[Timestamp] | None:
    from tuf.api.exceptions import RepositoryError
    from tuf.api.metadata import Metadata, Timestamp

    try:
        md = Metadata[Timestamp].from_bytes(data)
        if not isinstance(md.signed, Timestamp) or md.signed.snapshot_meta != snapshot:
            return None
        root.verify_delegate("timestamp", md.signed_bytes, md.signatures)
    except (RepositoryError, ValueError, KeyError, TypeError):
        return None
    return md

"""``depot sign-timestamp``: sign ``site/tuf/timestamp.json`` again, between builds.

A site synced to a CDN has nobody to renew its timestamp: a cron job runs ``depot
sign-timestamp`` (``depot serve`` does the same from a background task, runtime/trust.py). It
holds the build lock, so it never races a build; it names the snapshot the published timestamp
names (the one site/ serves, not whatever the key folder signed last, which a killed build may
never have published); and it records the new file in the build state's manifest with the
fingerprint a build gives it, so the next build finds site/ intact (the no-change fast path
still applies) and signs its own next timestamp above this version.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path

from builder.atomic import atomic_write
from builder.build import build_lock, state_dir_for
from builder.errors import TrustError
from builder.settings import load_settings
from builder.state import STATE_FILE, BuildState
from builder.trust import timestamp
from builder.trust.keys import check_location, open_keys


def sign_timestamp(
    repo: Path,
    site: Path,
    keys: Path,
    *,
    force: bool = True,
    now: datetime.datetime | None = None,
) -> tuple[int, str] | None:
    """Sign the site's timestamp again (``force``), or only when it is due (less than half of
    ``[trust] timestamp_hours`` of repo/depot.toml left). Returns (version, expiry) of a new
    timestamp, None when none was due. TrustError when the site has no signed metadata yet."""
    from tuf.api.exceptions import RepositoryError
    from tuf.api.metadata import Metadata, Timestamp

    site = site.resolve()
    check_location(keys, repo=repo, site=site)
    folder = open_keys(keys)
    hours = load_settings(repo).trust.timestamp_hours
    with build_lock(site):
        if not force and not timestamp.due(site, hours, now):
            return None
        path = site / timestamp.PATH
        try:
            current = Metadata[Timestamp].from_bytes(path.read_bytes())
        except (OSError, ValueError, RepositoryError) as exc:
            raise TrustError(
                f"{path} cannot be read ({exc}): run depot build with the key folder first"
            ) from exc
        if not isinstance(current.signed, Timestamp):
            raise TrustError(f"{path} is not timestamp metadata: run depot build with the key folder")
        _check_published_root(folder.root().signed.version, site)
        snapshot = current.signed.snapshot_meta
        named = site / "tuf" / f"{snapshot.version}.snapshot.json"
        try:
            snapshot.verify_length_and_hashes(named.read_bytes())
        except (OSError, ValueError, RepositoryError) as exc:
            raise TrustError(
                f"{named}, which the timestamp names, is missing or changed: run depot build"
            ) from exc
        data = timestamp.sign(folder, site, snapshot, hours, now=now, force=True)
        atomic_write(path, data)
        _record(site, data)
        signed = Metadata[Timestamp].from_bytes(data).signed
        return signed.version, signed.expires.isoformat()


def _check_published_root(newest: int, site: Path) -> None:
    """A timestamp is checked against the root devices have, which is the newest one site/
    publishes. After ``depot keys rotate`` the key folder's root is newer: a timestamp signed
    with its keys would be refused by every device until a build publishes that root, so the
    timestamp is not signed until then."""
    from tuf.api.exceptions import RepositoryError
    from tuf.api.metadata import Metadata, Root

    try:
        published = Metadata[Root].from_bytes((site / "tuf" / "root.json").read_bytes()).signed.version
    except (OSError, ValueError, RepositoryError) as exc:
        raise TrustError(f"{site / 'tuf' / 'root.json'} cannot be read ({exc}): run depot build") from exc
    if published != newest:
        raise TrustError(
            f"the key folder holds root version {newest} but site/ publishes version {published}: "
            "run depot build (with the key folder) to publish it before signing a timestamp"
        )


def _record(site: Path, data: bytes) -> None:
    """Tell the build state's manifest about the new file, as a build would have recorded it."""
    state_file = state_dir_for(site) / STATE_FILE
    if not state_file.exists():
        return  # no build state: the next build sweeps and records everything anyway
    state = BuildState(state_dir_for(site), {"site": str(site)})
    try:
        row = state.output(timestamp.PATH)
        if row is None:
            return  # the next build records it
        out = timestamp.output(data)
        st = os.stat(site / out.path)
        row.fp, row.sha256 = out.fingerprint, hashlib.sha256(data).hexdigest()
        row.size, row.mtime_ns = st.st_size, st.st_mtime_ns
        state.put_output(row)
        state.commit()
    finally:
        state.close()

"""The build's trust step: the signed TUF metadata of the outputs a device reads.

It runs once the renderers' files are published and before the route table (builder/build.py
``_trust_step``, which gives it every current file of the manifest), and publishes these
outputs (docs/device-index.md, "Signed metadata (TUF)")::

    tuf/<N>.root.json        every root version of the key folder (the chain a device walks)
    tuf/root.json            the newest root, for bootstrapping a device
    tuf/<N>.targets.json     every target's length and SHA-256 (retained like a device shard)
    tuf/<N>.snapshot.json    the version, length and SHA-256 of the targets (retained too)
    tuf/timestamp.json       the version, length and SHA-256 of the snapshot (builder.trust.timestamp)

Targets are the site-relative paths of every output under ``device/`` and ``android/`` (the
device index and the Android catalog, the JSON a client reads) and every copied public package
file under ``files/`` (modules, firmware, APKs). Retained history (older device shards) is not
a target: only what the current entry names is. The files under ``files/`` and the device
shards are already named by their content, so targets are *not* hash-prefixed: a
client sets ``UpdaterConfig(prefix_targets_with_hash=False)``; the metadata itself uses
consistent snapshots (``N.targets.json``, ``N.snapshot.json``), so a client never mixes two
builds.

Targets and snapshot are a function of repo/ and the key folder, never of the clock:

- **Reuse.** When the new targets (their ``targets`` dict) equal the last signed ones of the key
  folder, that file still verifies with the current root, and its expiry would not move, its
  bytes are published again unchanged; the same for a snapshot that would name the same targets.
  So a no-change build writes nothing and a clean build with the same key folder reproduces them.
- **Versions.** Otherwise the version is one more than the highest of the last signed one and
  those site/ holds (1 for the first), so it keeps rising after site/ is wiped and after the key
  folder is restored from an older backup.
- **Expiry.** ``max(last expiry, newest input + validity)``, where the newest input is the newest
  modification time (whole seconds, UTC) of the files of repo/ the build walked (the repo folder's
  own when it has none) and the validity ``[trust] targets_days`` / ``snapshot_days``. A
  touched file therefore extends the expiry (and signs a new version) even when the content is
  the same: otherwise an unchanged store could never renew metadata about to expire.

Ed25519 signatures are deterministic, so signing the same content again gives the same bytes.
The key folder remembers what was signed before it is published: a build killed after that
publishes the same version next time, and a version the site never showed is merely skipped.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.model import TrustSettings
from builder.publish import TRUST_SNAPSHOT, TRUST_TARGETS, Output, old_size_sha
from builder.render import fingerprint
from builder.trust import timestamp
from builder.trust.keys import KeyFolder, utc_now

if TYPE_CHECKING:
    from tuf.api.metadata import Metadata, MetaFile, Root, Signed, Snapshot, Targets

JSON = "application/json"
TARGET_PREFIXES = ("device/", "android/")
WARN_DAYS = 30  # the build report warns when metadata expires sooner than this


@dataclass
class TrustResult:
    outputs: list[Output] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    targets_version: int = 0
    snapshot_version: int = 0


def is_target(out: Output) -> bool:
    """What a device reads and the targets metadata therefore vouches for."""
    if out.path.startswith("files/"):
        return out.source is not None  # the copied package files; the rest of files/ is no one's
    return out.path.startswith(TARGET_PREFIXES)


def _length_sha(
    out: Output, published: Callable[[str, str], tuple[int, str] | None] | None
) -> tuple[int, str]:
    """A target's length and SHA-256: from a copied file's fingerprint, from the manifest when the
    last build published it from the same fingerprint, else by rendering it once (the bytes are
    kept for the publish, which then does not render it again)."""
    if out.source is not None:
        return old_size_sha(out)
    known = published(out.path, out.fingerprint) if published is not None else None
    if known is not None:
        return known
    assert out.render is not None, out.path
    data = out.render()
    out.render = lambda: data
    return len(data), hashlib.sha256(data).hexdigest()


def newest_input(repo: Path, newest_mtime_ns: int | None) -> datetime.datetime:
    """The newest modification time of the files of repo/ (from the build state), whole
    seconds, UTC; the repo folder's own when it has none."""
    newest = newest_mtime_ns if newest_mtime_ns is not None else repo.stat().st_mtime_ns
    return datetime.datetime.fromtimestamp(newest // 1_000_000_000, datetime.UTC)


def _parse(data: bytes | None) -> Metadata | None:
    """The last signed metadata of a role, or None when there is none or it cannot be read (then
    versions start above nothing again; the root chain still protects devices)."""
    from tuf.api.exceptions import RepositoryError
    from tuf.api.metadata import Metadata

    if data is None:
        return None
    try:
        return Metadata.from_bytes(data)
    except (RepositoryError, ValueError, KeyError, TypeError):
        return None


def _verifies(root: Root, role: str, md: Metadata) -> bool:
    from tuf.api.exceptions import RepositoryError

    try:
        root.verify_delegate(role, md.signed_bytes, md.signatures)
    except (RepositoryError, ValueError):
        return False
    return True


def published_version(site: Path, role: str) -> int:
    """The highest version of ``role`` that site/ holds (``tuf/<N>.<role>.json``), 0 for none."""
    try:
        names = [entry.name for entry in (site / "tuf").iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    suffix = f".{role}.json"
    return max(
        (int(n[: -len(suffix)]) for n in names if n.endswith(suffix) and n[: -len(suffix)].isdigit()),
        default=0,
    )


def _sign_role(
    keys: KeyFolder,
    site: Path,
    root: Root,
    role: str,
    make: Callable[[int, datetime.datetime], Targets | Snapshot],
    newest: datetime.datetime,
    days: int,
    same: Callable[[Signed], bool],
) -> tuple[bytes, Signed]:
    """The bytes of ``role`` and what they sign: the last signed one when it can be reused (see
    the module), else a new version made by ``make(version, expires)`` and signed by every key of
    the role present (at least its threshold). The new version is above the last signed one and
    above every one site/ holds: a key folder restored from an older backup never publishes a
    version that devices which saw a newer one would refuse."""
    from tuf.api.metadata import Metadata

    data = keys.last(role)
    last = _parse(data)
    if last is not None and last.signed.type != role:
        last = None
    on_site = published_version(site, role)
    expires = newest + datetime.timedelta(days=days)
    if last is not None:
        expires = max(expires, last.signed.expires)
        if (
            data is not None
            and last.signed.version >= on_site
            and last.signed.expires == expires
            and same(last.signed)
            and _verifies(root, role, last)
        ):
            return data, last.signed
    version = max(last.signed.version if last is not None else 0, on_site)
    signers = keys.signers(role, root)
    md: Metadata[Any] = Metadata(make(version + 1, expires))
    for signer in signers:
        md.sign(signer, append=True)
    root.verify_delegate(role, md.signed_bytes, md.signatures)
    data = md.to_bytes()
    keys.remember(role, data)  # before site/: the version is spent even if the publish fails
    return data, md.signed


def _output(path: str, data: bytes, tier: int, retain: bool = False) -> Output:
    return Output(
        path=path,
        fingerprint=fingerprint("tuf", path, hashlib.sha256(data).hexdigest()),
        media_type=JSON,
        tier=tier,
        render=lambda: data,
        retain=retain,
    )


def trust_outputs(
    outputs: list[Output],
    keys: KeyFolder,
    site: Path,
    settings: TrustSettings,
    newest: datetime.datetime,
    published: Callable[[str, str], tuple[int, str] | None] | None = None,
    now: datetime.datetime | None = None,
) -> TrustResult:
    """The signed metadata of ``outputs`` (see the module): the outputs to add, and warnings
    for the build report (metadata that expires within WARN_DAYS of now)."""
    from tuf.api.metadata import Snapshot, TargetFile, Targets

    now = now or utc_now()
    result = TrustResult()
    root_md = keys.root()
    root = root_md.signed
    versions = keys.root_versions()
    for version, data in versions:
        result.outputs.append(_output(f"tuf/{version}.root.json", data, TRUST_TARGETS))
    result.outputs.append(_output("tuf/root.json", versions[-1][1], TRUST_TARGETS))

    files: dict[str, TargetFile] = {}
    for out in outputs:
        if is_target(out):
            length, sha = _length_sha(out, published)
            files[out.path] = TargetFile(length, {"sha256": sha}, out.path)
    files = dict(sorted(files.items()))

    targets_bytes, targets = _sign_role(
        keys,
        site,
        root,
        "targets",
        lambda version, expires: Targets(version=version, expires=expires, targets=files),
        newest,
        settings.targets_days,
        lambda signed: isinstance(signed, Targets) and signed.targets == files and signed.delegations is None,
    )
    result.targets_version = targets.version
    result.outputs.append(
        _output(f"tuf/{targets.version}.targets.json", targets_bytes, TRUST_TARGETS, retain=True)
    )

    meta = {"targets.json": _meta_file(targets.version, targets_bytes)}
    snapshot_bytes, snapshot = _sign_role(
        keys,
        site,
        root,
        "snapshot",
        lambda version, expires: Snapshot(version=version, expires=expires, meta=meta),
        newest,
        settings.snapshot_days,
        lambda signed: isinstance(signed, Snapshot) and signed.meta == meta,
    )
    result.snapshot_version = snapshot.version
    result.outputs.append(
        _output(f"tuf/{snapshot.version}.snapshot.json", snapshot_bytes, TRUST_SNAPSHOT, retain=True)
    )

    snapshot_meta = _meta_file(snapshot.version, snapshot_bytes)
    stamp = timestamp.sign(keys, site, snapshot_meta, settings.timestamp_hours, root=root, now=now)
    result.outputs.append(timestamp.output(stamp))

    result.warnings = expiry_warnings(keys, now)
    return result


def expiry_warnings(keys: KeyFolder, now: datetime.datetime | None = None) -> list[str]:
    """Warnings for the build report: the newest root and the last signed targets and snapshot
    of the key folder that expire within WARN_DAYS of ``now``. Plain JSON, no python-tuf (the
    no-change fast path reports them too)."""
    now = now or utc_now()
    soon = now + datetime.timedelta(days=WARN_DAYS)
    warnings = []
    for role in ("root", "targets", "snapshot"):
        data = keys.root_versions()[-1][1] if role == "root" else keys.last(role)
        signed = timestamp.signed_part(data)
        expires = timestamp.expires_of(signed) if signed else None
        if signed is None or expires is None or expires >= soon:
            continue
        what = "expired" if expires <= now else "expires"
        hint = (
            "sign a new root version with the root keys (depot keys renew)"
            if role == "root"
            else f"change or touch a file of repo/ and build, or raise [trust] {role}_days"
        )
        warnings.append(
            f"TUF {role} metadata (version {signed.get('version')}) {what} {expires.isoformat()}: {hint}"
        )
    return warnings


def _meta_file(version: int, data: bytes) -> MetaFile:
    from tuf.api.metadata import MetaFile

    return MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})

"""The key folder: the private keys of the four TUF roles and the metadata they signed.

Layout (``./keys`` by default, ``--keys DIR`` or ``DEPOT_KEYS`` otherwise)::

    keys/                          mode 0700; never inside repo/ or site/
      root/<keyid>.pem             Ed25519 private keys, PKCS#8 PEM, unencrypted, mode 0600
      targets/<keyid>.pem          (the keyid is the TUF keyid: SHA-256 of the canonical public key)
      snapshot/<keyid>.pem
      timestamp/<keyid>.pem
      metadata/<N>.root.json       every signed root version: the trust history, all published
      metadata/targets.json        the last signed targets, snapshot and timestamp, so that their
      metadata/snapshot.json       versions go on rising after site/ is wiped (a device that saw
      metadata/timestamp.json      version 7 refuses a new version 1)
      retired/<role>/<keyid>.pem   keys a rotation replaced, for a person to destroy

Why files and not a key server: the build machine needs the targets, snapshot and timestamp keys
online anyway (every build signs), and a folder is what an operator can back up, move and
inspect. The root keys are needed only by ``depot keys init`` and ``depot keys rotate``: move
``keys/root/`` to offline storage after that (the build reads only ``metadata/*.root.json``).

Every root version N+1 is signed by a threshold of the root keys of version N *and* of its own
root keys (TUF specification 5.3.4), so a device that trusts any earlier root walks the chain
``2.root.json``, ``3.root.json``, ... to the newest. Root metadata expires ``ROOT_DAYS`` after
it was signed (wall clock: root is made by a person, not by the build).

The root's *fingerprint* that ``depot keys init`` prints is the SHA-256 of the exact bytes of
``1.root.json``: what a person compares after copying the file to a device (``sha256sum``).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.atomic import atomic_write, fsync_dir
from builder.errors import TrustError

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, Root

ROLES = ("root", "targets", "snapshot", "timestamp")
ROOT_DAYS = 365
METADATA = "metadata"
RETIRED = "retired"


def utc_now() -> datetime.datetime:
    """The wall clock in whole seconds, UTC (tests move it)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def fingerprint(data: bytes) -> str:
    """The fingerprint of a root: the SHA-256 of the file's exact bytes."""
    return hashlib.sha256(data).hexdigest()


def check_location(folder: Path, **others: Path) -> None:
    """Refuse a key folder inside (or equal to) one of ``others`` (``repo=...``, ``site=...``):
    repo/ is copied around and read by readers, site/ is published to the world."""
    resolved = folder.resolve()
    for name, other in others.items():
        where = other.resolve()
        if resolved == where or resolved.is_relative_to(where):
            raise TrustError(
                f"the key folder {folder} is inside the {name} folder {other}: private keys would be "
                f"published or copied with it; keep it elsewhere (--keys DIR)"
            )


@dataclass
class KeyFolder:
    """An existing key folder (see :func:`open_keys`)."""

    path: Path

    def root_versions(self) -> list[tuple[int, bytes]]:
        """Every signed root, oldest first: (version, the file's bytes)."""
        found = []
        for file in (self.path / METADATA).glob("*.root.json"):
            head = file.name.split(".", 1)[0]
            if head.isdigit():
                found.append((int(head), file.read_bytes()))
        found.sort()
        if not found or [v for v, _ in found] != list(range(1, len(found) + 1)):
            raise TrustError(
                f"{self.path / METADATA} must hold 1.root.json, 2.root.json, ... without gaps "
                "(restore it from the backup of the key folder)"
            )
        return found

    def root(self) -> Metadata[Root]:
        """The newest root."""
        from tuf.api.metadata import Metadata, Root

        return Metadata[Root].from_bytes(self.root_versions()[-1][1])

    def last(self, role: str) -> bytes | None:
        """The bytes of the last ``role``.json the build signed, or None."""
        try:
            return (self.path / METADATA / f"{role}.json").read_bytes()
        except FileNotFoundError:
            return None

    def remember(self, role: str, data: bytes) -> None:
        """Keep ``data`` as the last signed ``role``.json (written only when it changed)."""
        if self.last(role) != data:
            atomic_write(self.path / METADATA / f"{role}.json", data)

    def signers(
        self, role: str, root: Root | None = None, *, need_threshold: bool = True
    ) -> list[CryptoSigner]:
        """A signer for every private key of ``role`` in the folder that the root names; with
        ``need_threshold``, TrustError when there are fewer than the role's threshold."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from securesystemslib.signer import CryptoSigner, SSlibKey

        root = root or self.root().signed
        delegation = root.roles[role]
        signers = []
        for keyid in sorted(delegation.keyids):
            file = self.path / role / f"{keyid}.pem"
            try:
                mode = file.stat().st_mode
            except FileNotFoundError:
                continue
            if stat.S_IMODE(mode) & 0o077:
                raise TrustError(f"{file} may be read by others: chmod 600 it (and keep the folder 0700)")
            public = root.keys[keyid]
            assert isinstance(public, SSlibKey)
            try:
                signers.append(CryptoSigner(load_pem_private_key(file.read_bytes(), None), public))
            except ValueError as exc:  # not a PEM key, or not the key the root names
                raise TrustError(f"{file} is not the private key of {role} key {keyid}: {exc}") from exc
        if need_threshold and len(signers) < delegation.threshold:
            raise TrustError(
                f"the {role} role needs {delegation.threshold} of its keys to sign, but {self.path / role} "
                f"holds {len(signers)} of them ({', '.join(k[:12] for k in sorted(delegation.keyids))})"
            )
        return signers


def open_keys(folder: Path) -> KeyFolder:
    """The key folder at ``folder``; TrustError when it is not one."""
    if not (folder / METADATA / "1.root.json").is_file():
        raise TrustError(f"{folder} is not a key folder (no {METADATA}/1.root.json): run depot keys init")
    return KeyFolder(folder)


def _write_private(folder: Path, role: str, signer: CryptoSigner) -> Path:
    """Write a new private key file, mode 0600, refusing to replace any file."""
    target = folder / role
    target.mkdir(mode=0o700, exist_ok=True)
    path = target / f"{signer.public_key.keyid}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, signer.private_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(target)
    return path


def _sign_root(root: Root, signers: Iterable[CryptoSigner]) -> Metadata[Root]:
    from tuf.api.metadata import Metadata

    md = Metadata(root)
    done = set()
    for signer in signers:
        if signer.public_key.keyid not in done:
            md.sign(signer, append=True)
            done.add(signer.public_key.keyid)
    return md


def init_keys(
    folder: Path,
    *,
    root_keys: int = 1,
    root_threshold: int = 1,
    targets_keys: int = 1,
    targets_threshold: int = 1,
    now: datetime.datetime | None = None,
) -> str:
    """Create a key folder: fresh Ed25519 keys for the four roles (``root_keys`` and
    ``targets_keys`` of the first two, one each of snapshot and timestamp) and ``1.root.json``
    (consistent snapshots, the thresholds asked, expiry ROOT_DAYS from now), signed by every root
    key. Returns the root's fingerprint. Refuses an existing folder that is not empty; the folder
    appears whole or not at all (it is assembled under a temporary name)."""
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Root

    for role, keys, threshold in (
        ("root", root_keys, root_threshold),
        ("targets", targets_keys, targets_threshold),
    ):
        if not 1 <= threshold <= keys:
            raise TrustError(
                f"the {role} threshold must be from 1 to the number of {role} keys ({keys}), not {threshold}"
            )
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise TrustError(f"{folder} already exists: refusing to overwrite a key folder (pick another --keys)")
    now = now or utc_now()
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        os.chmod(work, 0o700)
        root = Root(expires=now + datetime.timedelta(days=ROOT_DAYS), consistent_snapshot=True)
        root_signers = []
        for role, count in (
            ("root", root_keys),
            ("targets", targets_keys),
            ("snapshot", 1),
            ("timestamp", 1),
        ):
            for _ in range(count):
                signer = CryptoSigner.generate_ed25519()
                root.add_key(signer.public_key, role)
                _write_private(work, role, signer)
                if role == "root":
                    root_signers.append(signer)
        root.roles["root"].threshold = root_threshold
        root.roles["targets"].threshold = targets_threshold
        data = _sign_root(root, root_signers).to_bytes()
        (work / METADATA).mkdir(mode=0o700)
        (work / RETIRED).mkdir(mode=0o700)
        atomic_write(work / METADATA / "1.root.json", data)
        if folder.exists():
            folder.rmdir()  # the empty folder the caller made
        os.rename(work, folder)
        fsync_dir(folder.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return fingerprint(data)


def new_root(
    folder: Path,
    replace: dict[str, list[str]],
    *,
    now: datetime.datetime | None = None,
) -> int:
    """Sign root version N+1: for each role of ``replace``, its keyids listed there get fresh
    keys (the old private keys move to ``retired/<role>/``); with nothing to replace it only
    renews the expiry. Signed by every root key of version N present (at least its threshold)
    and every root key of N+1 present (at least its threshold): spec 5.3.4. Returns N+1."""
    from securesystemslib.signer import CryptoSigner
    from tuf.api.exceptions import UnsignedMetadataError

    keys = open_keys(folder)
    old = keys.root()
    old_signers = keys.signers("root", old.signed)
    root = copy.deepcopy(old.signed)
    root.version += 1
    root.expires = (now or utc_now()) + datetime.timedelta(days=ROOT_DAYS)
    fresh: list[tuple[str, CryptoSigner]] = []
    retire: list[tuple[str, str]] = []
    for role, keyids in replace.items():
        if role not in ROLES:
            raise TrustError(f"no role {role!r}: one of {', '.join(ROLES)}")
        for keyid in keyids:
            if keyid not in root.roles[role].keyids:
                raise TrustError(f"{keyid} is not a key of the {role} role")
            root.revoke_key(keyid, role)
            signer = CryptoSigner.generate_ed25519()
            root.add_key(signer.public_key, role)
            fresh.append((role, signer))
            retire.append((role, keyid))
    new_root_signers = [s for role, s in fresh if role == "root"]
    kept = [s for s in old_signers if s.public_key.keyid in root.roles["root"].keyids]
    md = _sign_root(root, [*old_signers, *new_root_signers])
    try:
        old.signed.verify_delegate("root", md.signed_bytes, md.signatures)  # a threshold of the old root keys
        md.signed.verify_delegate("root", md.signed_bytes, md.signatures)  # a threshold of the new ones
    except UnsignedMetadataError as exc:
        raise TrustError(
            f"root version {root.version} cannot be signed by a threshold of the old and of the new root "
            f"keys ({len(old_signers)} old, {len(kept) + len(new_root_signers)} new present): {exc}"
        ) from exc
    # New private keys first (files no root names yet are ignored), then the root that names
    # them, then the old keys out of the way: a crash anywhere leaves a usable folder.
    for role, signer in fresh:
        _write_private(folder, role, signer)
    atomic_write(folder / METADATA / f"{root.version}.root.json", md.to_bytes())
    for role, keyid in retire:
        source = folder / role / f"{keyid}.pem"
        if source.exists():
            target = folder / RETIRED / role
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.replace(source, target / source.name)
            fsync_dir(target)
            fsync_dir(source.parent)
    return root.version


def rotate(folder: Path, role: str, *, keyid: str | None = None, now: datetime.datetime | None = None) -> int:
    """Give ``role`` fresh keys: every key of the role, or only ``keyid``. Writes root version
    N+1 and returns it. The next build re-signs the role's metadata with the new keys."""
    if role not in ROLES:
        raise TrustError(f"no role {role!r}: one of {', '.join(ROLES)}")
    keyids = sorted(open_keys(folder).root().signed.roles[role].keyids)
    if keyid is not None:
        matches = [k for k in keyids if k.startswith(keyid)]
        if len(matches) != 1:
            raise TrustError(f"{keyid!r} names {len(matches)} keys of the {role} role, not one")
        keyids = matches
    return new_root(folder, {role: keyids}, now=now)


def describe(folder: Path) -> dict[str, Any]:
    """What ``depot keys show`` prints: fingerprints, versions, roles, keyids (with whether the
    private key is present), thresholds and expiries."""
    from tuf.api.metadata import Metadata

    keys = open_keys(folder)
    versions = keys.root_versions()
    root = keys.root().signed
    info: dict[str, Any] = {
        "folder": str(folder),
        "fingerprint_1_root": fingerprint(versions[0][1]),
        "fingerprint_root": fingerprint(versions[-1][1]),
        "root_version": root.version,
        "root_expires": root.expires.isoformat(),
        "consistent_snapshot": root.consistent_snapshot,
        "roles": {},
    }
    for role in ROLES:
        delegation = root.roles[role]
        entry: dict[str, Any] = {
            "threshold": delegation.threshold,
            "keys": {k: (folder / role / f"{k}.pem").exists() for k in sorted(delegation.keyids)},
        }
        last = keys.last(role)
        if role != "root" and last is not None:
            signed = Metadata.from_bytes(last).signed
            entry.update(version=signed.version, expires=signed.expires.isoformat())
        info["roles"][role] = entry
    return info


def renew_root(folder: Path, *, now: datetime.datetime | None = None) -> int:
    """Sign root version N+1 with the same keys and a new expiry (ROOT_DAYS from now)."""
    return new_root(folder, {}, now=now)


def folder_state(folder: Path) -> str:
    """A digest of what the build reads from the key folder (its path, and the size and mtime of
    every key and root file), for the no-change fast path. The last signed targets, snapshot and
    timestamp are the build's own output and left out, so writing them does not make the next
    build a full one."""
    own = {f"{METADATA}/{role}.json" for role in ROLES}
    rows = [str(folder.resolve())]
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != RETIRED)
        rel = os.path.relpath(dirpath, folder).replace(os.sep, "/")
        for name in sorted(files):
            path = name if rel == "." else f"{rel}/{name}"
            if path in own or name.startswith("."):
                continue
            st = os.stat(os.path.join(dirpath, name))
            rows.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()

"""The runtime's view of OTA builds in repo/builds/: finding them by name or id, and writing
their sidecars. repo/ is the source of truth, so these read the files, not a copy in the DB."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from builder.atomic import atomic_write
from builder.errors import FormatError
from builder.hashing import sha256_file
from builder.shipper.ota import (
    CHECKSUM_SUFFIX,
    build_id_of,
    checksum_line,
    iter_build_files,
    missing_checksums,
)
from builder.sidecars import read_sidecar, write_sidecar

# A build's file_name as it appears in URLs and request bodies: one path segment, no tricks.
STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,250}$")


def safe_stem(stem: str) -> bool:
    return bool(STEM.match(stem)) and ".." not in stem


def find_by_stem(repo: Path, stem: str, codename: str | None = None) -> tuple[str, Path] | None:
    """(codename, zip path) of the build called ``stem`` (its file name without ``.zip``)."""
    if not safe_stem(stem) or (codename is not None and not safe_stem(codename)):
        return None
    root = repo / "builds"
    if not root.is_dir():
        return None
    folders = [codename] if codename is not None else sorted(os.listdir(root))
    for folder in folders:
        path = root / folder / f"{stem}.zip"
        if not folder.startswith(".") and path.is_file() and not path.is_symlink():
            return folder, path
    return None


def find_by_id(repo: Path, build_id: int) -> tuple[str, Path] | None:
    for codename, path in iter_build_files(repo):
        try:
            if build_id_of(codename, path.name, read_sidecar(path)) == build_id:
                return codename, path
        except FormatError:
            continue
    return None


def build_id_for(codename: str, path: Path) -> int:
    return build_id_of(codename, path.name, read_sidecar(path))


def is_enabled(path: Path) -> bool:
    """What the builder decides: a sidecar it refuses (enabled = "no") publishes nothing."""
    try:
        return bool(read_sidecar(path, "ota-build")["enabled"])
    except FormatError:
        return False


def update_sidecar(zip_path: Path, **changes: Any) -> None:
    """Set keys of ``<zip>.toml``, keeping the others (and their TOML types); atomically."""
    data = read_sidecar(zip_path)  # as written: the maintainer's own keys are kept
    data.update(changes)
    write_sidecar(zip_path, data, kind="ota-build")


def write_checksum(zip_path: Path, sha256: str) -> None:
    atomic_write(zip_path.with_name(zip_path.name + CHECKSUM_SUFFIX), checksum_line(sha256, zip_path.name))


def fill_missing_checksums(repo: Path) -> list[Path]:
    """Write the ``.sha256`` sidecar of every zip that has none (the builder never writes into
    repo/, so the runtime does it before it asks for a build). Returns the zips it hashed."""
    done = []
    for path in missing_checksums(repo):
        try:
            _size, digest = sha256_file(path)
        except OSError:
            continue
        write_checksum(path, digest)
        done.append(path)
    return done

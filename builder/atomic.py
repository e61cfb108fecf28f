"""Crash-safe file writes shared by the builder and the runtime.

Every write that matters goes temp file → fsync → rename, and the folder is fsynced after the
rename, so a process killed at any instant leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(target: Path, fill: Callable[[BinaryIO], object], sync: bool) -> Path:
    """A hidden temporary file in ``target``'s folder (so the rename cannot cross file
    systems), filled by ``fill``; removed again if anything fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def write_temp(target: Path, data: bytes, sync: bool = True) -> Path:
    """Write ``data`` to a temporary file beside ``target`` and return its path."""
    return _temp_beside(target, lambda f: f.write(data), sync)


class ContentChangedError(Exception):
    """A copied file's bytes are not the ones its caller verified: it changed in between."""


def copy_temp(target: Path, source: Path, sync: bool = True, expected_sha256: str | None = None) -> Path:
    """Copy ``source`` to a temporary file beside ``target`` (then rename it into place).

    With ``expected_sha256`` the bytes are hashed on the way and ContentChangedError is raised (the
    temporary file removed) when they are not the ones expected: a file replaced between
    being checked and being copied must not land under a name that vouches for other bytes."""

    # Opened first: a source that is gone raises (an OSError naming it) before any temporary
    # file or folder exists beside the target.
    with source.open("rb") as src:

        def copy(out: BinaryIO) -> None:
            digest = hashlib.sha256()
            while block := src.read(1 << 20):
                digest.update(block)
                out.write(block)
            if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
                raise ContentChangedError(f"{source} changed while it was being published")

        return _temp_beside(target, copy, sync)


def atomic_write(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` so that readers see the old bytes or the new, never a mix."""
    tmp = write_temp(target, data)
    os.replace(tmp, target)
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_open(target: Path) -> Iterator[object]:
    """Stream into ``target`` atomically: yields a binary file; renamed into place on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temps(root: Path) -> int:
    """Delete temporary files a killed writer left behind below ``root``; returns the count."""
    removed = 0
    if not root.exists():
        return 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
    return removed

"""Streaming uploads: bounded memory, size limit, hashed on the way, visible only when complete.

The body goes to a temporary file in the data folder (``<data>/incoming/<dialect>/``), never in
repo/: a process killed mid-upload must not leave half a package among the packages, nor in a
backup of repo/. Only :func:`commit` or :func:`place` makes it visible, after the caller has
verified it; any failure, including the client hanging up, removes the temporary file, and what
a killed process left is swept by age (:func:`sweep_stale`) at start and before each upload.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from builder.atomic import TEMP_PREFIX, copy_temp, fsync_dir
from runtime.errors import InsufficientStorageError

INCOMING = "incoming"
STALE_AFTER = 3600.0  # seconds: older temp files belong to no upload still running (uploads time out)


RESERVE = 64 * 1024**2  # bytes kept free on the data folder's disk for the database and builds


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def check_room(folder: Path, needed: int) -> None:
    """Refuse an upload that declares more bytes than the disk can take, before any is kept."""
    if needed + RESERVE > free_bytes(folder):
        raise InsufficientStorageError(f"{needed} bytes do not fit on the disk of {folder}")


def incoming_folder(data: Path, dialect: str) -> Path:
    """Where a dialect's uploads are spooled before they are verified."""
    folder = data / INCOMING / dialect
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sweep_stale(folder: Path, max_age: float = STALE_AFTER, now: float | None = None) -> int:
    """Delete temporary files older than ``max_age`` in ``folder`` (not below it): what killed
    uploads left. Younger ones may belong to an upload another process is receiving."""
    if not folder.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - max_age
    removed = 0
    for entry in os.scandir(folder):
        if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
    return removed


def place(source: Path, target: Path) -> Path:
    """Move a verified file from the data folder to ``target`` in one step that readers see
    whole: a rename when both are on one file system, else a copy to a temporary name beside the
    target (fsynced) and a rename. ``source`` is gone afterwards."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = copy_temp(target, source)
        try:
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        source.unlink()
    fsync_dir(target.parent)
    return target


class UploadTooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


class UploadIncompleteError(Exception):
    """The body ended before the announced Content-Length."""


@dataclass
class ReceivedFile:
    path: Path  # temporary name; pass to commit() or discard()
    size: int
    sha256: str

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def receive_to_temp(
    chunks: AsyncIterator[bytes],
    folder: Path,
    max_bytes: int,
    expected_size: int | None = None,
) -> ReceivedFile:
    """Write ``chunks`` to a temporary file in ``folder``; raise UploadTooLargeError past
    ``max_bytes`` and UploadIncompleteError when fewer than ``expected_size`` bytes came."""
    folder.mkdir(parents=True, exist_ok=True)
    if expected_size is not None and expected_size > max_bytes:
        raise UploadTooLargeError(max_bytes)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLargeError(max_bytes)
                digest.update(chunk)
                f.write(chunk)
            if expected_size is not None and size != expected_size:
                raise UploadIncompleteError(f"received {size} of {expected_size} bytes")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    return ReceivedFile(path, size, digest.hexdigest())


def commit(received: ReceivedFile, target: Path) -> Path:
    """Move a verified upload to its final name in one rename, durably."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(received.path, target)
    fsync_dir(target.parent)
    return target

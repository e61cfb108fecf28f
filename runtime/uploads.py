"""Streaming uploads: bounded memory, size limit, hashed on the way, visible only when complete.

The body goes to a temporary file in the destination's folder (so the final rename cannot cross
file systems). Only :func:`commit` makes it visible, after the caller has verified it; any
failure, including the client hanging up, removes the temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from builder.atomic import TEMP_PREFIX, fsync_dir


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

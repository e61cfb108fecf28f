"""Content hashing: SHA-256 of files and of streams as they are read.

Package files are named by their SHA-256 in site/files/, the device agent checks what it
downloaded against it, and uploads hash on the way to disk; all of them hash here.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


class HashingReader(io.RawIOBase):
    """A read-only stream that hashes and counts every byte read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.size += n
        return n


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> tuple[int, str]:
    """Size and SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
            if progress:
                progress(len(block))
    return size, digest.hexdigest()

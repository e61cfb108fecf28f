"""Streaming uploads: bounded memory, size limit, hashed on the way, visible only when complete.

The body goes to a temporary file in the data folder (``<data>/incoming/<dialect>/``), never in
repo/: a process killed mid-upload must not leave half a package among the packages, nor in a
backup of repo/. Only :func:`commit` or :func:`place` makes it visible, after the caller has
verified it; any failure, including the client hanging up, removes the temporary file, and what
a killed process left is swept by age (:func:`sweep_stale`) at start and before each upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

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


BATCH = 256 << 10  # bytes handed to the worker thread at once (the body arrives in pieces of about 64 KiB)
WRITEBACK_EVERY = 32 << 20  # start the disk writing this often, so a final fsync has little left to wait for


def _sync_file_range() -> Any:
    """libc's ``sync_file_range`` (Linux), or None: Python's os module does not offer it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return function


_SYNC_FILE_RANGE = _sync_file_range()
SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes from ``offset`` to the disk, without
    waiting (``sync_file_range(SYNC_FILE_RANGE_WRITE)``). Not a durability point: it keeps the
    dirty pages of a large upload few, so the one fsync at its end is short whatever its size."""
    if _SYNC_FILE_RANGE is not None and length > 0:
        _SYNC_FILE_RANGE(fd, offset, length, SYNC_FILE_RANGE_WRITE)  # a failure only means no head start


class HashedWriter:
    """Write a stream of byte pieces into ``fd`` from ``offset`` on, hashing every byte with
    ``digests`` (hashlib objects), off the event loop.

    Pieces are gathered into batches of :data:`BATCH` bytes; each batch is written (``pwritev``,
    no joining copy) and hashed in a worker thread while the event loop receives the next one,
    so at most two batches are held in memory and there is one thread hop per batch, not per
    piece. hashlib and the write release the GIL, so hashing and disk run beside the HTTP
    parsing. Every :data:`WRITEBACK_EVERY` bytes the kernel is asked to start writing them out.
    Call :meth:`close` (or :meth:`abort` on failure) before closing ``fd``: a batch may still be
    in flight."""

    def __init__(self, fd: int, offset: int, digests: tuple[Any, ...]) -> None:
        self.fd, self.start, self.offset, self.digests = fd, offset, offset, digests
        self._pieces: list[bytes | memoryview] = []
        self._held = 0
        self._flight: asyncio.Future[None] | None = None
        self._written_back = offset

    @property
    def size(self) -> int:
        """Bytes taken so far (written or about to be)."""
        return self.offset + self._held - self.start

    async def write(self, piece: bytes | memoryview) -> None:
        if not piece:
            return
        self._pieces.append(piece)
        self._held += len(piece)
        if self._held >= BATCH:
            await self._hand_over()

    async def _hand_over(self) -> None:
        pieces, at = self._pieces, self.offset
        self._pieces, self.offset, self._held = [], self.offset + self._held, 0
        if self._flight is not None:
            flight, self._flight = self._flight, None
            await flight
        if pieces:
            self._flight = asyncio.ensure_future(run_in_threadpool(self._put, pieces, at))

    def _put(self, pieces: list[bytes | memoryview], at: int) -> None:
        total = sum(len(p) for p in pieces)
        if len(pieces) > 256:  # a trickle of tiny pieces: fewer than the system's IOV_MAX buffers
            pieces = [b"".join(pieces)]
        done = os.pwritev(self.fd, pieces, at)
        if done < total:  # a short write (rare): the rest, one piece at a time
            rest = memoryview(b"".join(pieces))[done:]
            while rest:
                n = os.pwrite(self.fd, rest, at + done)
                rest, done = rest[n:], done + n
        for digest in self.digests:
            for piece in pieces:
                digest.update(piece)
        end = at + total
        if end - self._written_back >= WRITEBACK_EVERY:
            start_writeback(self.fd, self._written_back, end - self._written_back)
            self._written_back = end

    async def close(self) -> int:
        """Write what is held and wait for it; returns the bytes written since ``offset``."""
        await self._hand_over()
        if self._flight is not None:
            flight, self._flight = self._flight, None
            await flight
        return self.offset - self.start

    async def abort(self) -> None:
        """Wait for a batch in flight, ignoring its failure (the caller is failing already)."""
        self._pieces, self._held = [], 0
        if self._flight is not None:
            flight, self._flight = self._flight, None
            with contextlib.suppress(Exception):
                await asyncio.shield(flight)


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


@dataclass
class TempUpload:
    """A temporary file being written through a HashedWriter (see :func:`hashed_temp`)."""

    path: Path
    fd: int
    writer: HashedWriter
    digest: Any
    size: int = 0

    async def close(self) -> int:
        """Write what is held and wait for it; the bytes written."""
        self.size = await self.writer.close()
        return self.size

    def received(self) -> ReceivedFile:
        return ReceivedFile(self.path, self.size, self.digest.hexdigest())


@contextlib.asynccontextmanager
async def hashed_temp(folder: Path) -> AsyncIterator[TempUpload]:
    """A temporary file in ``folder``, hashed (SHA-256) as it is written. The caller writes,
    calls ``close()`` and checks what it must; when the block ends normally the bytes are made
    durable (the caller moves the file into place next), and when it raises the write in flight
    is abandoned and the file removed."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
    digest = hashlib.sha256()
    upload = TempUpload(Path(name), fd, HashedWriter(fd, 0, (digest,)), digest)
    try:
        try:
            yield upload
            await run_in_threadpool(os.fsync, fd)
        except BaseException:
            await upload.writer.abort()
            raise
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            upload.path.unlink()
        raise


async def receive_to_temp(
    chunks: AsyncIterator[bytes],
    folder: Path,
    max_bytes: int,
    expected_size: int | None = None,
) -> ReceivedFile:
    """Write ``chunks`` to a temporary file in ``folder``; raise UploadTooLargeError past
    ``max_bytes`` and UploadIncompleteError when fewer than ``expected_size`` bytes came."""
    if expected_size is not None and expected_size > max_bytes:
        raise UploadTooLargeError(max_bytes)
    async with hashed_temp(folder) as upload:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLargeError(max_bytes)
            await upload.writer.write(chunk)
        await upload.close()
        if expected_size is not None and size != expected_size:
            raise UploadIncompleteError(f"received {size} of {expected_size} bytes")
    return upload.received()


def commit(received: ReceivedFile, target: Path) -> Path:
    """Move a verified upload to its final name in one rename, durably."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(received.path, target)
    fsync_dir(target.parent)
    return target

"""Safe unpacking of a module tarball into a staging folder.

Every member passes the same check the builder applies (``member_problem``: no absolute paths,
no ``..``, no links out of the archive, no device files), and the agent adds what only the
unpacking side can enforce: the real path of every parent folder stays inside the staging folder
(so a link made by an earlier member cannot be followed out), files are created with
``O_EXCL | O_NOFOLLOW``, and the bytes written are counted against a limit so a gzip bomb stops
at the limit instead of filling the disk.

Modes: a file keeps the archive's permission bits minus set-uid, set-gid, sticky and
group/other write (``mode & 0o755``), further narrowed by the agent's umask; nothing is ever
added, so a 0600 file stays 0600. A folder gets the same, plus ``u+rwx`` (the agent itself must
fill and later delete it); folders the archive does not list are 0755.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from builder.tarsafe import member_problem

BLOCK = 1 << 20
KEPT_BITS = 0o755  # no set-id, no sticky, no group/other write


def file_mode(archive_mode: int) -> int:
    return archive_mode & KEPT_BITS


def folder_mode(archive_mode: int) -> int:
    return (archive_mode & KEPT_BITS) | 0o700


class UnsafeArchiveError(Exception):
    """The archive may not be installed; the message says which entry and why."""


@dataclass
class Unpacked:
    files: int
    bytes: int


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def safe_unpack(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int,
    progress: Callable[[int], None] | None = None,
) -> Unpacked:
    """Unpack ``archive`` (.tar.gz) into the empty folder ``dest``; raises UnsafeArchiveError."""
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    written = 0
    files = 0
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    problem = member_problem(member)
                    if problem:
                        raise UnsafeArchiveError(problem)
                    parts = [p for p in member.name.replace("\\", "/").split("/") if p not in ("", ".")]
                    if not parts:
                        continue  # the archive's own "./"
                    target = os.path.join(root, *parts)
                    parent = os.path.realpath(os.path.dirname(target))
                    if not _inside(parent, root):
                        raise UnsafeArchiveError(
                            f"entry {member.name!r} would be written outside the module folder"
                        )
                    if member.isdir():
                        _make_dir(target, member.name, folder_mode(member.mode))
                        continue
                    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                    if os.path.lexists(target):
                        raise UnsafeArchiveError(f"entry {member.name!r} appears twice")
                    if member.issym():
                        os.symlink(member.linkname, target)
                        if not _inside(os.path.realpath(target), root):
                            os.unlink(target)
                            raise UnsafeArchiveError(
                                f"entry {member.name!r} is a link that resolves outside the archive"
                            )
                        files += 1
                        continue
                    if written + max(member.size, 0) > max_bytes:
                        raise UnsafeArchiveError(f"archive expands past the limit of {max_bytes} bytes")
                    mode = file_mode(member.mode)
                    if member.islnk():
                        source = os.path.realpath(os.path.join(root, *member.linkname.split("/")))
                        if not _inside(source, root) or not os.path.isfile(source):
                            raise UnsafeArchiveError(
                                f"entry {member.name!r} is a hard link to a missing file"
                            )
                        written += os.path.getsize(source)
                        if written > max_bytes:
                            raise UnsafeArchiveError(f"archive expands past the limit of {max_bytes} bytes")
                        with open(source, "rb") as original:
                            _write_file(target, mode, iter(lambda: original.read(BLOCK), b""))
                    else:
                        stream = tar.extractfile(member)

                        def blocks(stream: IO[bytes] | None = stream) -> Iterator[bytes]:
                            nonlocal written
                            while stream is not None and (block := stream.read(BLOCK)):
                                written += len(block)
                                if written > max_bytes:
                                    raise UnsafeArchiveError(
                                        f"archive expands past the limit of {max_bytes} bytes"
                                    )
                                yield block
                                if progress:
                                    progress(len(block))

                        _write_file(target, mode, blocks())
                    files += 1
            while gz.read(BLOCK):  # the gzip trailer's CRC and length are checked here
                pass
    except UnsafeArchiveError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnsafeArchiveError(f"truncated or malformed archive ({exc or type(exc).__name__})") from exc
    if files == 0:
        raise UnsafeArchiveError("empty archive")
    _sync_tree(dest)
    return Unpacked(files, written)


def _write_file(target: str, mode: int, blocks: Iterable[bytes]) -> None:
    """Create ``target`` (never through a link) with ``mode`` (the umask applies), write and
    fsync it through the same descriptor: the file may be unreadable to the agent afterwards."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as out:
        for block in blocks:
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def _make_dir(target: str, name: str, mode: int) -> None:
    if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
        raise UnsafeArchiveError(f"entry {name!r} replaces a file or link with a folder")
    if os.path.isdir(target):  # made earlier for a member inside it: now it gets its own mode
        os.chmod(target, mode & ~_umask())
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.mkdir(target, mode)  # the umask applies


def _umask() -> int:
    """The process umask, read without changing it (other threads create files meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _sync_tree(dest: Path) -> None:
    """fsync every folder (files were fsynced as they were written), so the rename that
    activates them publishes durable bytes."""
    for dirpath, _dirs, _names in os.walk(dest):
        fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

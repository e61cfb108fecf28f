"""Safe unpacking of a module tarball into a staging folder.

Every member passes the same check the builder applies (``member_problem``: no absolute paths,
no ``..``, no links out of the archive, no device files), and the agent adds what only the
unpacking side can enforce: the real path of every parent folder stays inside the staging folder
(so a link made by an earlier member cannot be followed out), files are created with
``O_EXCL | O_NOFOLLOW``, set-id bits are dropped, and the bytes written are counted against a
limit so a gzip bomb stops at the limit instead of filling the disk.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.tarsafe import member_problem

BLOCK = 1 << 20


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
                        _make_dir(target, member.name)
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
                    mode = 0o755 if member.mode & 0o111 else 0o644
                    if member.islnk():
                        source = os.path.realpath(os.path.join(root, *member.linkname.split("/")))
                        if not _inside(source, root) or not os.path.isfile(source):
                            raise UnsafeArchiveError(
                                f"entry {member.name!r} is a hard link to a missing file"
                            )
                        written += os.path.getsize(source)
                        if written > max_bytes:
                            raise UnsafeArchiveError(f"archive expands past the limit of {max_bytes} bytes")
                        shutil.copyfile(source, target, follow_symlinks=False)
                        os.chmod(target, mode)
                    else:
                        stream = tar.extractfile(member)
                        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                        with os.fdopen(fd, "wb") as out:
                            while stream is not None and (block := stream.read(BLOCK)):
                                written += len(block)
                                if written > max_bytes:
                                    raise UnsafeArchiveError(
                                        f"archive expands past the limit of {max_bytes} bytes"
                                    )
                                out.write(block)
                                if progress:
                                    progress(len(block))
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


def _make_dir(target: str, name: str) -> None:
    if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
        raise UnsafeArchiveError(f"entry {name!r} replaces a file or link with a folder")
    os.makedirs(target, mode=0o755, exist_ok=True)


def _sync_tree(dest: Path) -> None:
    """fsync every file and folder, so the rename that activates them publishes durable bytes."""
    for dirpath, _dirs, names in os.walk(dest):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""Safe reading of tar archives: one pass, hashed while read, every member checked.

The same checks guard the builder (a bad module is never published) and the device agent (a
bad module never touches the device), so both call :func:`check_member`.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.errors import FormatError
from builder.hashing import HashingReader

# An archive may expand to at most this many bytes (a gzip bomb stops here, not the disk).
DEFAULT_MAX_UNPACKED = 4 * 1024**3
MAX_MEMBERS = 100_000


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` may not be unpacked, or None when it is safe."""
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"entry {name!r} has an absolute path"
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        return f"entry {name!r} contains '..'"
    if not parts and not member.isdir():
        return f"entry {name!r} has an empty name"
    if member.ischr() or member.isblk() or member.isfifo():
        return f"entry {name!r} is a device or FIFO"
    if member.issym() or member.islnk():
        target = member.linkname
        if member.issym():
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname("/".join(parts)), target))
        else:
            resolved = posixpath.normpath(target)
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            return f"entry {name!r} is a link to {target!r}, outside the archive"
    elif not (member.isfile() or member.isdir()):
        return f"entry {name!r} has an unsupported type"
    return None


@dataclass
class ArchiveSummary:
    size: int
    sha256: str
    unpacked_size: int
    file_count: int
    files: dict[str, bytes]  # the small members asked for by name


def inspect_tarball(
    path: Path,
    wanted: frozenset[str] = frozenset(),
    max_unpacked: int = DEFAULT_MAX_UNPACKED,
) -> ArchiveSummary:
    """Read a .tar.gz once: hash it, check every member, return the members in ``wanted``.

    Raises FormatError with the precise reason for anything unsafe or unreadable.
    """
    with path.open("rb") as raw:
        reader = HashingReader(raw)
        buffered = io.BufferedReader(reader, 1 << 16)
        # gzip.GzipFile, unlike tarfile's own "r|gz", checks the CRC and length trailer, so a
        # file cut anywhere, even after the last tar block, is caught.
        gz = gzip.GzipFile(fileobj=buffered, mode="rb")
        unpacked = 0
        count = 0
        files: dict[str, bytes] = {}
        try:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in _members(tar):
                    problem = member_problem(member)
                    if problem:
                        raise FormatError(problem)
                    count += 1
                    if count > MAX_MEMBERS:
                        raise FormatError(f"more than {MAX_MEMBERS} entries")
                    unpacked += max(member.size, 0)
                    if unpacked > max_unpacked:
                        raise FormatError(f"expands past the limit of {max_unpacked} bytes")
                    name = posixpath.normpath(member.name.lstrip("./") or ".")
                    if name in wanted and member.isfile():
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            files[name] = extracted.read(1 << 20)
            while gz.read(1 << 20):  # the rest of the stream, up to and including its trailer
                pass
            buffered.read()
        except FormatError:
            raise
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise FormatError(f"truncated or malformed archive ({exc or type(exc).__name__})") from exc
    if count == 0:
        raise FormatError("empty archive")
    return ArchiveSummary(reader.size, reader.sha256.hexdigest(), unpacked, count, files)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = tar.next()
        if member is None:
            return
        yield member


def read_member(package: Path, name: str, limit: int = 16 * 1024**2) -> bytes | None:
    """The bytes of the regular file ``name`` in a tar archive, or None when it has none; at
    most ``limit`` bytes are read, so a member that claims more is refused, not loaded."""
    with tarfile.open(package, mode="r:*") as tar:
        for entry in tar:
            if entry.name == name and entry.isfile():
                if entry.size > limit:
                    raise FormatError(f"{name} is {entry.size} bytes, more than {limit}")
                handle = tar.extractfile(entry)
                return handle.read(limit) if handle is not None else None
    return None

"""``depot stats import-log``: the downloads nginx served itself, read from its access log into
the same counters the runtime writes (:mod:`runtime.downloads`).

The log is in the format ``depot nginx`` configures (``log_format depot_downloads`` in
:mod:`builder.nginx`): nginx's ``combined`` plus ``"$http_range" "$upstream_addr"``. A line
counts when it is a GET of a package file (``/files/<sha2>/<sha14>/<file name>``, a name that
parses as a module, firmware or APK) answered with 200 or 206 from the first byte (no ``Range``,
or one from byte 0) by nginx itself (``$upstream_addr`` is ``-``: what nginx passed to the
runtime, the runtime counted). Everything else is skipped, garbage included.

Idempotent per file region: the file is known by its device and inode, and the offset after the
last complete line read is stored with the counts in one transaction, so a second run adds only
lines written since (a line nginx is still writing, without its newline, waits for the next
run). A file that got shorter (``copytruncate``) or whose first bytes changed (a new file that
reuses the inode) is read from the start. A rotated file keeps its inode, so reading
``access.log.1`` after ``access.log`` was renamed adds only its unread end.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from builder.errors import DepotError
from runtime.clock import now_iso
from runtime.database import Database
from runtime.downloads import add_rows, counts_as_download, item_of_path
from runtime.storage import transaction

FORMATS = ("nginx",)
MAX_LINE = 16 * 1024  # bytes; nginx's own request line limit is 8 KiB by default
HEAD = 1024  # bytes hashed to know a file again
BATCH_LINES = 50_000  # lines per transaction
LINE = re.compile(
    r'^(?P<addr>\S+) - (?P<user>.*?) \[(?P<time>[^\]]{1,64})\] "(?P<request>[^"]*)" (?P<status>\d{3}) '
    r'(?P<bytes>\d+|-) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" "(?P<range>[^"]*)" "(?P<upstream>[^"]*)"\Z'
)
REQUEST = re.compile(r"^(?P<method>[A-Z]{1,16}) (?P<uri>\S{1,4096})(?: HTTP/[0-9.]{1,8})?\Z")
TIME_LOCAL = "%d/%b/%Y:%H:%M:%S %z"  # nginx's $time_local: 01/Dec/2026:10:00:00 +0100
COUNTED_STATUS = ("200", "206")


class LogImportError(DepotError):
    """The log cannot be imported (not a file, another import of it ran meanwhile)."""


@dataclass
class ImportResult:
    path: Path
    start: int  # the offset read from
    end: int  # the offset reached
    lines: int  # complete lines read
    counted: int  # downloads added
    skipped: int  # lines that are no counted download (other URLs, errors, garbage, too long)


def parse_line(text: str) -> tuple[str, str, str] | None:
    """One line of the depot_downloads format → ``(kind, item, UTC day)`` when it is a counted
    download, else None."""
    match = LINE.match(text)
    if not match or match["status"] not in COUNTED_STATUS:
        return None
    if match["upstream"] not in ("-", ""):
        return None  # the runtime answered (or handed it back with X-Accel-Redirect): it counted
    request = REQUEST.match(match["request"])
    if not request:
        return None
    http_range = "" if match["range"] == "-" else match["range"]
    if not counts_as_download(request["method"], http_range):
        return None
    found = item_of_path(request["uri"])
    if found is None:
        return None
    try:
        day = datetime.strptime(match["time"], TIME_LOCAL).astimezone(UTC).date().isoformat()
    except (ValueError, OverflowError):
        return None
    return found[0], found[1], day


def _lines(handle: BinaryIO, limit: int) -> tuple[list[bytes | None], int]:
    """Up to ``limit`` complete lines from the handle's position, and the bytes they took; a
    line longer than MAX_LINE is None (read past, not kept); an unfinished last line is left."""
    out: list[bytes | None] = []
    used = 0
    while len(out) < limit:
        line = handle.readline(MAX_LINE + 1)
        if not line:
            break
        if line.endswith(b"\n"):
            out.append(line)
            used += len(line)
            continue
        if len(line) <= MAX_LINE:
            break  # the end of the file, mid-line: nginx is writing it
        size = len(line)  # too long: skip to its newline, if it has one yet
        while True:
            more = handle.readline(1 << 20)
            size += len(more)
            if not more or more.endswith(b"\n"):
                break
        if not more or not more.endswith(b"\n"):
            break  # still unfinished: read it again next time
        out.append(None)
        used += size
    return out, used


def _head(path: Path, length: int) -> str:
    with path.open("rb") as handle:
        return hashlib.sha256(handle.read(length)).hexdigest()


def import_log(db: Database, path: Path, fmt: str = "nginx") -> ImportResult:
    """Add the downloads of the log lines not read yet; see the module's doc."""
    if fmt not in FORMATS:
        raise LogImportError(f"unknown log format {fmt!r} (known: {', '.join(FORMATS)})")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise LogImportError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise LogImportError(f"{path} is not a regular file")
        file_id = f"{st.st_dev}:{st.st_ino}"
        row = db.execute(
            'SELECT "offset", head, head_len FROM downloads_log_imports WHERE file = ?', [file_id]
        ).fetchone()
        start = 0
        if row is not None:
            offset, head, head_len = int(row[0]), str(row[1]), int(row[2])
            handle.seek(0)
            same = hashlib.sha256(handle.read(head_len)).hexdigest() == head
            start = offset if same and st.st_size >= offset else 0
        known = row is not None
        stored = int(row[0]) if row is not None else 0
        result = ImportResult(path, start, start, 0, 0, 0)
        handle.seek(start)
        while True:
            lines, used = _lines(handle, BATCH_LINES)
            if not lines:
                break
            found: Counter[tuple[str, str, str]] = Counter()
            for raw in lines:
                parsed = None if raw is None else parse_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if parsed is None:
                    result.skipped += 1
                else:
                    found[parsed] += 1
            end = result.end + used
            head_len = min(end, HEAD)
            head = _head(path, head_len)
            with transaction(db):
                now = db.execute(
                    'SELECT "offset" FROM downloads_log_imports WHERE file = ?', [file_id]
                ).fetchone()
                if (now is not None) != known or (now is not None and int(now[0]) != stored):
                    raise LogImportError(f"another import of {path} ran meanwhile; run it again")
                if found:
                    add_rows(db, ((k, i, d, n) for (k, i, d), n in found.items()))
                db.execute(
                    "INSERT INTO downloads_log_imports"
                    ' (file, path, "offset", head, head_len, lines, counted, updated)'
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    ' ON CONFLICT (file) DO UPDATE SET path = excluded.path, "offset" = excluded."offset",'
                    " head = excluded.head, head_len = excluded.head_len,"
                    " lines = downloads_log_imports.lines + excluded.lines,"
                    " counted = downloads_log_imports.counted + excluded.counted,"
                    " updated = excluded.updated",
                    [file_id, str(path), end, head, head_len, len(lines), sum(found.values()), now_iso()],
                )
            known, stored = True, end
            result.end = end
            result.lines += len(lines)
            result.counted += sum(found.values())
        return result


__all__ = ["ImportResult", "LogImportError", "import_log", "parse_line"]

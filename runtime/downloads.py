"""Download statistics: how often each package was downloaded, per day, whoever served it.

One counter per ``(kind, item, day)`` in the ``downloads`` schema namespace:

- ``kind`` is ``ota`` (an OTA build, item ``<codename>/<file name without .zip>``), ``qt`` (a Qt
  app, item its id), ``module`` and ``firmware`` (item ``<name> <version>``, every platform
  together) or ``apk`` (item ``<package> <versionCode>``);
- ``day`` is the UTC date, ``YYYY-MM-DD``.

Counting is batched: :meth:`DownloadCounter.record` only adds to a sum in memory, and the sums
are written every :data:`FLUSH_SECONDS` seconds by one background thread per process (and by
:meth:`DownloadCounter.flush`, at shutdown, and at exit), each flush one transaction of upserts
that *add* to the stored counts, so every runtime process sharing ``var/depot.db`` (and ``depot
stats import-log``) adds its own and nobody overwrites anyone's. A hot file costs one row
update per flush, not one write per request.

The runtime's parts call it like this: the shipper and Qt download endpoints
``counter_for(db_path).record(kind, item)``; the static mount
``counter_for(db_path).record_path(site_path, method=..., range_header=...)`` for a package file
it answered with 200 or 206. :func:`item_of_path` maps a site path
(``files/<sha2>/<sha14>/<file name>``) to its ``(kind, item)``; a path that is no package file,
or whose name does not parse, is not counted.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
import weakref
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from builder.device.firmware import FILENAME as FIRMWARE_FILENAME
from builder.names import FILENAME as MODULE_FILENAME
from runtime.database import Database, connect, describe
from runtime.storage import register_schema, transaction

log = logging.getLogger("runtime.downloads")

KINDS = ("ota", "qt", "module", "firmware", "apk")
FLUSH_SECONDS = 5.0
MAX_ITEM = 300  # characters: an item is a name and a version, never more
MAX_PENDING = 10_000  # distinct (kind, item, day) sums before a flush is due at once
# A package file in site/: files/<sha256[:2]>/<sha256[2:16]>/<file name> (builder.model.Blob)
# (names of the characters package file names use; \Z: "$" would also match before a "\n")
SITE_FILE = re.compile(r"^files/[0-9a-f]{2}/[0-9a-f]{14}/(?P<name>[A-Za-z0-9._+-]{1,255})\Z")
# <package>-<versionCode>.apk, as the CI portal names them (builder.portal.apk.apk_filename)
APK_FILENAME = re.compile(
    r"^(?P<package>[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)+)-(?P<code>[0-9]{1,19})\.apk\Z"
)
LOOSE_APK = re.compile(r"^(?P<stem>[A-Za-z0-9][A-Za-z0-9._+-]{0,200})\.apk\Z")  # dropped in by hand

Key = tuple[str, str, str]  # (kind, item, day)


def _v1(db: Database) -> None:
    for sql in (
        """CREATE TABLE downloads_daily (
            kind TEXT NOT NULL,                  -- ota, qt, module, firmware, apk
            item TEXT NOT NULL,
            day TEXT NOT NULL,                   -- UTC, YYYY-MM-DD
            count INTEGER NOT NULL,
            PRIMARY KEY (kind, item, day))""",
        "CREATE INDEX downloads_daily_day ON downloads_daily (day)",
        """CREATE TABLE downloads_log_imports (
            file TEXT PRIMARY KEY,               -- "<st_dev>:<st_ino>" of the log file
            path TEXT NOT NULL,                  -- where it was last read from
            "offset" INTEGER NOT NULL,           -- bytes read: every complete line before it
            head TEXT NOT NULL,                  -- SHA-256 of its first head_len bytes
            head_len INTEGER NOT NULL,
            lines INTEGER NOT NULL,
            counted INTEGER NOT NULL,
            updated TEXT NOT NULL)""",
    ):
        db.execute(sql)


register_schema("downloads", [_v1])


def utc_day(when: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if when is None else when, UTC).date().isoformat()


def counts_as_download(method: str, range_header: str | None) -> bool:
    """One download is one count: a GET from the first byte counts; a HEAD, or a resumed GET
    (``Range`` not starting at byte 0), does not (the rule of shipper's counted downloads)."""
    if method.upper() != "GET":
        return False
    http_range = (range_header or "").replace(" ", "")
    return not (http_range.startswith("bytes=") and not http_range.startswith("bytes=0-"))


def item_of_filename(filename: str) -> tuple[str, str] | None:
    """The ``(kind, item)`` of a published package file name, or None."""
    if match := MODULE_FILENAME.match(filename):
        return "module", f"{match['name']} {match['version']}"
    if match := FIRMWARE_FILENAME.match(filename):
        return "firmware", f"{match['name']} {match['version']}"
    if match := APK_FILENAME.match(filename):
        return "apk", f"{match['package']} {int(match['code'])}"
    if match := LOOSE_APK.match(filename):
        return "apk", match["stem"]
    return None


def item_of_path(site_path: str) -> tuple[str, str] | None:
    """``files/ab/cdef0123456789/ax.2.6.4.pi64.tar.gz`` (or the URL ``/files/…``, with a query
    and percent-escapes as a client sent it) → ``("module", "ax 2.6.4")``; None for anything
    that is not a package file (pages, indexes, a traversal, garbage)."""
    if not isinstance(site_path, str) or len(site_path) > 1024:
        return None
    path = site_path.split("?", 1)[0].split("#", 1)[0]
    try:
        path = unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    match = SITE_FILE.match(path.removeprefix("/"))
    if not match or match["name"] in (".", ".."):
        return None
    return item_of_filename(match["name"])


class DownloadCounter:
    """Download counts summed in memory, written to the database in batches.

    Thread-safe; one per database and process (:func:`counter_for`)."""

    def __init__(self, database: str | Path) -> None:
        self.database = _url(database)  # the database's URL (runtime.database)
        self._pending: dict[Key, int] = {}
        self._lock = threading.Lock()  # guards _pending
        self._flush_lock = threading.Lock()  # one flush at a time, on the one connection
        self._db: Database | None = None
        self.flushes = 0  # transactions written (tests and benchmarks look)

    # -- counting ----------------------------------------------------------------------------

    def record(self, kind: str, item: str, count: int = 1, day: str | None = None) -> None:
        """Count ``count`` downloads of ``item`` (today, UTC, unless ``day`` says otherwise)."""
        if kind not in KINDS:
            raise ValueError(f"unknown download kind {kind!r}")
        if not item or count <= 0:
            return
        key = (kind, item[:MAX_ITEM], day or utc_day())
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + count
            due = len(self._pending) >= MAX_PENDING
        _FLUSHER.wake(self, due)

    def record_path(self, site_path: str, method: str = "GET", range_header: str | None = None) -> bool:
        """Count a package file the static mount answered (200 or 206) by its site path; True
        when it counted (a package file, fetched with GET from its first byte)."""
        found = item_of_path(site_path)
        if found is None or not counts_as_download(method, range_header):
            return False
        self.record(*found)
        return True

    def pending(self) -> int:
        """Downloads counted in memory and not written yet."""
        with self._lock:
            return sum(self._pending.values())

    # -- writing -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Write what was counted since the last flush in one transaction; the number of
        downloads written. When the database cannot be written, the sums are kept for the
        next flush."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                db = self._connection()
                add(db, ((k, i, d, n) for (k, i, d), n in batch.items()))
            except Exception:
                with self._lock:
                    for key, n in batch.items():
                        self._pending[key] = self._pending.get(key, 0) + n
                raise
            self.flushes += 1
            return sum(batch.values())

    def _connection(self) -> Database:
        if self._db is not None and self._db.is_broken():  # PostgreSQL restarted: a new one
            self._db.close()
            self._db = None
        if self._db is None:
            self._db = connect(self.database)
        return self._db

    def close(self) -> None:
        """Flush and close the connection (at shutdown); counting later opens it again."""
        try:
            self.flush()
        finally:
            with self._flush_lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None


def add(db: Database, rows: Iterable[tuple[str, str, str, int]]) -> None:
    """Add ``(kind, item, day, count)`` rows to the stored counts, in one transaction."""
    with transaction(db):
        add_rows(db, rows)


def add_rows(db: Database, rows: Iterable[tuple[str, str, str, int]]) -> None:
    """:func:`add` inside the caller's transaction. An upsert that adds, so writers in other
    processes never overwrite each other's counts."""
    db.executemany(
        "INSERT INTO downloads_daily (kind, item, day, count) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (kind, item, day) DO UPDATE SET count = downloads_daily.count + excluded.count",
        list(rows),
    )


class _Flusher:
    """One daemon thread per process that flushes every live counter every FLUSH_SECONDS (at
    once when a counter has many distinct sums), and every counter at interpreter exit."""

    def __init__(self) -> None:
        self.counters: weakref.WeakSet[DownloadCounter] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._thread: threading.Thread | None = None
        self.interval = FLUSH_SECONDS

    def wake(self, counter: DownloadCounter, now: bool) -> None:
        with self._lock:
            self.counters.add(counter)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="depot-downloads", daemon=True)
                self._thread.start()
        if now:
            self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait(self.interval)
            self._due.clear()
            self.flush_all()

    def flush_all(self) -> None:
        with self._lock:
            counters = list(self.counters)
        for counter in counters:
            try:
                counter.flush()
            except Exception:  # a locked or vanished database: the sums wait for the next one
                where = describe(counter.database)
                log.warning("download counts not written yet to %s", where, exc_info=True)


_FLUSHER = _Flusher()
_COUNTERS: dict[str, DownloadCounter] = {}
_COUNTERS_LOCK = threading.Lock()


def _url(database: str | Path) -> str:
    """A database URL; a path is a SQLite file."""
    return database if isinstance(database, str) else f"sqlite://{Path(database).resolve()}"


def counter_for(database: str | Path) -> DownloadCounter:
    """This process's counter of the database ``database`` (``Storage.url``; a path is a
    SQLite file)."""
    url = _url(database)
    with _COUNTERS_LOCK:
        counter = _COUNTERS.get(url)
        if counter is None:
            counter = _COUNTERS[url] = DownloadCounter(url)
        return counter


def close_all() -> None:
    """Flush and close every counter of this process (at shutdown and at exit)."""
    with _COUNTERS_LOCK:
        counters = list(_COUNTERS.values())
    for counter in counters:
        try:
            counter.close()
        except Exception:
            log.warning("download counts lost at exit for %s", describe(counter.database), exc_info=True)


atexit.register(close_all)


# -- reading -----------------------------------------------------------------------------------


def last_days(days: int, today: date | None = None) -> list[str]:
    """The ``days`` UTC dates up to today, oldest first."""
    end = today or datetime.now(UTC).date()
    return [(end - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def daily(
    db: Database, first_day: str, kinds: Iterable[str] = KINDS
) -> dict[tuple[str, str], dict[str, int]]:
    """``(kind, item)`` → ``{day: count}`` for the days from ``first_day`` on."""
    wanted = list(kinds)
    if not wanted:
        return {}
    marks = ", ".join("?" for _ in wanted)
    cursor = db.execute(
        f"SELECT kind, item, day, count FROM downloads_daily WHERE day >= ? AND kind IN ({marks})"
        " ORDER BY kind, item, day",
        [first_day, *wanted],
    )
    out: dict[tuple[str, str], dict[str, int]] = {}
    for kind, item, day, count in cursor.fetchall():
        out.setdefault((kind, item), {})[day] = int(count)
    return out


def totals(db: Database, kinds: Iterable[str] = KINDS) -> dict[tuple[str, str], int]:
    """``(kind, item)`` → every download ever counted."""
    wanted = list(kinds)
    if not wanted:
        return {}
    marks = ", ".join("?" for _ in wanted)
    cursor = db.execute(
        f"SELECT kind, item, sum(count) FROM downloads_daily WHERE kind IN ({marks}) GROUP BY kind, item",
        wanted,
    )
    return {(kind, item): int(n) for kind, item, n in cursor.fetchall()}

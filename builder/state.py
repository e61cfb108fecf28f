"""The build state beside site/: one SQLite file, ``.<site>.depot/state.db``.

It holds what the next build needs to follow a change rather than the store: the stat of every
file of repo/ the last build saw, each package file's records (the scan cache), which parts of
each renderer every package file feeds, every part's and target's fragments, and every file of
site/ with the fingerprint it was rendered from (the manifest). A build opens one transaction,
reads and writes through it while it plans and publishes, and commits once site/ is published:
a build killed at any point leaves the state of the last build that finished, and its dirty
marker makes the next build check site/ against that state (builder/build.py).

Why SQLite: a build of one added package reads a few rows out of a million and writes a few,
where JSON files of the whole store cost seconds to load and save at 100,000 packages.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "state.db"
# Bumped when the tables change shape or what a column means: a state of another version is
# dropped and the next build is a clean one (it still reuses site/'s unchanged files, which it
# compares by content).
VERSION = 3  # 3: route buckets by routes.route_group

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- every file of repo/ the last build walked: size and mtime (NULL for a dangling link)
CREATE TABLE stats (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER);
-- the scan cache: a package file's cache key, error and records (JSON)
CREATE TABLE entries (path TEXT PRIMARY KEY, key TEXT NOT NULL, error TEXT, records TEXT NOT NULL,
                      digests TEXT NOT NULL);
-- which package file a possible sidecar path belongs to (a sidecar that appears re-reads it)
CREATE TABLE sidecars (path TEXT NOT NULL, package TEXT NOT NULL, PRIMARY KEY (path, package));
CREATE INDEX sidecars_package ON sidecars (package);
-- files of content folders that are no package and no sidecar (reported as skipped)
CREATE TABLE strays (path TEXT PRIMARY KEY);
-- which parts of which renderer a package file's records feed
CREATE TABLE members (renderer TEXT NOT NULL, part TEXT NOT NULL, path TEXT NOT NULL,
                      PRIMARY KEY (renderer, part, path));
CREATE INDEX members_path ON members (path);
-- the skipped packages, without a scan of every entry
CREATE INDEX entries_errors ON entries (path) WHERE error IS NOT NULL AND error != '';
-- every part and target that rendered: its owner name (p:<part> or t:<target>)
CREATE TABLE owners (renderer TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (renderer, owner));
-- fragments, by the target they join and by the owner that emitted them
CREATE TABLE fragments (renderer TEXT NOT NULL, target TEXT NOT NULL, ord TEXT NOT NULL,
                        origin TEXT NOT NULL, data TEXT NOT NULL,
                        PRIMARY KEY (renderer, target, ord, origin));
CREATE INDEX fragments_origin ON fragments (renderer, origin);
-- the manifest: every file of site/. owner is "<renderer> <owner>", "" for retained history
-- (since: when it stopped being current; later: newer generations published since).
CREATE TABLE outputs (path TEXT PRIMARY KEY, owner TEXT NOT NULL, fp TEXT NOT NULL,
                      sha256 TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                      type TEXT NOT NULL, tier INTEGER NOT NULL, url TEXT, query TEXT,
                      status INTEGER, source TEXT, retain INTEGER NOT NULL DEFAULT 0,
                      routed INTEGER NOT NULL DEFAULT 1, bucket TEXT,
                      since REAL, later INTEGER);
CREATE INDEX outputs_owner ON outputs (owner);
-- covering the route table's shard queries: a shard's rows without a lookup per row
CREATE INDEX outputs_bucket ON outputs (bucket, routed, path, url, type, query, status);
CREATE INDEX outputs_retained ON outputs (path) WHERE retain = 1;
"""


@dataclass(slots=True)  # one per file of site/: a first build makes a hundred thousand
class OutputRow:
    """One file of site/ as the state remembers it."""

    path: str
    owner: str
    fp: str
    sha256: str
    size: int
    mtime_ns: int
    type: str
    tier: int
    url: str | None
    query: str | None  # JSON of the query dict
    status: int | None
    source: str | None
    retain: int
    routed: int
    bucket: str | None
    since: float | None
    later: int | None

    @property
    def public_url(self) -> str:
        return self.url if self.url is not None else "/" + self.path


OUTPUT_COLUMNS = tuple(OutputRow.__dataclass_fields__)
_SELECT_OUTPUTS = "SELECT " + ", ".join(OUTPUT_COLUMNS) + " FROM outputs"


class BuildState:
    """The state of one site, opened by the build that holds its lock."""

    def __init__(self, folder: Path, identity: dict[str, str]) -> None:
        """``identity`` (the repo and site paths) must match what the state was written for;
        otherwise, or when the file is damaged or of another version, it starts empty."""
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / STATE_FILE
        self.db = self._open(identity)
        self.fresh = self.meta("version") is None
        if self.fresh:
            for key, value in {**identity, "version": str(VERSION)}.items():
                self.set_meta(key, value)
            self.commit()

    def _open(self, identity: dict[str, str]) -> sqlite3.Connection:
        for attempt in (1, 2):
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                # Each commit is durable before the dirty marker goes (build.py): FULL syncs the
                # WAL on every commit, one fsync per build.
                db.execute("PRAGMA synchronous=FULL")
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if "meta" in tables:
                    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                    if meta.get("version") == str(VERSION) and all(
                        meta.get(k) == v for k, v in identity.items()
                    ):
                        db.execute("BEGIN IMMEDIATE")
                        return db
                db.close()
            except sqlite3.DatabaseError:
                db.close()
                if attempt == 2:
                    raise
            # Another version, another site, or damaged: start again from nothing.
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            return db
        raise AssertionError("unreachable")

    # -- the transaction ----------------------------------------------------------------------

    def commit(self) -> None:
        """Make everything this build wrote durable, and start the next transaction."""
        self.db.execute("COMMIT")
        self.db.execute("BEGIN IMMEDIATE")

    def rollback(self) -> None:
        self.db.execute("ROLLBACK")
        self.db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.OperationalError):  # no transaction open
            self.db.execute("ROLLBACK")
        self.db.close()

    # -- meta ---------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta_json(self, key: str, default: Any) -> Any:
        value = self.meta(key)
        return default if value is None else json.loads(value)

    def set_meta_json(self, key: str, value: Any) -> None:
        self.set_meta(key, json.dumps(value, sort_keys=True, separators=(",", ":")))

    # -- repo/ stats --------------------------------------------------------------------------

    def all_stats(self) -> dict[str, list[int] | None]:
        """Every file's [size, mtime_ns] as the last build saw it (None: a dangling link); lists,
        as scan.walk_repo_stats gives them, so the two compare as they are."""
        return {
            p: [s, m] if s is not None else None
            for p, s, m in self.db.execute("SELECT path, size, mtime_ns FROM stats")
        }

    def stats_of(self, paths: Iterable[str]) -> dict[str, list[int] | None]:
        """The recorded stat of those of ``paths`` the last build saw."""
        found: dict[str, list[int] | None] = {}
        for chunk in _chunks(sorted(set(paths))):
            marks = ",".join("?" * len(chunk))
            for p, s, m in self.db.execute(
                f"SELECT path, size, mtime_ns FROM stats WHERE path IN ({marks})", chunk
            ):
                found[p] = [s, m] if s is not None else None
        return found

    def set_stats(self, changed: Mapping[str, Sequence[int] | None], gone: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM stats WHERE path = ?", ((p,) for p in gone))
        self.db.executemany(
            "INSERT OR REPLACE INTO stats (path, size, mtime_ns) VALUES (?, ?, ?)",
            ((p, st[0] if st else None, st[1] if st else None) for p, st in changed.items()),
        )

    def stats_below(self, folder: str) -> list[str]:
        """Every file the last build saw below ``folder`` (a relpath)."""
        # "0" is the character after "/": the range is every path that starts with "folder/".
        rows = self.db.execute(
            "SELECT path FROM stats WHERE path >= ? AND path < ?", (folder + "/", folder + "0")
        )
        return [r[0] for r in rows]

    def newest_mtime(self) -> int | None:
        """The newest mtime of every file of repo/ the last build saw (None: none)."""
        row = self.db.execute("SELECT MAX(mtime_ns) FROM stats").fetchone()
        return row[0] if row and row[0] is not None else None

    def entries_of(self, paths: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(sorted(set(paths))):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                f"SELECT path, key, error, records, digests FROM entries WHERE path IN ({marks})", chunk
            ):
                found[row[0]] = _entry(row)
        return found

    def all_entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for row in self.db.execute("SELECT path, key, error, records, digests FROM entries ORDER BY path"):
            yield row[0], _entry(row)

    def entry_paths(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT path FROM entries")}

    def set_entry(self, path: str, entry: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO entries (path, key, error, records, digests) VALUES (?, ?, ?, ?, ?)",
            (
                path,
                json.dumps(entry["key"], separators=(",", ":")),
                entry["error"],
                json.dumps(entry["records"], separators=(",", ":"), sort_keys=True),
                json.dumps(entry.get("digests") or [], separators=(",", ":")),
            ),
        )

    def drop_entry(self, path: str) -> None:
        self.db.execute("DELETE FROM entries WHERE path = ?", (path,))

    def errors(self) -> dict[str, str]:
        return dict(
            self.db.execute("SELECT path, error FROM entries WHERE error IS NOT NULL AND error != ''")
        )

    def entry_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    # -- sidecars and strays -------------------------------------------------------------------

    def packages_of_sidecars(self, paths: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(paths))):
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0] for r in self.db.execute(f"SELECT package FROM sidecars WHERE path IN ({marks})", chunk)
            )
        return found

    def claimed_sidecars(self, paths: Iterable[str]) -> set[str]:
        """Those of ``paths`` that some package names as its sidecar."""
        found: set[str] = set()
        for chunk in _chunks(sorted(set(paths))):
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self.db.execute(f"SELECT DISTINCT path FROM sidecars WHERE path IN ({marks})", chunk)
            )
        return found

    def set_sidecars(self, package: str, sidecars: Iterable[str]) -> None:
        self.db.execute("DELETE FROM sidecars WHERE package = ?", (package,))
        self.db.executemany(
            "INSERT OR IGNORE INTO sidecars (path, package) VALUES (?, ?)", ((s, package) for s in sidecars)
        )

    def drop_sidecars(self, package: str) -> None:
        self.db.execute("DELETE FROM sidecars WHERE package = ?", (package,))

    def strays(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT path FROM strays")}

    def set_strays(self, add: Iterable[str], drop: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM strays WHERE path = ?", ((p,) for p in drop))
        self.db.executemany("INSERT OR IGNORE INTO strays (path) VALUES (?)", ((p,) for p in add))

    # -- parts and fragments -----------------------------------------------------------------

    def member_paths(self, renderer: str, part: str) -> list[str]:
        return [
            r[0]
            for r in self.db.execute(
                "SELECT path FROM members WHERE renderer = ? AND part = ? ORDER BY path", (renderer, part)
            )
        ]

    def replace_members(self, renderer: str, rows: Iterable[tuple[str, str]]) -> None:
        """The renderer's whole membership table: (part, package file) rows."""
        self.db.execute("DELETE FROM members WHERE renderer = ?", (renderer,))
        self.db.executemany(
            "INSERT OR IGNORE INTO members (renderer, part, path) VALUES (?, ?, ?)",
            ((renderer, part, path) for part, path in rows),
        )

    def set_members(self, renderer: str, path: str, add: Iterable[str], drop: Iterable[str]) -> None:
        self.db.executemany(
            "DELETE FROM members WHERE renderer = ? AND part = ? AND path = ?",
            ((renderer, p, path) for p in drop),
        )
        self.db.executemany(
            "INSERT OR IGNORE INTO members (renderer, part, path) VALUES (?, ?, ?)",
            ((renderer, p, path) for p in add),
        )

    def owners(self, renderer: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT owner FROM owners WHERE renderer = ?", (renderer,))}

    def set_owner(self, renderer: str, owner: str, present: bool) -> None:
        if present:
            self.db.execute("INSERT OR IGNORE INTO owners (renderer, owner) VALUES (?, ?)", (renderer, owner))
        else:
            self.db.execute("DELETE FROM owners WHERE renderer = ? AND owner = ?", (renderer, owner))

    def fragments_from(self, renderer: str, origin: str) -> list[tuple[str, str, str]]:
        """(target, order, data) of every fragment ``origin`` emitted."""
        return list(
            self.db.execute(
                "SELECT target, ord, data FROM fragments WHERE renderer = ? AND origin = ?",
                (renderer, origin),
            )
        )

    def fragments_of(self, renderer: str, target: str) -> list[tuple[str, str]]:
        """(order, data) of every fragment of ``target``, in assembly order."""
        return list(
            self.db.execute(
                "SELECT ord, data FROM fragments WHERE renderer = ? AND target = ? ORDER BY ord, origin",
                (renderer, target),
            )
        )

    def targets(self, renderer: str) -> set[str]:
        return {
            r[0]
            for r in self.db.execute("SELECT DISTINCT target FROM fragments WHERE renderer = ?", (renderer,))
        }

    def replace_fragments(self, renderer: str, origin: str, rows: list[tuple[str, str, str]]) -> None:
        self.db.execute("DELETE FROM fragments WHERE renderer = ? AND origin = ?", (renderer, origin))
        self.db.executemany(
            "INSERT INTO fragments (renderer, target, ord, origin, data) VALUES (?, ?, ?, ?, ?)",
            ((renderer, t, o, origin, d) for t, o, d in rows),
        )

    # -- the manifest ---------------------------------------------------------------------------

    def output(self, path: str) -> OutputRow | None:
        row = self.db.execute(_SELECT_OUTPUTS + " WHERE path = ?", (path,)).fetchone()
        return OutputRow(*row) if row else None

    def files_of(self, owner: str) -> list[tuple[str, str]]:
        """(path, SHA-256) of every file of ``owner``: what the route table's entry names."""
        return list(self.db.execute("SELECT path, sha256 FROM outputs WHERE owner = ?", (owner,)))

    def outputs_of(self, owner: str) -> list[OutputRow]:
        return [OutputRow(*r) for r in self.db.execute(_SELECT_OUTPUTS + " WHERE owner = ?", (owner,))]

    def outputs_at(self, paths: Iterable[str]) -> dict[str, OutputRow]:
        found: dict[str, OutputRow] = {}
        for chunk in _chunks(sorted(set(paths))):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(_SELECT_OUTPUTS + f" WHERE path IN ({marks})", chunk):
                found[r[0]] = OutputRow(*r)
        return found

    def all_outputs(self) -> list[OutputRow]:
        return [OutputRow(*r) for r in self.db.execute(_SELECT_OUTPUTS + " ORDER BY path")]

    def output_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0])

    def route_rows(self, bucket: str) -> list[tuple[str, str | None, str, str | None, int | None]]:
        """(path, url, type, query, status) of every routed file whose URL is in ``bucket``."""
        query = "SELECT path, url, type, query, status FROM outputs WHERE bucket = ? AND routed = 1"
        return list(self.db.execute(query, (bucket,)))

    def retired(self) -> list[OutputRow]:
        return [OutputRow(*r) for r in self.db.execute(_SELECT_OUTPUTS + " WHERE owner = '' ORDER BY path")]

    def current_retained(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT path FROM outputs WHERE retain = 1 AND owner != ''")}

    def output_paths(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT path FROM outputs")}

    def routed_buckets(self) -> set[str]:
        """Every shard of the route table that some file's URL falls in."""
        return {r[0] for r in self.db.execute("SELECT DISTINCT bucket FROM outputs WHERE routed = 1")}

    def count_generation(self, retired: Iterable[str]) -> None:
        """One more newer generation for each of these retired files."""
        self.db.executemany(
            "UPDATE outputs SET later = later + 1 WHERE owner = '' AND path = ?",
            ((p,) for p in sorted(retired)),
        )

    def put_output(self, row: OutputRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO outputs ("
            + ", ".join(OUTPUT_COLUMNS)
            + ") VALUES ("
            + ", ".join("?" * len(OUTPUT_COLUMNS))
            + ")",
            tuple(getattr(row, c) for c in OUTPUT_COLUMNS),
        )

    def drop_output(self, path: str) -> None:
        self.db.execute("DELETE FROM outputs WHERE path = ?", (path,))

    def history_due(self, now: float, generations: int, seconds: float) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM outputs WHERE owner = '' AND later >= ? AND ? - since >= ? LIMIT 1",
            (generations, now, seconds),
        ).fetchone()
        return row is not None


def _entry(row: tuple[Any, ...]) -> dict[str, Any]:
    _path, key, error, records, digests = row
    return {
        "key": json.loads(key),
        "error": error,
        "records": json.loads(records),
        "digests": json.loads(digests),
    }


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]

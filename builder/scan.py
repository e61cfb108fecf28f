"""Scan repo/ into catalog records, re-reading only files whose stat changed.

The cache key of a file is its own (size, mtime_ns), the same for each of its sidecars, and the
part of the settings its reader depends on. A file whose key is unchanged is not opened at all:
a no-change rebuild of ten thousand packages is ten thousand ``stat`` calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from builder.entrystore import EntryStore
from builder.formats import Reader
from builder.model import Record, StoreSettings, builder_code_digest, record_from_dict, record_schema
from builder.registry import readers
from builder.scan_worker import ScanWorkerError, read_entry, run_workers
from builder.settings import SETTINGS_FILE

CACHE_VERSION = 2  # 2: entries keep their records' digests
# Reading a package is mostly Python work, so threads only contend for the GIL; a batch at least
# this big goes to worker processes (scan_worker) instead: their start-up costs about as much as
# reading a few hundred packages.
PROCESS_POOL_MIN_FILES = 1000
# Folders whose every file should be a package or a sidecar: anything else there is reported.
CONTENT_FOLDERS = ("apps/", "builds/", "modules/", "firmware/", "android/")


class Progress(Protocol):
    """Where a long scan reports how far it got (the CLI draws a bar; tests pass nothing)."""

    def start(self, total: int, label: str) -> None: ...

    def advance(self, n: int) -> None: ...

    def finish(self) -> None: ...


@dataclass
class ScanResult:
    records: list[Record] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # relpath → reason
    files_read: int = 0
    files_cached: int = 0
    unreadable: int = 0  # files that could not be read (an OSError): tried again next build
    by_file: dict[str, list[Record]] = field(default_factory=dict)  # relpath → its records


def _records(entry: dict[str, Any]) -> list[Record]:
    digests = entry.get("digests") or [None] * len(entry["records"])
    return [record_from_dict(r, d) for r, d in zip(entry["records"], digests, strict=True)]


def _stat_key(path: Path | str) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _cache_version() -> str:
    # The record schema joins the version: a cache written before a record type gained or lost
    # a field is void, rather than a KeyError or a stale digest.
    # So does the builder's source: records are only as good as the readers that made them.
    return f"{CACHE_VERSION}/{record_schema()}/{builder_code_digest()}"


def walk_repo(repo: Path) -> list[str]:
    """Every regular file below repo/ as a sorted POSIX relpath; hidden names are left out."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, repo).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        found.extend(prefix + name for name in filenames if not name.startswith("."))
    return sorted(found)


def walk_repo_stats(repo: Path) -> dict[str, list[int] | None]:
    """What walk_repo finds, each with its (size, mtime_ns) key as ``_stat_key`` gives it (None
    for a dangling link), from one walk: the build hashes these stats for its no-change fast path
    and the scan reuses them instead of a second stat per file."""
    found: dict[str, list[int] | None] = {}

    def walk(folder: str, prefix: str) -> None:
        try:
            it = os.scandir(folder)
        except OSError:  # os.walk skips a folder it cannot list, and so does walk_repo
            return
        with it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir():  # like os.walk: a link to a folder is not followed
                    if not e.is_symlink():
                        walk(e.path, f"{prefix}{e.name}/")
                    continue
                try:
                    st = e.stat()
                    found[prefix + e.name] = [st.st_size, st.st_mtime_ns]
                except FileNotFoundError:
                    found[prefix + e.name] = None

    walk(str(repo), "")
    return {k: found[k] for k in sorted(found)}


class Scanner:
    def __init__(self, repo: Path, cache_file: Path | None) -> None:
        self.repo = repo
        self.cache_file = cache_file
        self.readers: list[Reader] = readers()
        self._cache: dict[str, Any] = self._load_cache()
        self._cache_changed = True
        self._stats: dict[str, list[int] | None] = {}
        self._previous: dict[str, Any] = self._cache  # the entries before the last scan()

    def _load_cache(self) -> dict[str, Any]:
        if self.cache_file is None:
            return {}
        # A damaged or foreign cache loads as {}: it only costs a full re-read.
        self._store = EntryStore(
            self.cache_file, {"version": _cache_version(), "repo": str(self.repo.resolve())}
        )
        return self._store.load()

    def save_cache(self) -> None:
        """Save the entries that changed (see entrystore)."""
        if self.cache_file is None or not self._cache_changed:
            return
        self._store.save(self._cache)

    def reader_for(self, relpath: str) -> Reader | None:
        return next((r for r in self.readers if r.matches(relpath)), None)

    def scan(
        self,
        settings: StoreSettings,
        progress: Progress | None = None,
        stats: dict[str, list[int] | None] | None = None,
    ) -> ScanResult:
        """``stats``: walk_repo_stats of repo/, when the caller already walked it."""
        result = ScanResult()
        files = walk_repo(self.repo) if stats is None else list(stats)
        self._stats = stats or {}
        present = set(files)
        claimed: dict[str, Reader] = {}
        sidecars: set[str] = set()
        for relpath in files:
            if relpath == SETTINGS_FILE:
                continue
            reader = self.reader_for(relpath)
            if reader is not None:
                claimed[relpath] = reader
                sidecars.update(reader.sidecars(relpath))
        for relpath in files:
            if relpath not in claimed and relpath not in sidecars and relpath.startswith(CONTENT_FOLDERS):
                result.skipped[relpath] = "not a package Depot can read here"

        new_cache: dict[str, Any] = {}
        to_read: list[tuple[str, Reader, list[Any]]] = []
        for relpath, reader in claimed.items():
            key = self._key(relpath, reader, settings, present)
            entry = self._cache.get(relpath)
            if entry is not None and entry["key"] == key:
                new_cache[relpath] = entry
                result.files_cached += 1
            else:
                to_read.append((relpath, reader, key))

        def read_one(job: tuple[str, Reader, list[Any]]) -> tuple[str, dict[str, Any]]:
            relpath, reader, key = job
            entry = read_entry(self.repo, relpath, reader, key, settings)
            if progress:
                progress.advance(1)
            return relpath, entry

        if to_read:
            if progress:
                progress.start(len(to_read), "reading packages")
            entries = self._read_in_processes(to_read, settings, progress)
            if entries is not None:
                for (relpath, _reader, _key), entry in zip(to_read, entries, strict=True):
                    new_cache[relpath] = entry
            else:
                workers = min(4, len(to_read))
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for relpath, entry in pool.map(read_one, to_read):
                        new_cache[relpath] = entry
            result.files_read = len(to_read)
            if progress:
                progress.finish()

        for relpath in sorted(new_cache):
            entry = new_cache[relpath]
            if entry["error"]:
                result.skipped[relpath] = entry["error"]
            records = _records(entry)
            if records:
                result.by_file[relpath] = records
                result.records.extend(records)
        kept = {k: v for k, v in new_cache.items() if v["key"] is not None}
        result.unreadable = len(new_cache) - len(kept)
        # Nothing read and nothing gone: the cache file on disk is still exact, leave it be.
        self._cache_changed = bool(to_read) or kept.keys() != self._cache.keys()
        self._previous, self._cache = self._cache, kept
        return result

    def previous(self, relpath: str) -> list[Record]:
        """The records the cache held for ``relpath`` before the last scan: what the last build
        that finished published from it (none when it had none, or could not read it)."""
        entry = self._previous.get(relpath)
        return _records(entry) if entry is not None else []

    def forget(self, relpaths: Iterable[str]) -> None:
        """Drop these files from the cache, so the next scan reads them again whatever their
        stat says: the build could not publish what it read from them."""
        for relpath in relpaths:
            if self._cache.pop(relpath, None) is not None:
                self._cache_changed = True

    def _read_in_processes(
        self, to_read: list[tuple[str, Reader, list[Any]]], settings: StoreSettings, progress: Progress | None
    ) -> list[dict[str, Any]] | None:
        """Read a big batch in worker processes (see scan_worker); None when the batch is small or
        that is not possible (one CPU, custom readers, no subprocess), and the caller reads here."""
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if cpus < 2 or len(to_read) < PROCESS_POOL_MIN_FILES:
            return None
        known = {r.name: type(r) for r in readers()}
        if any(known.get(reader.name) is not type(reader) for _rel, reader, _key in to_read):
            return None  # workers make their own readers: only the standard ones can be named
        jobs = [(relpath, reader.name, key) for relpath, reader, key in to_read]
        n = min(cpus, 4)
        shares = [jobs[i::n] for i in range(n)]  # interleaved, so big and small files spread evenly
        try:
            results = run_workers(
                self.repo, settings, shares, lambda: progress.advance(1) if progress else None
            )
        except (OSError, ScanWorkerError):
            return None
        entries: list[dict[str, Any]] = [{} for _ in jobs]
        for i, share_entries in enumerate(results):
            entries[i::n] = share_entries
        return entries

    def _key(self, relpath: str, reader: Reader, settings: StoreSettings, present: set[str]) -> list[Any]:
        root = str(self.repo)
        stats = [
            # A sidecar the walk did not see does not exist (one stat saved per package), unless
            # it hides in a dot-name the walk leaves out.
            (self._stats[p] if p in self._stats else _stat_key(f"{root}/{p}"))
            if p in present or p == relpath or "/." in f"/{p}"
            else None
            for p in (relpath, *reader.sidecars(relpath))
        ]
        return [stats, reader.settings_key(settings)]

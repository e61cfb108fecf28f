"""Scan repo/ into catalog records, re-reading only files whose stat changed.

The cache key of a file is its own (size, mtime_ns), the same for each of its sidecars, and the
part of the settings its reader depends on. A file whose key is unchanged is not opened at all.

:func:`scan_changes` finds what changed since the last build (builder/state.py keeps the last
build's stats and records) in one of two ways:

- **a walk** of repo/ that stats every file (``paths=None``): what ``depot build`` does, so a
  file rewritten in place, a sidecar edited by hand, is always seen; about 0.3 s at 100,000
  files on this kind of machine;
- **a change feed** (``paths``): the files somebody says changed — the runtime's uploads, the
  events of ``depot watch``, ``depot build --changed`` — stat'ed with their sidecars and the
  files that failed before; the store's size does not enter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.formats import Reader
from builder.model import Record, StoreSettings, builder_code_digest, record_from_dict, record_schema
from builder.progress import Progress
from builder.registry import readers
from builder.scan_worker import ScanWorkerError, read_entry, stream_workers
from builder.settings import SETTINGS_FILE
from builder.state import BuildState

CACHE_VERSION = 2  # 2: entries keep their records' digests
# Reading a package is mostly Python work, so threads only contend for the GIL; a batch at least
# this big goes to worker processes (scan_worker) instead: their start-up costs about as much as
# reading a few hundred packages.
PROCESS_POOL_MIN_FILES = 1000
# Folders whose every file should be a package or a sidecar: anything else there is reported.
CONTENT_FOLDERS = ("apps/", "builds/", "modules/", "firmware/", "android/")


@dataclass
class ScanResult:
    records: list[Record] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # relpath → reason
    files_read: int = 0
    files_cached: int = 0
    unreadable: int = 0  # files that could not be read (an OSError): tried again next build
    by_file: dict[str, list[Record]] = field(default_factory=dict)  # relpath → its records


def _stat_key(path: Path | str) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


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
    """What walk_repo finds, each with its [size, mtime_ns] key as ``_stat_key`` gives it (None
    for a dangling link), from one walk: the scan compares them with the build state's."""
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
    return found  # in the order the folders list them: sort where order matters


class Scanner:
    """Reads packages: every file of a walk (:meth:`scan`, with no state: `depot check`, tests),
    or the files a change touched (:func:`scan_changes`)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.readers: list[Reader] = readers()

    def reader_for(self, relpath: str) -> Reader | None:
        return next((r for r in self.readers if r.matches(relpath)), None)

    def scan(self, settings: StoreSettings, progress: Progress | None = None) -> ScanResult:
        """Read every package of repo/ (nothing cached)."""
        result = ScanResult()
        walked = walk_repo_stats(self.repo)
        stats = {p: walked[p] for p in sorted(walked)}
        claimed, sidecars = self.claim(stats)
        for relpath in stats:
            if is_stray(relpath, claimed, sidecars):
                result.skipped[relpath] = STRAY
        jobs = [
            (relpath, reader, self.key(relpath, reader, settings, stats))
            for relpath, reader in claimed.items()
        ]
        read = dict(self.read(jobs, settings, progress))
        for index, (relpath, _reader, _key) in enumerate(jobs):
            entry = read[index]
            if entry["error"]:
                result.skipped[relpath] = entry["error"]
            records = entry_records(entry)
            if records:
                result.by_file[relpath] = records
                result.records.extend(records)
        result.files_read = len(jobs)
        return result

    def claim(self, stats: Iterable[str]) -> tuple[dict[str, Reader], set[str]]:
        """The package files among ``stats`` (relpath → reader) and every sidecar path they name."""
        claimed: dict[str, Reader] = {}
        sidecars: set[str] = set()
        for relpath in stats:
            if relpath == SETTINGS_FILE:
                continue
            reader = self.reader_for(relpath)
            if reader is not None:
                claimed[relpath] = reader
                sidecars.update(reader.sidecars(relpath))
        return claimed, sidecars

    def key(
        self, relpath: str, reader: Reader, settings: StoreSettings, stats: dict[str, list[int] | None]
    ) -> list[Any]:
        root = str(self.repo)
        keys = [
            # A sidecar the walk did not see does not exist (one stat saved per package), unless
            # it hides in a dot-name the walk leaves out.
            (stats[p] if p in stats else (_stat_key(f"{root}/{p}") if "/." in f"/{p}" else None))
            for p in (relpath, *reader.sidecars(relpath))
        ]
        return [keys, reader.settings_key(settings)]

    def read(
        self, jobs: list[tuple[str, Reader, list[Any]]], settings: StoreSettings, progress: Progress | None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(index in ``jobs``, scan-cache entry) of each job, in the order they are read: in
        worker processes for a big batch (what they do not deliver is read here after all)."""
        if not jobs:
            return
        if progress:
            progress.start(len(jobs), "reading packages")
        delivered: set[int] = set()
        if self._processes_can_read(jobs):
            names = [(relpath, reader.name, key) for relpath, reader, key in jobs]
            n = min(_cpus(), 4)
            shares = [names[i::n] for i in range(n)]  # interleaved: big and small files spread evenly
            try:
                for share, position, entry in stream_workers(self.repo, settings, shares):
                    index = share + position * n
                    delivered.add(index)
                    if progress:
                        progress.advance(1)
                    yield index, entry
            except (OSError, ScanWorkerError):
                pass  # the rest is read here
        rest = [i for i in range(len(jobs)) if i not in delivered]

        def read_one(index: int) -> tuple[int, dict[str, Any]]:
            relpath, reader, key = jobs[index]
            return index, read_entry(self.repo, relpath, reader, key, settings)

        if rest:
            with ThreadPoolExecutor(max_workers=min(4, len(rest))) as pool:
                for index, entry in pool.map(read_one, rest):
                    if progress:
                        progress.advance(1)
                    yield index, entry
        if progress:
            progress.finish()

    def _processes_can_read(self, jobs: list[tuple[str, Reader, list[Any]]]) -> bool:
        """Worker processes (see scan_worker) pay off for a big batch on several CPUs, and can
        only name the standard readers; reading a few hundred packages costs what starting them
        does."""
        if _cpus() < 2 or len(jobs) < PROCESS_POOL_MIN_FILES:
            return False
        known = {r.name: type(r) for r in readers()}
        return all(known.get(reader.name) is type(reader) for _rel, reader, _key in jobs)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


STRAY = "not a package Depot can read here"


def is_stray(relpath: str, claimed: dict[str, Reader] | set[str], sidecars: set[str]) -> bool:
    """A file of a content folder that is no package and no package's sidecar."""
    return relpath not in claimed and relpath not in sidecars and relpath.startswith(CONTENT_FOLDERS)


def entry_records(entry: dict[str, Any]) -> list[Record]:
    digests = entry.get("digests") or [None] * len(entry["records"])
    return [record_from_dict(r, d) for r, d in zip(entry["records"], digests, strict=True)]


@dataclass
class ScanDelta:
    """What changed in repo/ since the last build, as package files."""

    changed: dict[str, tuple[list[Record], list[Record]]] = field(default_factory=dict)  # (before, now)
    skipped: dict[str, str] = field(default_factory=dict)  # every skipped file of the store
    files_read: int = 0
    files_cached: int = 0
    unreadable: list[str] = field(default_factory=list)  # tried again by the next build
    paths_changed: int = 0  # files of repo/ whose stat changed


def cache_version() -> str:
    """Entries of another version are void (read again): the record schema and the builder's
    source join it, since records are only as good as the readers that made them."""
    return f"{CACHE_VERSION}/{record_schema()}/{builder_code_digest()}"


def scan_changes(
    repo: Path,
    state: BuildState,
    settings: StoreSettings,
    *,
    paths: Iterable[str] | None = None,
    rekey: bool = False,
    progress: Progress | None = None,
    records: bool = True,
) -> ScanDelta:
    """Bring the state's stats and scan cache up to repo/ and say which package files changed.
    ``paths``: the change feed (relpaths; None walks repo/). ``rekey``: the settings changed,
    so every package's cache key is computed again (a reader's settings key may have moved).
    ``records=False``: name the changed files but leave their records in the state (a first
    build, which plans everything from the state anyway, need not hold them all twice)."""
    scanner = Scanner(repo)
    delta = ScanDelta()
    recheck = set(state.meta_json("recheck", []))
    if paths is None:
        now = walk_repo_stats(repo)
        before = state.all_stats()
        changed_stats = {p: st for p, st in now.items() if st != before.get(p, _MISSING)}
        gone = [p for p in before if p not in now]
        current: dict[str, list[int] | None] = now
    else:
        candidates = {p.strip("/") for p in paths} | {SETTINGS_FILE} | recheck
        candidates |= _expand(scanner, repo, state, candidates)
        before = state.stats_of(candidates)
        now = {}
        for p in sorted(candidates):
            if not p or _hidden(p) or os.path.isdir(repo / p):
                continue  # a folder stands for its files (_expand), as the walk sees them
            st = _stat_key(repo / p)
            if st is not None or os.path.islink(repo / p):
                now[p] = st
        changed_stats = {p: st for p, st in now.items() if st != before.get(p, _MISSING)}
        gone = [p for p in before if p not in now]
        current = now
    delta.paths_changed = len(changed_stats) + len(gone)
    state.set_stats(changed_stats, gone)

    touched = set(changed_stats) | set(gone) | recheck
    # Package files a change touches: themselves, or through a sidecar (one that appears too).
    affected = {p for p in touched if p != SETTINGS_FILE and scanner.reader_for(p) is not None}
    affected |= state.packages_of_sidecars(touched)
    if rekey:
        affected |= state.entry_paths()
        if paths is None:
            affected |= {p for p in current if p != SETTINGS_FILE and scanner.reader_for(p) is not None}
    stats_needed: set[str] = set()
    readers_of: dict[str, Reader] = {}
    for p in affected:
        reader = scanner.reader_for(p)
        if reader is not None:
            readers_of[p] = reader
            stats_needed.update((p, *reader.sidecars(p)))
    # The stats of what the affected packages' keys read: seen now, else as the state has them.
    stats_now = state.stats_of(stats_needed - current.keys())
    stats_now.update((p, current[p]) for p in stats_needed & current.keys())
    entries = state.entries_of(affected)
    version = cache_version()

    jobs: list[tuple[str, Reader, list[Any]]] = []
    for p in sorted(affected):
        reader = readers_of[p]
        old = entries.get(p)
        present = p in stats_now
        if not present:
            if old is not None:
                delta.changed[p] = (entry_records(old), [])
                state.drop_entry(p)
            state.drop_sidecars(p)
            continue
        state.set_sidecars(p, reader.sidecars(p))
        key = [version, *scanner.key(p, reader, settings, stats_now)]
        if old is not None and old["key"] == key:
            continue
        jobs.append((p, reader, key))
    for index, entry in scanner.read(jobs, settings, progress):  # each stored as it arrives
        p = jobs[index][0]
        old = entries.get(p)
        old_records = entry_records(old) if old is not None else []
        if entry["key"] is None:  # could not be read (an OSError): tried again next build
            delta.unreadable.append(p)
            entry = {**entry, "key": None}
        state.set_entry(p, entry)
        old_digests = old.get("digests") if old is not None else []
        if (
            old is None
            or old_digests != (entry.get("digests") or [])
            or len(old_records) != len(entry["records"])
        ):
            delta.changed[p] = (old_records, entry_records(entry)) if records else ([], [])
    delta.files_read = len(jobs)

    # Strays: files of content folders that no package claims, among what this change touched.
    check = touched | {s for p in affected if p in readers_of for s in readers_of[p].sidecars(p)}
    present_paths = {p for p in check if p in current}
    claimed_sidecars = state.claimed_sidecars(check)
    add: list[str] = []
    drop: list[str] = []
    for p in check:
        stray = (
            p in present_paths
            and p != SETTINGS_FILE
            and scanner.reader_for(p) is None
            and p not in claimed_sidecars
            and p.startswith(CONTENT_FOLDERS)
        )
        (add if stray else drop).append(p)
    state.set_strays(add, drop)

    delta.skipped = {**{p: STRAY for p in state.strays()}, **state.errors()}
    total = state.entry_count()
    delta.files_cached = total - delta.files_read
    state.set_meta_json("recheck", sorted(delta.unreadable))
    return delta


_MISSING = object()


def _hidden(relpath: str) -> bool:
    return any(part.startswith(".") for part in relpath.split("/"))


def _expand(scanner: Scanner, repo: Path, state: BuildState, paths: set[str]) -> set[str]:
    """The files a change feed implies: a folder's files, a package's sidecars, a sidecar's package."""
    found: set[str] = set()
    for p in paths:
        full = repo / p
        if p and full.is_dir() and not full.is_symlink():
            found.update(f"{p}/{q}" for q in walk_repo_stats(full))
    every = paths | found
    for p in list(every):
        reader = scanner.reader_for(p)
        if reader is not None:
            found.update(reader.sidecars(p))
    found |= state.packages_of_sidecars(every)
    # A folder named in the feed: also the files the last build saw in it (gone ones included).
    for p in paths:
        if p:
            found.update(state.stats_below(p))
    return found

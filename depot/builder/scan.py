"""Scan repo/ into catalog records, re-reading only files whose stat changed.

The cache key of a file is its own (size, mtime_ns), the same for each of its sidecars, and the
part of the settings its reader depends on. A file whose key is unchanged is not opened at all:
a no-change rebuild of ten thousand packages is ten thousand ``stat`` calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from depot.builder.formats import FormatError, Reader, Source, readers
from depot.builder.model import Record, StoreSettings, record_from_dict
from depot.builder.settings import SETTINGS_FILE

CACHE_VERSION = 1
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


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = path.stat()
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


class Scanner:
    def __init__(self, repo: Path, cache_file: Path | None) -> None:
        self.repo = repo
        self.cache_file = cache_file
        self.readers: list[Reader] = readers()
        self._cache: dict[str, Any] = self._load_cache()

    def _load_cache(self) -> dict[str, Any]:
        if self.cache_file is None or not self.cache_file.exists():
            return {}
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # a damaged cache only costs a full re-read
        if data.get("version") != CACHE_VERSION or data.get("repo") != str(self.repo.resolve()):
            return {}
        return data.get("entries", {})

    def save_cache(self, write: Callable[[Path, bytes], Any]) -> None:
        if self.cache_file is None:
            return
        payload = {"version": CACHE_VERSION, "repo": str(self.repo.resolve()), "entries": self._cache}
        write(self.cache_file, json.dumps(payload, separators=(",", ":")).encode())

    def reader_for(self, relpath: str) -> Reader | None:
        return next((r for r in self.readers if r.matches(relpath)), None)

    def scan(self, settings: StoreSettings, progress: Progress | None = None) -> ScanResult:
        result = ScanResult()
        files = walk_repo(self.repo)
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
            key = self._key(relpath, reader, settings)
            entry = self._cache.get(relpath)
            if entry is not None and entry["key"] == key:
                new_cache[relpath] = entry
                result.files_cached += 1
            else:
                to_read.append((relpath, reader, key))

        def read_one(job: tuple[str, Reader, list[Any]]) -> tuple[str, dict[str, Any]]:
            relpath, reader, key = job
            path = self.repo / relpath
            try:
                if path.is_symlink():
                    raise FormatError("symbolic links are not followed")
                records = reader.read(Source(self.repo, relpath, settings))
                entry = {"key": key, "records": [r.to_dict() for r in records], "error": None}
            except FormatError as exc:
                entry = {"key": key, "records": [], "error": str(exc)}
            except OSError as exc:
                entry = {"key": None, "records": [], "error": f"cannot read: {exc.strerror or exc}"}
            if progress:
                progress.advance(1)
            return relpath, entry

        if to_read:
            if progress:
                progress.start(len(to_read), "reading packages")
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
            result.records.extend(record_from_dict(r) for r in entry["records"])
        self._cache = {k: v for k, v in new_cache.items() if v["key"] is not None}
        return result

    def _key(self, relpath: str, reader: Reader, settings: StoreSettings) -> list[Any]:
        stats = [_stat_key(self.repo / p) for p in (relpath, *reader.sidecars(relpath))]
        return [stats, reader.settings_key(settings)]

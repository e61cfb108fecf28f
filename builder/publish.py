"""Write outputs into site/ incrementally and crash-safely.

Each output has a *fingerprint*: a digest of everything its bytes depend on. The manifest (kept
beside site/, not in it) remembers, for each file, the fingerprint it was rendered from and the
size and mtime it was written with. An output whose fingerprint is unchanged and whose file
still has that size and mtime is neither rendered nor written. One that must be rendered is
compared with the file on disk and written only when its bytes differ.

Files are published in tiers: leaves (package files, assets) first, then pages and shards, then
the indexes that point at them, then the route table. Within a tier every file is written to a
temporary name, made durable, then renamed, so a reader never sees a half-written file nor an
index that points at a file not yet there. Files no output claims any more go last.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.atomic import ContentChangedError, copy_temp, fsync_dir, write_temp
from builder.entrystore import EntryStore
from builder.hashing import sha256_file

# Above this many files in one tier, one sync(2) is far cheaper than an fsync per file.
BATCH_SYNC_THRESHOLD = 32

LEAF, PAGE, INDEX, ENTRY = 0, 1, 2, 3


class InputChangedError(Exception):
    """A package file in repo/ changed between the scan and its copy into site/."""


@dataclass
class Output:
    """One file of site/: where it goes, what it depends on, how to make it."""

    path: str  # relative to site/, POSIX
    fingerprint: str
    media_type: str
    tier: int = PAGE
    render: Callable[[], bytes] | None = None
    source: Path | None = None  # a file copied as it is (package files)
    url: str | None = None  # the public URL, when it is not "/" + path
    query: dict[str, str] | None = None  # for dialect URLs that carry a query string
    status: int | None = None  # HTTP status to answer with, when not 200 (static error bodies)

    @property
    def public_url(self) -> str:
        return self.url if self.url is not None else "/" + self.path


@dataclass
class PublishReport:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_written: int = 0


class Publisher:
    def __init__(self, site: Path, manifest_file: Path) -> None:
        self.site = site
        self.manifest_file = manifest_file
        # Saved by what changed (see entrystore); a manifest of another site loads as {}.
        self._store = EntryStore(manifest_file, {"site": str(site.resolve())})
        self.manifest: dict[str, dict[str, Any]] = self._store.load()
        self._saved = self.manifest  # what the manifest files hold: save() skips an equal one

    def known(self, path: str, fp: str) -> tuple[int, str] | None:
        """Size and SHA-256 of ``path`` as last published from fingerprint ``fp``: an output
        that states another file's digest need not render that file when it did not change."""
        entry = self.manifest.get(path)
        if entry is None or entry["fp"] != fp:
            return None
        return entry["size"], entry["sha256"]

    def publish(self, outputs: Iterable[Output], full_sweep: bool = False) -> PublishReport:
        """Bring site/ to exactly ``outputs``. ``full_sweep`` also hunts files the manifest
        does not know (after a killed build, or when there is no manifest)."""
        report = PublishReport()
        self.site.mkdir(parents=True, exist_ok=True)
        by_tier: dict[int, list[Output]] = {}
        wanted: set[str] = set()
        for out in outputs:
            if out.path in wanted:
                raise ValueError(f"two outputs claim {out.path}")
            wanted.add(out.path)
            by_tier.setdefault(out.tier, []).append(out)
        new_manifest: dict[str, dict[str, Any]] = {}
        for tier in sorted(by_tier):
            self._publish_tier(by_tier[tier], new_manifest, report)
        stale = set(self.manifest) - wanted
        sweep = full_sweep or not self.manifest
        if sweep:
            stale |= self._files_on_disk() - wanted
        for path in sorted(stale):
            with contextlib.suppress(FileNotFoundError):
                (self.site / path).unlink()
                report.deleted.append(path)
        empty_candidates = {str(Path(p).parent) for p in stale}
        if sweep:  # a build killed between deleting a folder's last file and the folder
            empty_candidates |= self._dirs_on_disk()
        self._prune_empty_dirs(empty_candidates)
        self.manifest = new_manifest
        return report

    def save(self) -> None:
        if self.manifest == self._saved and self.manifest_file.exists():
            return  # a build that changed nothing: the files on disk already say this
        self._store.save(self.manifest)
        self._saved = self.manifest

    def _publish_tier(
        self, outputs: list[Output], manifest: dict[str, dict[str, Any]], report: PublishReport
    ) -> None:
        batch = len(outputs) > BATCH_SYNC_THRESHOLD
        pending: list[tuple[Path, Path]] = []
        written: list[str] = []
        root = str(self.site)
        for out in sorted(outputs, key=lambda o: o.path):
            old = self.manifest.get(out.path)
            st = _stat(f"{root}/{out.path}")  # a str, not a Path: this runs for every file
            if old and old["fp"] == out.fingerprint and st == (old["size"], old["mtime_ns"]):
                manifest[out.path] = old
                report.unchanged += 1
                continue
            target = self.site / out.path
            if out.source is not None:
                size, sha = old_size_sha(out)
                if st is not None and st[0] == size and sha256_file(target)[1] == sha:
                    tmp = None
                else:
                    try:
                        tmp = copy_temp(target, out.source, sync=not batch, expected_sha256=sha)
                    except ContentChangedError as exc:
                        raise InputChangedError(
                            f"{out.source} changed during the build; nothing that points at it was "
                            "published, run the build again"
                        ) from exc
            else:
                assert out.render is not None, out.path
                data = out.render()
                size, sha = len(data), hashlib.sha256(data).hexdigest()
                if st is not None and st[0] == size and sha256_file(target)[1] == sha:
                    tmp = None
                else:
                    tmp = write_temp(target, data, sync=not batch)
            manifest[out.path] = {"fp": out.fingerprint, "sha256": sha, "size": size}
            if tmp is None:
                report.unchanged += 1
                assert st is not None
                manifest[out.path]["mtime_ns"] = st[1]  # untouched since the stat above
            else:
                pending.append((tmp, target))
                written.append(out.path)
                report.written.append(out.path)
                report.bytes_written += size
        if batch and pending:
            os.sync()
        dirs: set[Path] = set()
        for tmp, target in pending:
            os.replace(tmp, target)
            dirs.add(target.parent)
        if len(dirs) > BATCH_SYNC_THRESHOLD:
            os.sync()  # makes every rename above durable: far cheaper than an fsync per folder
        else:
            for d in dirs:
                fsync_dir(d)
        for path in written:
            entry = manifest[path]
            st = _stat(f"{root}/{path}")
            assert st is not None
            entry["size"], entry["mtime_ns"] = st

    def _files_on_disk(self) -> set[str]:
        found: set[str] = set()
        for dirpath, _dirs, files in os.walk(self.site):
            rel = os.path.relpath(dirpath, self.site).replace(os.sep, "/")
            prefix = "" if rel == "." else rel + "/"
            for name in files:
                found.add(prefix + name)
        return found

    def _dirs_on_disk(self) -> set[str]:
        return {
            os.path.relpath(os.path.join(dirpath, d), self.site).replace(os.sep, "/")
            for dirpath, dirs, _files in os.walk(self.site)
            for d in dirs
        }

    def _prune_empty_dirs(self, candidates: set[str]) -> None:
        for rel in sorted(candidates, key=len, reverse=True):
            d = self.site / rel
            while d != self.site and d.is_relative_to(self.site):
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent


def old_size_sha(out: Output) -> tuple[int, str]:
    """Size and SHA-256 of a copied file: package files carry them in their fingerprint."""
    size, _, sha = out.fingerprint.partition(":")
    return int(size), sha


def _stat(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns

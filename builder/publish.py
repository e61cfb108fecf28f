"""Write outputs into site/ incrementally and crash-safely.

Each output has a *fingerprint*: a digest of everything its bytes depend on. The manifest (kept
beside site/, not in it) remembers, for each file, the fingerprint it was rendered from and the
size and mtime it was written with. An output whose fingerprint is unchanged and whose file
still has that size and mtime is neither rendered nor written. One that must be rendered is
compared with the file on disk and written only when its bytes differ.

Files are published in tiers: leaves (package files, assets) first, then pages and shards, then
the indexes that point at them, then the signed metadata (targets, snapshot, timestamp: each
names the one before), then the route table. Within a tier every file is written to a
temporary name, made durable, then renamed, so a reader never sees a half-written file nor an
index that points at a file not yet there. Files no output claims any more go last.

A package file that vanishes or changes between the scan and its copy does not stop the build:
the rest of its tier is published, nothing of a later tier is, and InputChangedError names the
file, so the build can plan again without it (``build.py``). An output marked ``retain`` (a
content-named index that older indexes name) is not deleted when it stops being an output: it
stays, with its route, for RETAIN_GENERATIONS newer generations and RETAIN_SECONDS, like apt's
by-hash files, so a reader that fetched the previous entry still finds what it names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.atomic import ContentChangedError, copy_temp, fsync_dir, write_temp
from builder.entrystore import EntryStore
from builder.hashing import sha256_file

# Above this many files in one tier, one sync(2) is far cheaper than an fsync per file.
BATCH_SYNC_THRESHOLD = 32

LEAF, PAGE, INDEX = 0, 1, 2
# The signed TUF metadata (builder/trust/) describes the files of the tiers above, so it comes
# after them, each role after the files it names: root versions and targets, then the snapshot
# that names the targets, then the timestamp that names the snapshot. The route table is last.
TRUST_TARGETS, TRUST_SNAPSHOT, TRUST_TIMESTAMP = 3, 4, 5
ENTRY = 6

# How long an old content-named index (Output.retain) stays after a newer one replaced it. It is
# deleted once BOTH hold: RETAIN_GENERATIONS newer generations of the retained files were
# published (so the entries of the current and the three previous generations always resolve,
# however fast builds follow each other) and RETAIN_SECONDS have passed since it stopped being
# current (so a reader with an older entry has that long, however many builds run meanwhile).
# A device fetches the entry and then the platform index in two requests a second apart, and a
# cache revalidates the entry (no-cache); an hour also covers a slow link that retries, a
# CDN rule that caches JSON for minutes, and a mirror that syncs every few minutes. Longer
# costs disk: one platform index per generation per changed platform, so a store rebuilt
# every 10 s for a whole hour keeps 360 old copies of each platform index it changed.
RETAIN_GENERATIONS = 3
RETAIN_SECONDS = 3600.0

# Keys of a manifest entry for a retained file (it is not an output of the current build).
_HISTORY_KEYS = ("since", "later")


def wall_clock() -> float:
    """Seconds since the epoch, when a retained file stopped being current (tests move it)."""
    return time.time()


class InputChangedError(Exception):
    """Package files in repo/ vanished or changed between the scan and their copy into site/
    (``changed``: source file → what happened), or outputs that read repo/ while publishing
    failed (``errors``: site path → exception). The tier's other files were published, no file
    of a later tier was, and nothing was deleted: the build plans again without those inputs."""

    def __init__(self, changed: dict[Path, str], errors: dict[str, Exception]) -> None:
        self.changed, self.errors = changed, errors
        parts = [f"{source} {why} during the build" for source, why in sorted(changed.items())]
        parts += [f"{path} failed: {type(exc).__name__}: {exc}" for path, exc in sorted(errors.items())]
        super().__init__("; ".join(parts) + "; nothing that points at it was published")


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
    # Named by its content, and named by other files (device/index.json names the pinned platform
    # indexes): kept, with its route, for a while after no output claims it (RETAIN_*).
    retain: bool = False
    # Set by Publisher.history on such a file of an earlier build that is still kept: (when it
    # stopped being current, how many newer generations were published since). Never rendered.
    retired: tuple[float, int] | None = None

    @property
    def public_url(self) -> str:
        return self.url if self.url is not None else "/" + self.path


@dataclass
class PublishReport:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_written: int = 0
    retained: int = 0  # old retained files still kept (Output.retired)


class Publisher:
    def __init__(self, site: Path, manifest_file: Path) -> None:
        self.site = site
        self.manifest_file = manifest_file
        # Saved by what changed (see entrystore); a manifest of another site loads as {}.
        self._store = EntryStore(manifest_file, {"site": str(site.resolve())})
        self.manifest: dict[str, dict[str, Any]] = self._store.load()
        self._saved = self.manifest  # what the manifest files hold: save() skips an equal one
        # What the last finished build left, for the retention plan: after a publish stopped by
        # InputChangedError, self.manifest also holds that attempt's leaves, so each attempt of
        # one build plans its history from the same state.
        self._loaded = self.manifest

    def known(self, path: str, fp: str) -> tuple[int, str] | None:
        """Size and SHA-256 of ``path`` as last published from fingerprint ``fp``: an output
        that states another file's digest need not render that file when it did not change."""
        entry = self.manifest.get(path)
        if entry is None or entry["fp"] != fp:
            return None
        return entry["size"], entry["sha256"]

    def intact(self, path: str, sha256: str) -> bool:
        """``path`` is published with these bytes and nobody touched it since."""
        entry = self.manifest.get(path)
        return (
            entry is not None
            and entry["sha256"] == sha256
            and _stat(self.site / path) == (entry["size"], entry["mtime_ns"])
        )

    def history(self, outputs: list[Output], now: float | None = None) -> list[Output]:
        """The retained files of earlier builds that this build keeps (``retired`` outputs, to
        publish and route with ``outputs``): every file of an output marked ``retain`` that
        ``outputs`` no longer claims, until RETAIN_GENERATIONS newer generations were
        published and RETAIN_SECONDS passed. A generation is a build whose set of retained
        outputs differs from the last one's. A file found damaged or missing is not kept."""
        now = wall_clock() if now is None else now
        wanted = {o.path for o in outputs}
        current = {o.path for o in outputs if o.retain}
        was_current = {p for p, e in self._loaded.items() if e.get("retain") and "since" not in e}
        newer = 1 if current != was_current else 0
        kept = []
        for path, entry in sorted(self._loaded.items()):
            if not entry.get("retain") or path in wanted:
                continue
            if "since" in entry:
                since, later = float(entry["since"]), int(entry["later"]) + newer
            else:  # current until this build
                since, later = now, 0
            if later >= RETAIN_GENERATIONS and now - since >= RETAIN_SECONDS:
                continue
            if _stat(self.site / path) != (entry["size"], entry["mtime_ns"]):
                continue
            kept.append(
                Output(
                    path=path,
                    fingerprint=entry["fp"],
                    media_type=entry["type"],
                    tier=PAGE,
                    url=entry.get("url"),
                    retired=(since, later),
                )
            )
        return kept

    def history_due(self, now: float | None = None) -> bool:
        """A retained file may be deleted now: the no-change fast path must not skip that."""
        now = wall_clock() if now is None else now
        return any(
            "since" in e and e["later"] >= RETAIN_GENERATIONS and now - e["since"] >= RETAIN_SECONDS
            for e in self.manifest.values()
        )

    def retained(self) -> set[str]:
        """The files of site/ kept as history: no output of the last build claims them."""
        return {p for p, e in self.manifest.items() if "since" in e}

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
            try:
                self._publish_tier(by_tier[tier], new_manifest, report)
            except InputChangedError:
                # What this attempt published stays known, so a second attempt neither copies it
                # again nor leaves it behind when no output claims it any more.
                self.manifest = {**self.manifest, **new_manifest}
                raise
        # A retained file found damaged has no entry: it goes with the stale ones.
        kept = set(new_manifest)
        stale = set(self.manifest) - kept
        sweep = full_sweep or not self.manifest
        if sweep:
            stale |= self._files_on_disk() - kept
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
        changed: dict[Path, str] = {}
        errors: dict[str, Exception] = {}
        for out in sorted(outputs, key=lambda o: o.path):
            old = self.manifest.get(out.path)
            st = _stat(f"{root}/{out.path}")  # a str, not a Path: this runs for every file
            if out.retired is not None:
                if old is not None and st == (old["size"], old["mtime_ns"]):
                    since, later = out.retired
                    manifest[out.path] = {**old, "since": since, "later": later}
                    report.retained += 1
                continue
            if old and old["fp"] == out.fingerprint and st == (old["size"], old["mtime_ns"]):
                manifest[out.path] = _current(old, out) if out.retain or "since" in old else old
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
                    except ContentChangedError:
                        changed[out.source] = "changed"
                        continue
                    except OSError as exc:
                        if exc.filename != str(out.source):
                            raise  # not the package file: site/ itself (a full disk, say)
                        gone = isinstance(exc, FileNotFoundError)
                        changed[out.source] = "vanished" if gone else f"cannot be read ({exc.strerror})"
                        continue
            else:
                assert out.render is not None, out.path
                try:
                    data = out.render()
                except Exception as exc:  # the build tells an input that changed from a bug
                    errors[out.path] = exc
                    continue
                size, sha = len(data), hashlib.sha256(data).hexdigest()
                if st is not None and st[0] == size and sha256_file(target)[1] == sha:
                    tmp = None
                else:
                    tmp = write_temp(target, data, sync=not batch)
            manifest[out.path] = _current({"fp": out.fingerprint, "sha256": sha, "size": size}, out)
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
        if changed or errors:
            # A copy that failed after making its folder leaves it empty: no clean build has it.
            self._prune_empty_dirs({str(Path(o.path).parent) for o in outputs if o.source in changed})
            raise InputChangedError(changed, errors)

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


def _current(entry: dict[str, Any], out: Output) -> dict[str, Any]:
    """The manifest entry of an output of this build: no history keys, and what a retained
    file needs once it is no longer an output (its media type and URL, for the route table)."""
    entry = {k: v for k, v in entry.items() if k not in _HISTORY_KEYS and k not in ("retain", "type", "url")}
    if out.retain:
        assert not out.query and not out.status, f"{out.path}: a retained file has a plain route"
        entry.update(retain=True, type=out.media_type)
        if out.url is not None:
            entry["url"] = out.url
    return entry


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

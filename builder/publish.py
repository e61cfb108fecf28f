"""Write outputs into site/ incrementally and crash-safely.

Each output has a *fingerprint*: a digest of everything its bytes depend on. The manifest (the
``outputs`` table of the build state, beside site/) remembers, for each file, the owner that
planned it, the fingerprint it was rendered from and the size and mtime it was written with.
The publisher is given the new outputs of the owners a build re-planned (builder/plan.py) and
touches nothing else: an output whose fingerprint is unchanged and whose file still has that
size and mtime is neither rendered nor written; one that must be rendered is compared with the
file on disk and written only when its bytes differ; the files of those owners that no output
claims any more are deleted. The route table (builder/routes.py) is kept from the manifest:
only the shards of URLs that came, went or changed are written again.

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
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.atomic import ContentChangedError, copy_temp, fsync_dir, write_temp
from builder.hashing import sha256_file
from builder.progress import Progress
from builder.routes import ROUTES_FILE, bucket_of, entry_bytes, route_row, shard_bytes, shard_path
from builder.state import BuildState, OutputRow

# Above this many files in one tier, one sync(2) is far cheaper than an fsync per file.
BATCH_SYNC_THRESHOLD = 32
# A tier's files are renamed into place, and their rows recorded, this many at a time: a
# first build of a hundred thousand package files holds a few thousand rows, not all of them.
PLACE_EVERY = 4096

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
# A device fetches the entry and then the shards it names a second apart, and a
# cache revalidates the entry (no-cache); an hour also covers a slow link that retries, a
# CDN rule that caches JSON for minutes, and a mirror that syncs every few minutes. Longer
# costs disk: one shard per generation per changed shard, so a store rebuilt every 10 s for
# a whole hour keeps 360 old copies of each shard it changed.
RETAIN_GENERATIONS = 3
RETAIN_SECONDS = 3600.0

ROUTES_OWNER = "routes"


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


@dataclass(slots=True)  # a first build plans one per file of site/
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
    # Named by its content, and named by other files (device/index.json names the device
    # index's shards): kept, with its route, for a while after no output claims it (RETAIN_*).
    retain: bool = False
    # The SHA-256 of what ``render`` returns, when the renderer already computed it (a device
    # shard is hashed once for the entry, not again by the publisher).
    sha256: str | None = None

    @property
    def public_url(self) -> str:
        return self.url if self.url is not None else "/" + self.path


@dataclass
class PublishReport:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_written: int = 0
    retained: int = 0  # old retained files still kept (history)
    deleted_dirs: set[str] = field(default_factory=set)  # folders to prune once the files are gone
    _written: set[str] = field(default_factory=set, repr=False)

    def wrote(self, path: str, size: int) -> None:
        """A file renamed into place. Each path is listed once, however often a build rewrites
        it (the route table goes after each tier); its bytes count every time."""
        self.bytes_written += size
        if path not in self._written:
            self._written.add(path)
            self.written.append(path)


class Publisher:
    def __init__(self, site: Path, state: BuildState) -> None:
        self.site = site
        self.state = state
        self._routes_pending: set[str] = set()  # URLs whose rows went outside publish()
        # Across the calls of one build (final=False, then True): the retained files and the
        # history before it, and the files to delete once the last call has published.
        self._session: tuple[set[str], set[str], list[str], set[str]] | None = None

    def known(self, path: str, fp: str) -> tuple[int, str] | None:
        """Size and SHA-256 of ``path`` as last published from fingerprint ``fp``: an output
        that states another file's digest need not render that file when it did not change."""
        row = self.state.output(path)
        if row is None or row.fp != fp or not row.owner:
            return None
        return row.size, row.sha256

    def intact(self, path: str, sha256: str) -> bool:
        """``path`` is published with these bytes and nobody touched it since."""
        row = self.state.output(path)
        return (
            row is not None and row.sha256 == sha256 and _stat(self.site / path) == (row.size, row.mtime_ns)
        )

    def retained(self) -> set[str]:
        """The files of site/ kept as history: no output of the last build claims them."""
        return {row.path for row in self.state.retired()}

    def history_due(self, now: float | None = None) -> bool:
        """A retained file may be deleted now: a build with nothing else to do must do that."""
        now = wall_clock() if now is None else now
        return self.state.history_due(now, RETAIN_GENERATIONS, RETAIN_SECONDS)

    def damaged(self) -> tuple[set[str], int]:
        """Owners of files of site/ that are missing or not as published (a full check, after a
        build was killed or when asked), and how many files that was. Damaged retained files
        are forgotten (their rows dropped): they are history, nobody renders them again."""
        owners: set[str] = set()
        count = 0
        root = str(self.site)
        for row in self.state.all_outputs():
            if _stat(f"{root}/{row.path}") == (row.size, row.mtime_ns):
                continue
            count += 1
            if row.owner == ROUTES_OWNER:  # written again from the manifest (_publish_routes)
                self.state.drop_output(row.path)
            elif row.owner:
                owners.add(row.owner)
                row.fp = ""  # so the owner's new output is written whatever its fingerprint
                self.state.put_output(row)
            else:
                self.state.drop_output(row.path)
                self._routes_pending.add(row.public_url)
                with contextlib.suppress(FileNotFoundError):
                    (self.site / row.path).unlink()
        return owners, count

    def publish(
        self,
        desired: dict[str, list[Output]],
        *,
        report: PublishReport | None = None,
        sweep: bool = False,
        now: float | None = None,
        progress: Progress | None = None,
        final: bool = True,
    ) -> PublishReport:
        """Bring the files of the owners in ``desired`` to exactly those outputs, tier by tier,
        then retire or delete what they no longer claim, keep the history and the route table.
        ``sweep`` also deletes files of site/ the manifest does not know (a first build, or
        after a killed one). Raises InputChangedError as the module says; what was published
        before it is in the manifest.

        ``final=False`` publishes one part of a build (a whole catalog is published renderer by
        renderer, so that only one renderer's outputs are in memory at a time): what its owners
        no longer claim leaves the manifest, but the files stay, and the route table's last
        rows wait, until the call with ``final=True``, since a later part (an index) may still
        name them until it is published itself. (A route shard that a later part rewrites for
        its own new files drops such a row early: that file is unrouted a few seconds before
        the end of the build instead of at it; it is deleted at the end either way.)"""
        report = report if report is not None else PublishReport()
        now = wall_clock() if now is None else now
        self.site.mkdir(parents=True, exist_ok=True)
        state = self.state
        wanted: dict[str, tuple[str, Output]] = {}
        for owner, outputs in desired.items():
            for out in outputs:
                if out.path in wanted:
                    raise ValueError(f"two outputs claim {out.path}")
                wanted[out.path] = (owner, out)
        old: dict[str, OutputRow] = {}
        for owner in desired:
            old.update((row.path, row) for row in state.outputs_of(owner))
        at = state.outputs_at(p for p in wanted if p not in old)
        for path, row in at.items():
            if row.owner and row.owner not in desired:
                raise ValueError(f"two outputs claim {path} ({row.owner} and {wanted[path][0]})")
        rows = {**at, **old}
        if self._session is None:  # the first call of this build: the history is counted once
            self._session = (state.current_retained(), self.retained(), [], set())
        # doomed, gone_routes: files no output claims any more and their URLs, deleted and
        # unrouted after the last part, which a later part may still name until then
        retained_before, retired_before, doomed, gone_routes = self._session
        if doomed:  # an earlier call let go of a path that this one claims: it stays
            doomed[:] = [path for path in doomed if path not in wanted]
            gone_routes -= {out.public_url for _owner, out in wanted.values()}
        # URLs whose rows changed: kept across an attempt that InputChangedError stopped, whose
        # rows were written but whose route table was not.
        routes_touched = self._routes_pending

        by_tier: dict[int, list[tuple[str, Output]]] = {}
        for owner, out in wanted.values():
            by_tier.setdefault(out.tier, []).append((owner, out))
        if progress:
            progress.start(len(wanted), "publishing")
        try:
            tiers = sorted(by_tier)
            # A first build has no route table to keep serving: its table goes last, whole.
            between = state.output(ROUTES_FILE) is not None
            for tier in tiers:
                self._publish_tier(by_tier[tier], rows, report, routes_touched)
                if between and routes_touched and (tier != tiers[-1] or not final):
                    # Routable before the next tier (or part), whose files may name these: the
                    # device entry names new shards, a page links a new package file, and the
                    # static mount and nginx serve only what the route table lists. The last
                    # tier's go with the deletions' below.
                    self._publish_routes(routes_touched, report, doomed)
                    routes_touched.clear()
                if progress:
                    progress.advance(len(by_tier[tier]))
        finally:
            if progress:
                progress.finish()

        # Files no output claims go last, after the route table stopped naming them.
        for path, row in sorted(old.items()):
            if path in wanted:
                continue
            if row.retain and _stat(self.site / path) == (row.size, row.mtime_ns):
                row.owner, row.since, row.later = "", now, 0
                state.put_output(row)
                continue
            state.drop_output(path)
            if row.routed:
                gone_routes.add(row.public_url)
            doomed.append(path)
        if not final:
            return report
        self._session = None
        routes_touched |= gone_routes
        doomed += self._keep_history(retained_before, retired_before, now, routes_touched)
        self._publish_routes(routes_touched, report, doomed)
        self._routes_pending = set()
        for path in doomed:
            with contextlib.suppress(FileNotFoundError):
                (self.site / path).unlink()
                report.deleted.append(path)
        report.deleted_dirs.update(str(Path(p).parent) for p in doomed)
        if sweep:
            self._sweep(report)
        self._prune_empty_dirs(report.deleted_dirs)
        report.deleted_dirs = set()
        report.retained = len(state.retired())
        return report

    def _keep_history(
        self, retained_before: set[str], retired_before: set[str], now: float, routes: set[str]
    ) -> list[str]:
        """A generation is a build whose set of current retained files changed: every file
        retired before it then counts one more newer generation. Past both limits (RETAIN_*)
        it goes: returns those files, to delete."""
        state = self.state
        if state.current_retained() != retained_before:
            state.count_generation(retired_before)
        gone = []
        for row in state.retired():
            if (row.later or 0) >= RETAIN_GENERATIONS and now - (row.since or now) >= RETAIN_SECONDS:
                state.drop_output(row.path)
                routes.add(row.public_url)
                gone.append(row.path)
        return gone

    def _publish_routes(self, urls: set[str], report: PublishReport, doomed: list[str]) -> None:
        """Write the shards of the route table whose URLs changed, then its entry. A shard
        left empty goes with ``doomed``, after the entry stopped naming it."""
        state = self.state
        buckets = {bucket_of(u) for u in urls}
        if state.output(ROUTES_FILE) is None:  # a first build, or the table was damaged: all
            buckets |= state.routed_buckets()
            buckets |= {
                p.removeprefix("routes/").removesuffix(".json") for p, _s in state.files_of(ROUTES_OWNER)
            }
        elif not buckets:
            return
        outputs: list[tuple[str, Output]] = []
        for bucket in sorted(buckets):
            rows = [
                route_row(url or "/" + path, path, kind, json.loads(q) if q else None, status)
                for path, url, kind, q, status in state.route_rows(bucket)
            ]
            path = shard_path(bucket)
            if not rows:
                if state.output(path) is not None:
                    state.drop_output(path)
                    doomed.append(path)
                continue
            data = shard_bytes(rows)
            outputs.append((ROUTES_OWNER, _fixed_output(path, data, "application/json")))
        self._publish_tier(
            outputs, state.outputs_at(p.path for _o, p in outputs), report, set(), routed=False
        )
        shards = [
            (path.removeprefix("routes/").removesuffix(".json"), sha)
            for path, sha in state.files_of(ROUTES_OWNER)
            if path != ROUTES_FILE
        ]
        entry = _fixed_output(ROUTES_FILE, entry_bytes(shards), "application/json")
        self._publish_tier(
            [(ROUTES_OWNER, entry)], state.outputs_at([ROUTES_FILE]), report, set(), routed=False
        )

    def _publish_tier(
        self,
        outputs: list[tuple[str, Output]],
        rows: dict[str, OutputRow],
        report: PublishReport,
        routes: set[str],
        routed: bool = True,
    ) -> None:
        batch = len(outputs) > BATCH_SYNC_THRESHOLD
        pending: list[tuple[Path, Path]] = []
        written: list[OutputRow] = []
        root = str(self.site)
        changed: dict[Path, str] = {}
        errors: dict[str, Exception] = {}
        state = self.state
        for n, (owner, out) in enumerate(sorted(outputs, key=lambda o: o[1].path)):
            if pending and n % PLACE_EVERY == 0:
                self._place(pending, written, batch)  # a first build's rows are not all held
            old = rows.get(out.path)
            st = _stat(f"{root}/{out.path}")  # a str, not a Path: this runs for every file
            new = _row(owner, out, routed)
            if old is not None and routed and _route_key(old) != _route_key(new):
                routes.add(old.public_url)
                routes.add(new.public_url)
            elif old is None and routed:
                routes.add(new.public_url)
            if old is not None and old.fp == out.fingerprint and st == (old.size, old.mtime_ns):
                new.sha256, new.size, new.mtime_ns = old.sha256, old.size, old.mtime_ns
                if _row_key(new) != _row_key(old):
                    state.put_output(new)
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
                size, sha = len(data), out.sha256 or hashlib.sha256(data).hexdigest()
                if st is not None and st[0] == size and sha256_file(target)[1] == sha:
                    tmp = None
                else:
                    tmp = write_temp(target, data, sync=not batch)
            new.sha256, new.size = sha, size
            if tmp is None:
                report.unchanged += 1
                assert st is not None
                new.mtime_ns = st[1]  # untouched since the stat above
                state.put_output(new)
            else:
                pending.append((tmp, target))
                written.append(new)
                report.wrote(out.path, size)
        self._place(pending, written, batch)
        if changed or errors:
            # A copy that failed after making its folder leaves it empty: no clean build has it.
            self._prune_empty_dirs({str(Path(o.path).parent) for _w, o in outputs if o.source in changed})
            raise InputChangedError(changed, errors)

    def _place(self, pending: list[tuple[Path, Path]], written: list[OutputRow], batch: bool) -> None:
        """Rename the temporary files of ``pending`` into place, durably, and record their rows;
        empties both lists."""
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
        root = str(self.site)
        for row in written:
            st = _stat(f"{root}/{row.path}")
            assert st is not None
            row.size, row.mtime_ns = st
            self.state.put_output(row)
        pending.clear()
        written.clear()

    def _sweep(self, report: PublishReport) -> None:
        """Delete every file of site/ the manifest does not know, and every empty folder."""
        known = self.state.output_paths()
        for dirpath, _dirs, files in os.walk(self.site):
            rel = os.path.relpath(dirpath, self.site).replace(os.sep, "/")
            prefix = "" if rel == "." else rel + "/"
            for name in files:
                if prefix + name not in known:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                        report.deleted.append(prefix + name)
        dirs = {
            os.path.relpath(os.path.join(dirpath, d), self.site).replace(os.sep, "/")
            for dirpath, ds, _files in os.walk(self.site)
            for d in ds
        }
        self._prune_empty_dirs(dirs)

    def _prune_empty_dirs(self, candidates: set[str]) -> None:
        for rel in sorted(candidates, key=len, reverse=True):
            d = self.site / rel
            while d != self.site and d.is_relative_to(self.site):
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent


def _row(owner: str, out: Output, routed: bool) -> OutputRow:
    url = out.url
    return OutputRow(
        path=out.path,
        owner=owner,
        fp=out.fingerprint,
        sha256="",
        size=0,
        mtime_ns=0,
        type=out.media_type,
        tier=out.tier,
        url=url,
        query=json.dumps(out.query, sort_keys=True) if out.query else None,
        status=out.status if out.status and out.status != 200 else None,
        source=str(out.source) if out.source is not None else None,
        retain=int(out.retain),
        routed=int(routed),
        bucket=bucket_of(out.public_url) if routed else None,
        since=None,
        later=None,
    )


def _route_key(row: OutputRow) -> tuple[object, ...]:
    return (row.public_url, row.type, row.query, row.status, row.routed)


def _row_key(row: OutputRow) -> tuple[object, ...]:
    return (
        row.owner,
        row.type,
        row.tier,
        row.url,
        row.query,
        row.status,
        row.source,
        row.retain,
        row.routed,
        row.since,
        row.later,
    )


def _fixed_output(path: str, data: bytes, media_type: str) -> Output:
    return Output(
        path=path,
        fingerprint="bytes:" + hashlib.sha256(data).hexdigest(),
        media_type=media_type,
        tier=ENTRY,
        render=lambda: data,
    )


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

"""``depot build``: repo/ → site/, incrementally, one writer at a time.

The build keeps its state beside site/ (``.<site>.depot/``), never inside it, so that site/
stays a pure function of repo/: the build state (builder/state.py: stats, scan cache, parts,
fragments, the output manifest), the last build report and the single-writer lock live there.

A build follows the change, not the store: it finds the package files whose stat changed
(builder/scan.py), re-plans the parts their records feed and the targets whose fragments
changed (builder/plan.py), and publishes the outputs of those owners (builder/publish.py). A
change of settings, templates or builder code plans everything again (reading only the packages
whose cache key moved); a first build, a build after a killed one and ``full`` also check
every file of site/.

A package file that vanishes or changes between the scan and the publish does not stop the
build (see :func:`_publish_holding`): that file is published as the last build left it (or not
at all when that is gone too), everything else as scanned, and the next build reads it again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from builder.atomic import atomic_write, remove_stale_temps
from builder.errors import BuildError, DiskFullError, TrustError
from builder.model import Record, StoreSettings
from builder.plan import Planner
from builder.progress import Progress
from builder.publish import INDEX, InputChangedError, Output, Publisher, PublishReport
from builder.registry import renderers
from builder.render import RenderContext, Renderer, fingerprint, json_bytes
from builder.routes import ROUTES_FILE
from builder.scan import ScanDelta, scan_changes, walk_repo_stats
from builder.settings import load_settings
from builder.state import STATE_FILE, BuildState

TRUST_OWNER = "trust"
# The build state of Depot before the SQLite one: deleted by the first build that finds it.
LEGACY_STATE_FILES = (
    "manifest.json",
    "manifest.json.delta",
    "scan-cache.json",
    "scan-cache.json.delta",
    "inputs.json",
)

log = logging.getLogger("builder.build")


class ForeignSiteError(BuildError):
    """--site names a folder with other files in it: publishing would delete them."""


class BuildBusyError(BuildError):
    """Another build holds the lock and we were told not to wait."""


@dataclass
class BuildResult:
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_written: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    files_read: int = 0
    files_cached: int = 0
    outputs: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    recovered: bool = False
    # Package files that vanished or changed while this build published (relpath → what was
    # published instead); the next build reads them again. Not "skipped": they are not bad.
    changed: dict[str, str] = field(default_factory=dict)
    retained: int = 0  # old content-named indexes kept for readers of older entries
    # Things a person should act on that did not stop the build (signed metadata about to expire).
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_written": len(self.written),
            "files_unchanged": self.unchanged,
            "files_deleted": len(self.deleted),
            "bytes_written": self.bytes_written,
            "outputs": self.outputs,
            "inputs_read": self.files_read,
            "inputs_cached": self.files_cached,
            "recovered_from_interrupted_build": self.recovered,
            "skipped": self.skipped,
            "changed_during_build": self.changed,
            "files_retained": self.retained,
            "warnings": self.warnings,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "written": self.written,
            "deleted": self.deleted,
        }


def state_dir_for(site: Path) -> Path:
    site = site.resolve()
    return site.parent / f".{site.name}.depot"


@contextlib.contextmanager
def build_lock(site: Path, wait: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """The single-writer lock of a site (flock: released by the kernel if the holder dies)."""
    state = state_dir_for(site)
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise BuildBusyError(f"another build of {site} is running") from None
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def template_environment(cache: Path | None = None) -> tuple[jinja2.Environment, str]:
    """The jinja2 environment and a digest of every template, which joins page fingerprints.
    One per process and template set: a build that renders one page should not compile every
    template again (the runtime and ``depot watch`` build many times in one process). With
    ``cache`` (a folder of the build state), compiled templates are kept there too, so a
    ``depot build`` process loads them instead of compiling them (jinja2 checks the source)."""
    digest = template_digest()
    env = _environments.get((digest, cache))
    if env is None:
        env = _environments[(digest, cache)] = _new_environment(cache)
    return env, digest


_environments: dict[tuple[str, Path | None], jinja2.Environment] = {}


def _new_environment(cache: Path | None) -> jinja2.Environment:
    bytecode = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        bytecode = jinja2.FileSystemBytecodeCache(str(cache))
    return jinja2.Environment(
        bytecode_cache=bytecode,
        loader=jinja2.PackageLoader("builder.web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def template_digest() -> str:
    """A digest of every template file."""
    digest = hashlib.sha256()
    folder = resources.files("builder.web").joinpath("templates")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        digest.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return digest.hexdigest()


def retained_history(site: Path) -> set[str]:
    """The files of ``site`` kept as history (old device shards that older entries
    name, see docs/device-index.md): not outputs of the current repo/, so a clean build has
    none. They and their routes are all that an incremental site has more."""
    site = site.resolve()
    state_file = state_dir_for(site) / STATE_FILE
    if not state_file.exists():
        return set()
    db = sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT path FROM outputs WHERE owner = ''")}
    except sqlite3.DatabaseError:
        return set()
    finally:
        db.close()


def build(
    repo: Path,
    site: Path,
    *,
    progress: Progress | None = None,
    wait: bool = True,
    on_wait: Callable[[], None] | None = None,
    keys: Path | None = None,
    changed: Iterable[str] | None = None,
    full: bool = False,
) -> BuildResult:
    """Publish ``repo`` into ``site``. Raises SettingsError when depot.toml is unusable,
    BuildBusyError when another build runs and ``wait`` is False, DiskFullError when the disk
    of site/ (or of its build state) is full; the old site stays as it was. With ``keys`` (a
    key folder, builder.trust.keys) it also publishes the signed metadata under site/tuf/, and
    raises TrustError when the folder cannot sign (too few keys, inside repo/ or site/).

    ``changed``: the files of repo/ (relative paths, or folders) that changed since the last
    build, when the caller knows (the runtime after an upload, ``depot watch``): then only
    they are stat'ed, not every file of repo/ (builder/scan.py). ``full``: also check every
    file of site/ against the manifest and repair what is missing or damaged (a build after a
    killed one does that by itself)."""
    repo, site = repo.resolve(), site.resolve()
    try:
        with build_lock(site, wait=wait, on_wait=on_wait), _fewer_gc_passes():
            return _build_locked(repo, site, progress, keys, changed, full)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"no space left for {site}: free some, then build again") from exc
        raise
    except sqlite3.OperationalError as exc:  # the build state beside site/ is on a full disk
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            raise DiskFullError(f"no space left for {site}: free some, then build again") from exc
        raise


@contextlib.contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """A build allocates a million small objects (the scan cache, the manifest, the records),
    none of them garbage; at the default threshold the cyclic collector walks them all again and
    again (about 15 % of a no-change build of 10,000 packages). Collect less often meanwhile."""
    global _gc_builds, _gc_saved
    with _gc_lock:  # builds of different sites may overlap in one process: the last one restores
        if _gc_builds == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(max(_gc_saved[0], 50_000), *_gc_saved[1:])
        _gc_builds += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_builds -= 1
            if _gc_builds == 0:
                gc.set_threshold(*_gc_saved)


_gc_lock = threading.Lock()
_gc_builds = 0
_gc_saved = gc.get_threshold()


def refuse_foreign_site(site: Path) -> None:
    """A first build deletes whatever in site/ it did not produce (that is how a clean build is
    guaranteed), so it must not run on a folder that is not a Depot site: ``--site ~`` would
    empty a home folder. A folder with a route table was published by Depot before and lost
    only its state, so it may be swept."""
    if site.is_dir() and any(site.iterdir()) and not (site / ROUTES_FILE).exists():
        raise ForeignSiteError(
            f"{site} is not empty and holds no Depot site: refusing to publish into it, because "
            "its files would be deleted; use an empty or new folder"
        )


def _build_locked(
    repo: Path,
    site: Path,
    progress: Progress | None,
    keys: Path | None,
    changed: Iterable[str] | None,
    full: bool,
) -> BuildResult:
    result = BuildResult()
    state_dir = state_dir_for(site)
    dirty_marker = state_dir / "build-in-progress"
    result.recovered = dirty_marker.exists()
    # A build killed while saving its state leaves a temporary file here; we hold the lock, so
    # no writer owns one now. (site/ is swept after a killed build.)
    remove_stale_temps(state_dir)
    for old in LEGACY_STATE_FILES:  # the JSON state of builds before the SQLite one
        if (state_dir / old).exists():
            (state_dir / old).unlink()
    t0 = time.perf_counter()

    key_state = ""
    if keys is not None:
        from builder.trust.keys import check_location, folder_state, open_keys

        check_location(keys, repo=repo, site=site)
        open_keys(keys)  # a TrustError now, not after the scan
        key_state = folder_state(keys)
    elif (site / "tuf" / "timestamp.json").exists():
        # Publishing a signed site unsigned deletes tuf/, and every device that trusts it stops
        # updating: never by accident (a command run from another folder, a missing DEPOT_KEYS).
        raise TrustError(
            f"{site} is signed (its tuf/ holds TUF metadata) but this build has no key folder: "
            "give --keys DIR or DEPOT_KEYS (or run from the folder holding ./keys); to publish "
            f"it unsigned on purpose, delete {site / 'tuf'} first"
        )
    settings = load_settings(repo)
    state = BuildState(state_dir, {"repo": str(repo), "site": str(site)})
    try:
        return _build_in(state, repo, site, settings, progress, keys, key_state, changed, full, result, t0)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # a full disk may refuse even that
            state.rollback()
        raise
    finally:
        state.close()


def _render_key(settings: StoreSettings, repo: Path) -> str:
    """What every part and target depends on besides records: the builder's code, templates,
    settings, and the files the settings name (category icons): when it changes, everything
    is planned again."""
    icons = []
    for category in settings.categories:
        if category.icon:
            try:
                st = os.stat(repo / category.icon)
                icons.append(f"{category.icon}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                icons.append(f"{category.icon}:-")
    return fingerprint("render-key", template_digest(), settings.digest, *icons)


def _build_in(
    state: BuildState,
    repo: Path,
    site: Path,
    settings: StoreSettings,
    progress: Progress | None,
    keys: Path | None,
    key_state: str,
    changed: Iterable[str] | None,
    full: bool,
    result: BuildResult,
    t0: float,
) -> BuildResult:
    dirty_marker = state_dir_for(site) / "build-in-progress"
    render_key = _render_key(settings, repo)
    everything = state.meta("render_key") != render_key
    verify = full or result.recovered or state.fresh or not _site_as_left(state, site)
    feed = None if (verify or everything or changed is None) else changed
    delta = scan_changes(
        repo, state, settings, paths=feed, rekey=everything, progress=progress, records=not state.fresh
    )
    result.skipped = delta.skipped
    result.files_read, result.files_cached = delta.files_read, delta.files_cached
    t1 = time.perf_counter()
    result.timings["scan"] = t1 - t0

    publisher = Publisher(site, state)
    timestamp_due = keys is not None and _timestamp_due(settings, site)
    # The signed metadata follows the key folder and the newest input (its expiry, see
    # builder.trust.metadata); a site signed before and built without keys drops it.
    trust_changed = keys is not None and (
        state.meta("key_state") != key_state or state.meta("trust_newest") != str(state.newest_mtime())
    )
    trust_dropped = keys is None and bool(state.outputs_of(TRUST_OWNER))
    if (
        not delta.changed
        and not everything
        and not verify
        and not publisher.history_due()
        and not timestamp_due
        and not trust_changed
        and not trust_dropped
    ):
        # Nothing the build reads changed: nothing to plan, render or write.
        if keys is not None:
            from builder.trust.keys import open_keys
            from builder.trust.metadata import expiry_warnings

            result.warnings = expiry_warnings(open_keys(keys))
        result.retained = len(publisher.retained())
        result.outputs = result.unchanged = state.output_count() - result.retained
        state.commit()  # the stats of touched files
        t2 = time.perf_counter()
        result.timings.update(scan=t1 - t0, plan=0.0, publish=t2 - t1, total=t2 - t0)
        atomic_write(state_dir_for(site) / "report.json", json_bytes(result.to_dict()))
        return result

    if state.fresh and not result.recovered:
        refuse_foreign_site(site)
    if not dirty_marker.exists():  # before anything is written: templates compile into the state
        atomic_write(dirty_marker, b"a build started and has not finished\n")
    force: set[str] = set()
    if verify and not state.fresh:
        force, _damaged = publisher.damaged()
    env, digest = template_environment(state_dir_for(site) / "templates")
    ctx = RenderContext(
        settings=settings,
        repo=repo,
        templates=env,
        template_digest=digest,
        extras={"published": publisher.known},
    )
    planner = Planner(state, renderers(), ctx, progress=progress)
    whole = everything or state.fresh
    # A whole catalog is planned and published one renderer at a time, package files first:
    # only one renderer's outputs are in memory at once, and each renderer's files name only
    # its own and those of the renderers before it (builder/registry.py), already published.
    # The indexes (an owner with an output of tier INDEX) wait for the last step, so a build
    # that fails on the way (a renderer's bug) has published no index, as a build in one step.
    steps: list[list[Renderer] | None] = [[r] for r in planner.renderers] if whole else [None]
    report, planning, publishing = PublishReport(), 0.0, 0.0
    indexes: dict[str, list[Output]] = {}
    for n, only in enumerate(steps):
        t2 = time.perf_counter()
        desired = planner.plan(delta.changed, everything=whole, force=force, only=only)
        final = n == len(steps) - 1
        if final:
            desired.update(indexes)
        else:
            _defer_indexes(desired, indexes)
        t3 = time.perf_counter()
        planning += t3 - t2
        report = _publish_holding(
            repo,
            state,
            delta,
            planner,
            publisher,
            desired,
            result,
            sweep=verify,
            progress=progress,
            report=report,
            final=final,
            planned=None if only is None else planner.renderers[: n + 1],
            indexes=None if final else indexes,
        )
        del desired
        publishing += time.perf_counter() - t3
    result.timings["plan"] = planning
    t2 = time.perf_counter()
    if keys is not None:
        _trust_step(keys, repo, site, settings, state, publisher, report, result)
        state.set_meta("trust_newest", str(state.newest_mtime()))
    elif trust_dropped:
        publisher.publish({TRUST_OWNER: []}, report=report)
    result.timings["publish"] = publishing + time.perf_counter() - t2

    state.set_meta("render_key", render_key)
    state.set_meta("key_state", key_state)
    # A file that could not be read, or that changed while it was published, is tried again
    # by the next build (the scan's recheck list).
    state.set_meta_json("recheck", sorted(set(delta.unreadable) | set(result.changed)))
    state.commit()
    dirty_marker.unlink()
    result.retained = report.retained
    result.outputs = state.output_count() - result.retained
    result.written, result.unchanged = report.written, report.unchanged
    result.deleted, result.bytes_written = report.deleted, report.bytes_written
    result.timings["total"] = time.perf_counter() - t0
    result.timings["parts_rendered"] = planner.parts_rendered
    result.timings["targets_assembled"] = planner.targets_assembled
    atomic_write(state_dir_for(site) / "report.json", json_bytes(result.to_dict()))
    return result


def _site_as_left(state: BuildState, site: Path) -> bool:
    """site/'s route table is the one the last build wrote: one stat that tells a site/ that
    was deleted, replaced or restored from elsewhere (then the build checks every file). A
    single file deleted or edited inside site/ is repaired by ``full`` (``depot build --full``)
    or by the next build that publishes it."""
    row = state.output(ROUTES_FILE)
    if row is None:
        return False
    try:
        st = os.stat(site / ROUTES_FILE)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns)


def _timestamp_due(settings: StoreSettings, site: Path) -> bool:
    """The published timestamp must be signed again (less than half of its validity left): then
    a build with a key folder is no no-change build."""
    from builder.trust import timestamp

    return timestamp.due(site, settings.trust.timestamp_hours)


def _trust_step(
    keys: Path,
    repo: Path,
    site: Path,
    settings: StoreSettings,
    state: BuildState,
    publisher: Publisher,
    report: PublishReport,
    result: BuildResult,
) -> None:
    """Sign what the renderers published (builder.trust.metadata) and publish the signed
    metadata after it: targets name every file a device reads, so this reads the whole
    manifest (only with a key folder; then python-tuf is imported)."""
    from builder.trust.keys import open_keys
    from builder.trust.metadata import newest_input, trust_outputs

    folder = open_keys(keys)
    current = [
        Output(
            path=row.path,
            fingerprint=row.fp,
            media_type=row.type,
            tier=row.tier,
            source=Path(row.source) if row.source else None,
        )
        for row in state.all_outputs()
        if row.owner and not row.owner.startswith(TRUST_OWNER)
    ]
    newest = newest_input(repo, state.newest_mtime())
    signed = trust_outputs(current, folder, site, settings.trust, newest, publisher.known)
    result.warnings = signed.warnings
    for warning in signed.warnings:
        log.warning("warning: %s", warning)
    publisher.publish({TRUST_OWNER: signed.outputs}, report=report)


# What a package file that vanished or changed while the build published it becomes.
_AS_BEFORE = "the version the last build published stays until the next build"
_LEFT_OUT = "not published until the next build"


def _publish_holding(
    repo: Path,
    state: BuildState,
    delta: ScanDelta,
    planner: Planner,
    publisher: Publisher,
    desired: dict[str, list[Output]],
    result: BuildResult,
    sweep: bool,
    progress: Progress | None = None,
    report: PublishReport | None = None,
    final: bool = True,
    planned: Sequence[Renderer] | None = None,
    indexes: dict[str, list[Output]] | None = None,
) -> PublishReport:
    """Publish ``desired`` (``final``: the last part of the build, see Publisher.publish; the
    renderers ``planned`` so far, None for all; ``indexes``: where a step that is not the
    last keeps the indexes it plans); when package files vanish or change under the
    build (a maintainer's rm or cp, an upload replacing a file), hold them and publish again.

    A held file is published as the last finished build left it (its records before this
    scan, when every package file they name is still intact in site/), else left out; held a
    second time, it is left out. Each attempt stops before any index that could name the
    missing bytes, and the held files' parts are planned again, so every index of site/ always
    names files that are there. Each attempt holds at least one more file or escalates one, so
    this ends; a failure no changed input explains (a bug in a renderer) is raised as it is.
    The held files are reported in ``result.changed`` and read again by the next build."""
    held: dict[str, list[Record]] = {}
    report = report if report is not None else PublishReport()
    while True:
        try:
            return publisher.publish(desired, report=report, sweep=sweep, progress=progress, final=final)
        except InputChangedError as exc:
            changed = _changed_inputs(exc, repo, state, delta)
            held_more = False
            holding: dict[str, tuple[list[Record], list[Record]]] = {}
            for relpath, what in sorted(changed.items()):
                if relpath in held and not held[relpath]:
                    continue  # already left out: it has no outputs left to fail
                if relpath in held:  # what it was held to fails too: left out now
                    now, before = held[relpath], []
                else:  # what this attempt planned from it, and what the last build published
                    now = planner.records_now(relpath)
                    before = delta.changed[relpath][0] if relpath in delta.changed else now
                blobs = [b for r in before if r.public_download and (b := getattr(r, "blob", None))]
                if not all(publisher.intact(b.site_path, b.sha256) for b in blobs):
                    before = []
                held[relpath] = before
                holding[relpath] = (now, before)
                result.changed[relpath] = f"{what} during the build; {_AS_BEFORE if before else _LEFT_OUT}"
                log.warning("warning: %s %s", relpath, result.changed[relpath])
                held_more = True
            if not held_more:
                if exc.errors:
                    raise next(iter(exc.errors.values())) from None  # a bug, not a race
                raise BuildError(str(exc)) from exc
            for relpath, (_now, before) in holding.items():
                # The cache entry says what is published now, and is read again next build.
                state.set_entry(
                    relpath,
                    {
                        "key": None,
                        "error": None,
                        "records": [r.to_dict() for r in before],
                        "digests": [r.digest for r in before],
                    },
                )
            desired.update(planner.plan(holding, only=planned))
            if indexes is not None:  # replanned indexes replace the ones kept for the last step
                _defer_indexes(desired, indexes)


def _defer_indexes(desired: dict[str, list[Output]], indexes: dict[str, list[Output]]) -> None:
    """Move the owners of ``desired`` that have an output of tier INDEX into ``indexes``."""
    for owner in [o for o, outs in desired.items() if any(out.tier >= INDEX for out in outs)]:
        indexes[owner] = desired.pop(owner)


def _changed_inputs(
    exc: InputChangedError, repo: Path, state: BuildState, delta: ScanDelta
) -> dict[str, str]:
    """The package files behind a publish that InputChangedError stopped: relpath → what
    happened to them."""
    changed: dict[str, str] = {}
    known = state.entry_paths()
    for source, what in exc.changed.items():
        relpath = _relpath(repo, source)
        if relpath in known or relpath in delta.changed:
            changed[relpath] = what
    if exc.errors:
        # An output that reads repo/ while it is published (an app's icon, out of its package)
        # failed: a package file that changed since the scan is behind it, if any is.
        now = walk_repo_stats(repo)
        stats = state.all_stats()
        for relpath in known:
            if now.get(relpath) != stats.get(relpath):
                changed.setdefault(relpath, "changed" if relpath in now else "vanished")
        for error in exc.errors.values():
            filename = getattr(error, "filename", None)
            relpath = _relpath(repo, Path(filename)) if isinstance(filename, str) else None
            if relpath is not None and relpath in known:
                changed.setdefault(relpath, "vanished" if isinstance(error, FileNotFoundError) else "changed")
    return {k: v for k, v in changed.items() if k is not None}


def _relpath(repo: Path, path: Path) -> str | None:
    try:
        return path.relative_to(repo).as_posix()
    except ValueError:
        return None

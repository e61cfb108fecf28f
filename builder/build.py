"""``depot build``: repo/ → site/, incrementally, one writer at a time.

The build keeps its state beside site/ (``.<site>.depot/``), never inside it, so that site/
stays a pure function of repo/: the scan cache, the output manifest, the last build report and
the single-writer lock live there.

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
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from builder import fastpath
from builder.atomic import atomic_write, remove_stale_temps
from builder.errors import BuildError, DiskFullError, TrustError
from builder.model import Catalog, Record
from builder.publish import ENTRY, InputChangedError, Output, Publisher, PublishReport
from builder.registry import renderers
from builder.render import RenderContext, fingerprint, json_bytes
from builder.scan import Progress, Scanner, ScanResult, walk_repo_stats
from builder.settings import load_settings

ROUTES_FILE = "routes.json"

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


def template_environment() -> tuple[jinja2.Environment, str]:
    """The jinja2 environment and a digest of every template, which joins page fingerprints."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("builder.web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env, template_digest()


def template_digest() -> str:
    """A digest of every template file."""
    digest = hashlib.sha256()
    folder = resources.files("builder.web").joinpath("templates")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        digest.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return digest.hexdigest()


def route_table(outputs: list[Output]) -> Output:
    """The one table that maps every static URL to its file and media type (DESIGN section 2).

    The runtime's static mount and the generated nginx configuration both read it."""

    def row(o: Output) -> dict[str, Any]:
        r: dict[str, Any] = {"url": o.public_url, "file": o.path, "type": o.media_type}
        if o.query:
            r["query"] = o.query
        if o.status and o.status != 200:
            r["status"] = o.status
        return r

    routes = sorted(
        (row(o) for o in outputs),
        key=lambda r: (r["url"], sorted(r["query"].items()) if "query" in r else []),
    )
    # Compact JSON, one dumps of the whole table: the C encoder, several times faster than the
    # indented output of json_bytes on ten thousand routes. The same text is the fingerprint.
    table = json.dumps(routes, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Output(
        path=ROUTES_FILE,
        fingerprint=fingerprint("routes", table),
        media_type="application/json",
        tier=ENTRY,
        render=lambda: f'{{"routes":{table},"schema":1}}\n'.encode(),
    )


def render_outputs(
    catalog: Catalog,
    repo: Path,
    published: Callable[[str, str], tuple[int, str] | None] | None = None,
    history: Callable[[list[Output]], list[Output]] | None = None,
    trust: Callable[[list[Output]], list[Output]] | None = None,
) -> list[Output]:
    """Every file of the site for ``catalog``, the route table last (nothing rendered yet).
    ``published`` is Publisher.known, for renderers that state other files' digests;
    ``trust`` adds the signed metadata of the renderers' outputs (builder.trust.metadata, only
    with a key folder); ``history`` is Publisher.history, the retained files of earlier builds
    still kept (they join the route table, so they are still served)."""
    env, template_digest = template_environment()
    extras: dict[str, Any] = {"repo": repo}
    if published is not None:
        extras["published"] = published
    ctx = RenderContext(templates=env, template_digest=template_digest, extras=extras)
    outputs: list[Output] = []
    for render in renderers():
        outputs.extend(render(catalog, ctx))
    if trust is not None:
        outputs.extend(trust(outputs))
    if history is not None:
        outputs.extend(history(outputs))
    outputs.append(route_table(outputs))
    return outputs


def retained_history(site: Path) -> set[str]:
    """The files of ``site`` kept as history (old pinned platform indexes that older entries
    name, see docs/device-index.md): not outputs of the current repo/, so a clean build has
    none. They and their rows of routes.json are all that an incremental site has more."""
    return Publisher(site.resolve(), state_dir_for(site) / "manifest.json").retained()


def build(
    repo: Path,
    site: Path,
    *,
    progress: Progress | None = None,
    wait: bool = True,
    on_wait: Callable[[], None] | None = None,
    keys: Path | None = None,
) -> BuildResult:
    """Publish ``repo`` into ``site``. Raises SettingsError when depot.toml is unusable,
    BuildBusyError when another build runs and ``wait`` is False, DiskFullError when the disk
    of site/ (or of its build state) is full; the old site stays as it was. With ``keys`` (a
    key folder, builder.trust.keys) it also publishes the signed metadata under site/tuf/, and
    raises TrustError when the folder cannot sign (too few keys, inside repo/ or site/)."""
    repo, site = repo.resolve(), site.resolve()
    try:
        with build_lock(site, wait=wait, on_wait=on_wait), _fewer_gc_passes():
            return _build_locked(repo, site, progress, keys)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
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


def _build_locked(repo: Path, site: Path, progress: Progress | None, keys: Path | None = None) -> BuildResult:
    result = BuildResult()
    state = state_dir_for(site)
    dirty_marker = state / "build-in-progress"
    result.recovered = dirty_marker.exists()
    # A build killed while saving its state (marker, cache, manifest, report) leaves a temporary
    # file here; we hold the lock, so no writer owns one now. (site/ is swept after a killed build.)
    remove_stale_temps(state)
    t0 = time.perf_counter()

    stats = walk_repo_stats(repo)
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
    inputs = fastpath.inputs_digest(repo, site, template_digest(), stats, key_state)
    publisher = Publisher(site, state / "manifest.json")
    last = None if result.recovered else fastpath.load(state)
    if (
        last is not None
        and last["digest"] == inputs
        and publisher.manifest
        and not publisher.history_due()
        and not (keys is not None and _timestamp_due(repo, site))
    ):
        t1 = time.perf_counter()
        if fastpath.site_intact(site, publisher.manifest):
            # Nothing the build reads changed and site/ is as the last build left it.
            result.skipped, result.files_cached = last["skipped"], last["inputs"]
            result.retained = len(publisher.retained())
            if keys is not None:
                from builder.trust.keys import open_keys
                from builder.trust.metadata import expiry_warnings

                result.warnings = expiry_warnings(open_keys(keys))
            result.outputs = result.unchanged = len(publisher.manifest) - result.retained
            t2 = time.perf_counter()
            result.timings.update(scan=t1 - t0, plan=0.0, publish=t2 - t1, total=t2 - t0)
            atomic_write(state / "report.json", json_bytes(result.to_dict()))
            return result

    settings = load_settings(repo)
    scanner = Scanner(repo, state / "scan-cache.json")
    scan = scanner.scan(settings, progress=progress, stats=stats)
    result.skipped = scan.skipped
    result.files_read, result.files_cached = scan.files_read, scan.files_cached
    t1 = time.perf_counter()
    result.timings["scan"] = t1 - t0

    catalog = Catalog(settings=settings, records=scan.records)
    trust = _trust_step(keys, repo, site, catalog, stats, publisher, result)
    outputs = render_outputs(catalog, repo, publisher.known, publisher.history, trust)
    t2 = time.perf_counter()
    result.timings["plan"] = t2 - t1

    if not publisher.manifest and not result.recovered:
        refuse_foreign_site(site)
    if not dirty_marker.exists():
        atomic_write(dirty_marker, b"a build started and has not finished\n")
    report, outputs = _publish_holding(catalog, repo, stats, scan, scanner, publisher, outputs, result, trust)
    result.outputs = sum(1 for o in outputs if o.retired is None)
    t3 = time.perf_counter()
    result.timings["publish"] = t3 - t2

    publisher.save()
    scanner.save_cache()
    # Only now, and before the marker goes: a build killed before this leaves the marker. A file
    # that could not be read, or that changed while it was published, is tried again next time,
    # so no fast path then.
    digest = None if scan.unreadable or result.changed else inputs
    atomic_write(
        state / fastpath.INPUTS_FILE,
        fastpath.record(digest, scan.skipped, scan.files_read + scan.files_cached),
    )
    dirty_marker.unlink()
    result.written, result.unchanged = report.written, report.unchanged
    result.deleted, result.bytes_written = report.deleted, report.bytes_written
    result.retained = report.retained
    result.timings["total"] = time.perf_counter() - t0
    atomic_write(state / "report.json", json_bytes(result.to_dict()))
    return result


def _timestamp_due(repo: Path, site: Path) -> bool:
    """The published timestamp must be signed again (less than half of its validity left): then
    a build with a key folder is no no-change build."""
    from builder.trust import timestamp

    return timestamp.due(site, load_settings(repo).trust.timestamp_hours)


def _trust_step(
    keys: Path | None,
    repo: Path,
    site: Path,
    catalog: Catalog,
    stats: dict[str, list[int] | None],
    publisher: Publisher,
    result: BuildResult,
) -> Callable[[list[Output]], list[Output]] | None:
    """The step that adds the signed metadata to the renderers' outputs, or None without a key
    folder (then python-tuf is never imported)."""
    if keys is None:
        return None
    from builder.trust.keys import open_keys
    from builder.trust.metadata import newest_input, trust_outputs

    folder = open_keys(keys)
    newest = newest_input(repo, stats)
    settings = catalog.settings.trust

    def step(outputs: list[Output]) -> list[Output]:
        signed = trust_outputs(outputs, folder, site, settings, newest, publisher.known)
        result.warnings = signed.warnings
        for warning in signed.warnings:
            log.warning("warning: %s", warning)
        return signed.outputs

    return step


# What a package file that vanished or changed while the build published it becomes.
_AS_BEFORE = "the version the last build published stays until the next build"
_LEFT_OUT = "not published until the next build"


def _publish_holding(
    catalog: Catalog,
    repo: Path,
    stats: dict[str, list[int] | None],
    scan: ScanResult,
    scanner: Scanner,
    publisher: Publisher,
    outputs: list[Output],
    result: BuildResult,
    trust: Callable[[list[Output]], list[Output]] | None = None,
) -> tuple[PublishReport, list[Output]]:
    """Publish ``outputs``; when package files vanish or change under the build (a maintainer's
    rm or cp, an upload replacing a file), hold them and publish again. Returns the report and
    the outputs finally published.

    A held file is published as the last finished build left it (its records from the scan
    cache before this scan, when every package file they name is still intact in site/), else
    left out; held a second time, it is left out. Each attempt stops before any index that
    could name the missing bytes, and the plan is made again from the catalog without them, so
    every index of site/ always names files that are there. Each attempt holds at least one
    more file or escalates one, so this ends; a failure no changed input explains (a bug in a
    renderer) is raised as it is. The held files are reported in ``result.changed``, dropped
    from the scan cache and keep the fast path off, so the next build reads them again."""
    held: dict[str, list[Record]] = {}
    while True:
        try:
            return publisher.publish(outputs, full_sweep=result.recovered), outputs
        except InputChangedError as exc:
            changed = _changed_inputs(exc, repo, stats, scan)
            progress = False
            for relpath, what in sorted(changed.items()):
                if relpath in held and not held[relpath]:
                    continue  # already left out: it has no outputs left to fail
                before = [] if relpath in held else scanner.previous(relpath)
                blobs = [b for r in before if r.public_download and (b := getattr(r, "blob", None))]
                if not all(publisher.intact(b.site_path, b.sha256) for b in blobs):
                    before = []
                held[relpath] = before
                result.changed[relpath] = f"{what} during the build; {_AS_BEFORE if before else _LEFT_OUT}"
                log.warning("warning: %s %s", relpath, result.changed[relpath])
                progress = True
            if not progress:
                if exc.errors:
                    raise next(iter(exc.errors.values())) from None  # a bug, not a race
                raise BuildError(str(exc)) from exc
            scanner.forget(held)
            records = [r for relpath, rs in scan.by_file.items() for r in held.get(relpath, rs)]
            catalog = Catalog(settings=catalog.settings, records=records)
            outputs = render_outputs(catalog, repo, publisher.known, publisher.history, trust)


def _changed_inputs(
    exc: InputChangedError, repo: Path, stats: dict[str, list[int] | None], scan: ScanResult
) -> dict[str, str]:
    """The package files behind a publish that InputChangedError stopped: relpath → what
    happened to them."""
    changed: dict[str, str] = {}
    for source, what in exc.changed.items():
        relpath = _relpath(repo, source)
        if relpath in scan.by_file:
            changed[relpath] = what
    if exc.errors:
        # An output that reads repo/ while it is published (an app's icon, out of its package)
        # failed: a package file that changed since the walk is behind it, if any is.
        now = walk_repo_stats(repo)
        for relpath in scan.by_file:
            if now.get(relpath) != stats.get(relpath):
                changed.setdefault(relpath, "changed" if relpath in now else "vanished")
        for error in exc.errors.values():
            filename = getattr(error, "filename", None)
            relpath = _relpath(repo, Path(filename)) if isinstance(filename, str) else None
            if relpath in scan.by_file:
                changed.setdefault(relpath, "vanished" if isinstance(error, FileNotFoundError) else "changed")
    return changed


def _relpath(repo: Path, path: Path) -> str | None:
    try:
        return path.relative_to(repo).as_posix()
    except ValueError:
        return None

"""``depot build``: repo/ → site/, incrementally, one writer at a time.

The build keeps its state beside site/ (``.<site>.depot/``), never inside it, so that site/
stays a pure function of repo/: the scan cache, the output manifest, the last build report and
the single-writer lock live there.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from depot.atomic import atomic_write, remove_stale_temps
from depot.builder.model import Catalog
from depot.builder.publish import ENTRY, Output, Publisher
from depot.builder.renderers import RenderContext, fingerprint, json_bytes, renderers
from depot.builder.scan import Progress, Scanner
from depot.builder.settings import load_settings

ROUTES_FILE = "routes.json"


class BuildBusy(RuntimeError):
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
                raise BuildBusy(f"another build of {site} is running") from None
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def template_environment() -> tuple[jinja2.Environment, str]:
    """The jinja2 environment and a digest of every template, which joins page fingerprints."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("depot.builder", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    digest = hashlib.sha256()
    folder = resources.files("depot.builder").joinpath("templates")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        digest.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return env, digest.hexdigest()


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
    # One dumps of the whole table (the C encoder) rather than one per route.
    fp = fingerprint("routes", json.dumps(routes, sort_keys=True))
    return Output(
        path=ROUTES_FILE,
        fingerprint=fp,
        media_type="application/json",
        tier=ENTRY,
        render=lambda: json_bytes({"schema": 1, "routes": routes}),
    )


def render_outputs(catalog: Catalog, repo: Path) -> list[Output]:
    """Every file of the site for ``catalog``, the route table last (nothing rendered yet)."""
    env, template_digest = template_environment()
    ctx = RenderContext(templates=env, template_digest=template_digest, extras={"repo": repo})
    outputs: list[Output] = []
    for render in renderers():
        outputs.extend(render(catalog, ctx))
    outputs.append(route_table(outputs))
    return outputs


def build(
    repo: Path,
    site: Path,
    *,
    progress: Progress | None = None,
    wait: bool = True,
    on_wait: Callable[[], None] | None = None,
) -> BuildResult:
    """Publish ``repo`` into ``site``. Raises SettingsError when depot.toml is unusable,
    BuildBusy when another build runs and ``wait`` is False."""
    repo, site = repo.resolve(), site.resolve()
    with build_lock(site, wait=wait, on_wait=on_wait), _fewer_gc_passes():
        return _build_locked(repo, site, progress)


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


def _build_locked(repo: Path, site: Path, progress: Progress | None) -> BuildResult:
    result = BuildResult()
    state = state_dir_for(site)
    dirty_marker = state / "build-in-progress"
    result.recovered = dirty_marker.exists()
    # A build killed while saving its state (marker, cache, manifest, report) leaves a temporary
    # file here; we hold the lock, so no writer owns one now. (site/ is swept after a killed build.)
    remove_stale_temps(state)
    t0 = time.perf_counter()

    settings = load_settings(repo)
    scanner = Scanner(repo, state / "scan-cache.json")
    scan = scanner.scan(settings, progress=progress)
    result.skipped = scan.skipped
    result.files_read, result.files_cached = scan.files_read, scan.files_cached
    t1 = time.perf_counter()
    result.timings["scan"] = t1 - t0

    catalog = Catalog(settings=settings, records=scan.records)
    outputs = render_outputs(catalog, repo)
    result.outputs = len(outputs)
    t2 = time.perf_counter()
    result.timings["plan"] = t2 - t1

    if not dirty_marker.exists():
        atomic_write(dirty_marker, b"a build started and has not finished\n")
    publisher = Publisher(site, state / "manifest.json")
    report = publisher.publish(outputs, full_sweep=result.recovered)
    t3 = time.perf_counter()
    result.timings["publish"] = t3 - t2

    publisher.save()
    scanner.save_cache(atomic_write)
    dirty_marker.unlink()
    result.written, result.unchanged = report.written, report.unchanged
    result.deleted, result.bytes_written = report.deleted, report.bytes_written
    result.timings["total"] = time.perf_counter() - t0
    atomic_write(state / "report.json", json_bytes(result.to_dict()))
    return result

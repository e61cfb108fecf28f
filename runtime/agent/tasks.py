"""The agent's work: requests become persisted tasks, two queues run them.

The download queue runs download tasks; the install queue runs install, uninstall and firmware
tasks; each queue runs one task at a time, the two independently. A module has at most one
active task: a request for a busy module is refused. On start, tasks the previous process left
running are resumed (downloads continue from their ``.part`` file; installs and uninstalls are
idempotent and run again), unless a task has been interrupted ``max_restarts`` times (loop guard).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

from builder.atomic import TEMP_PREFIX, fsync_dir, remove_stale_temps
from builder.errors import FormatError
from builder.hashing import sha256_file
from builder.names import MANIFEST, parse_module_filename
from builder.tarsafe import inspect_tarball
from builder.versions import version_key
from runtime.agent.config import AgentConfig, valid_name
from runtime.agent.download import DownloadError, Wanted, download
from runtime.agent.index import (
    Package,
    StoreIndex,
    StoreIndexError,
    cached_index,
    fetch_index,
    trusted_store,
)
from runtime.agent.install import FirmwareStore, InstallError, ModuleStore, release_name, release_version
from runtime.agent.reports import Reporter
from runtime.agent.rollout import offered
from runtime.agent.state import FAILED, SUCCEEDED, Download, State, Task
from runtime.agent.trust import TrustError, target_path
from runtime.agent.unpack import UnsafeArchiveError, safe_unpack
from runtime.agent.views import package_list

log = logging.getLogger("runtime.agent")

DOWNLOAD_KINDS = ("download",)
INSTALL_KINDS = ("install", "uninstall")


class RequestError(Exception):
    """A request the agent refuses; ``body`` is the dialect's error shape."""

    def __init__(self, body: object, status: int = 400) -> None:
        super().__init__(str(body))
        self.body, self.status = body, status


class TaskError(Exception):
    def __init__(self, message: str, rolled_back: bool = False) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        for folder in config.folders():
            folder.mkdir(parents=True, exist_ok=True)
        # Private: what the inbox holds and the copies taken of it are nobody else's to read.
        assert config.inbox is not None
        config.inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        config.local_copies.mkdir(mode=0o700, exist_ok=True)
        os.chmod(config.local_copies, 0o700)
        self.state = State(config.database)
        self.modules = ModuleStore(config.modules, config.trash)
        self.firmware = FirmwareStore(config.firmware, config.flasher)
        self.index: StoreIndex = cached_index(config) or StoreIndex.empty(config.platform or "")
        self.index_error: str | None = None
        self.trust = trusted_store(config)
        self.reporter = Reporter(config, self.state)
        self._index_generation = 0  # bumped with every index that replaces self.index
        self._offers: tuple[int, tuple[str, tuple[str, ...]], dict[str, dict[str, Package]]] | None = None
        self._request_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._wake = {"download": threading.Event(), "install": threading.Event()}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self.refresh()
        self.reporter.queue(self.reporter.next_start_id(), self._device_state())
        self.reporter.start()
        for queue, kinds in (("download", DOWNLOAD_KINDS), ("install", INSTALL_KINDS)):
            thread = threading.Thread(
                target=self._worker, args=(queue, kinds), name=f"agent-{queue}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.reporter.stop()
        for event in self._wake.values():
            event.set()

    def recover(self) -> None:
        """Make the state true again after the previous process ended at an arbitrary moment."""
        for folder in (self.config.staging, self.config.trash):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.config.root)
        for task in self.state.interrupted():
            restarts = self.state.requeue(task.id)
            if restarts >= self.config.max_restarts:
                self.state.start(task.id)
                self.state.finish(task.id, FAILED, f"interrupted by {restarts} restarts (restart_loop)")
            else:
                self.state.log(task.id, f"agent restarted while the task ran; resuming (restart {restarts})")

    def refresh(self) -> None:
        """Re-read the store's index; on failure keep the last one that verified. One refresh
        at a time: two overlapping ones would let the older finish last and overwrite a newer
        answer (a refusal the store's metadata earned, cleared by a success from before)."""
        with self._refresh_lock:
            self._refresh()

    def _refresh(self) -> None:
        try:
            self.index = fetch_index(self.config)
            self._index_generation += 1
            self.index_error = None
        except StoreIndexError as exc:
            self.index_error = str(exc)
            log.warning("store index: %s", exc)
        except Exception as exc:  # a bug: the agent starts and serves what it has all the same
            self.index_error = f"the store's index could not be read: {type(exc).__name__}: {exc}"
            log.exception("store index")

    def refresh_async(self) -> None:
        threading.Thread(target=self.refresh, name="agent-refresh", daemon=True).start()

    def _worker(self, queue: str, kinds: tuple[str, ...]) -> None:
        while not self._stop.is_set():
            task = self.state.next_queued(kinds)
            if task is None:
                self._wake[queue].wait(1.0)
                self._wake[queue].clear()
                continue
            self._run(task)

    def _run(self, task: Task) -> None:
        self.state.start(task.id)
        rolled_back = False
        try:
            runner: Callable[[Task], None] = {
                ("download", "module"): self._download,
                ("install", "module"): self._install,
                ("uninstall", "module"): self._uninstall,
                ("install", "firmware"): self._firmware,
            }[(task.kind, task.target)]
            runner(task)
        except (TaskError, DownloadError, InstallError, UnsafeArchiveError) as exc:
            self.state.log(task.id, f"error: {exc}")
            self.state.finish(task.id, FAILED, self._screen_text(str(exc)))
            rolled_back = isinstance(exc, TaskError) and exc.rolled_back
        except OSError as exc:  # the disk: the task fails, the agent keeps serving
            log.exception("task %s failed", task.id)
            self.state.log(task.id, f"error: {type(exc).__name__}: {exc}")
            self.state.finish(task.id, FAILED, f"the device could not store the files: {exc.strerror or exc}")
        except Exception as exc:  # a bug: the task fails, the agent keeps serving
            log.exception("task %s failed", task.id)
            self.state.log(task.id, f"error: {type(exc).__name__}: {exc}")
            reason = "the app store failed unexpectedly; the task log has the details"
            self.state.finish(task.id, FAILED, reason)
        else:
            self.state.finish(task.id, SUCCEEDED)
        self._report(task.id, rolled_back)

    def _report(self, task_id: int, rolled_back: bool) -> None:
        """Queue the report of a finished task (sent when the store can be reached)."""
        if not self.reporter.enabled:
            return
        task = self.state.task(task_id)
        assert task is not None
        event = {
            "task_id": task.id,
            "kind": "firmware" if task.target == "firmware" else task.kind,
            "target": task.target,
            "name": task.module,
            "version": task.version,
            "status": task.status,
            "reason": task.reason or "",
            "rolled_back": rolled_back,
            "finished": task.end_time or "",
        }
        self.reporter.queue(f"task-{task.id}", {**self._device_state(), "events": [event]})

    def _device_state(self) -> dict:
        """What every report says: the installed versions and the versions offered now."""
        offers = [
            {"target": target, "name": name, "version": package.latest_version}
            for target in ("module", "firmware")
            for name, package in self.offered(target).items()
        ]
        return {
            "installed": {"modules": self.modules.installed(), "firmware": self.firmware.installed()},
            "offered": offers,
            "events": [],
        }

    # -- offers -----------------------------------------------------------------------------

    def offered(self, target: str) -> dict[str, Package]:
        """The index as this device sees it: each package with only the releases its staged
        rollouts offer to this device (newest first); packages with none left are not listed."""
        identity = self.reporter.identity()
        cached = self._offers
        if cached is None or cached[0] != self._index_generation or cached[1] != identity:
            device, groups = identity
            views: dict[str, dict[str, Package]] = {}
            for kind, packages in (("module", self.index.modules), ("firmware", self.index.firmware)):
                views[kind] = {}
                for name, package in packages.items():
                    releases = tuple(
                        r for r in package.releases if offered(r.rule, device, groups, name, r.version)
                    )
                    if releases:
                        views[kind][name] = Package(
                            name, releases[0].version, package.optional, package.description, releases
                        )
            cached = self._offers = (self._index_generation, identity, views)
        return cached[2][target]

    def _screen_text(self, message: str) -> str:
        """A failure as the robot's screen shows it (``failed_reason``): the agent's own folders
        are named relative to its root, never as absolute paths; the log keeps every detail."""
        root = str(self.config.root.resolve())
        return message.replace(root + os.sep, "").replace(root, ".")

    # -- requests ---------------------------------------------------------------------------

    def _busy(self, target: str, name: str) -> str | None:
        active = self.state.active_task(target, name)
        if active:
            return f"module {name} is busy with {active.kind} task {active.id} ({active.status}), skip..."
        return None

    def _names(self, body: object) -> list[str]:
        packages = body.get("packages") if isinstance(body, dict) else None
        if not isinstance(packages, list) or not packages or not all(isinstance(p, str) for p in packages):
            raise RequestError({"error": 'expected a JSON body {"packages": ["name", ...]}'})
        return list(dict.fromkeys(packages))

    def request_download(self, body: object) -> dict:
        names = self._names(body)
        with self._request_lock:
            errors: dict[str, str] = {}
            plans = []
            modules = self.offered("module")
            for name in names:
                package = modules.get(name)
                if package is None:
                    errors[name] = f"invalid module {name}, skip..."
                    continue
                current = self.modules.current_version(name)
                latest = package.releases[0]
                downloaded = {d.version for d in self.state.downloads("module", name)}
                if busy := self._busy("module", name):
                    errors[name] = busy
                elif current is not None and version_key(current) >= version_key(latest.version):
                    errors[name] = f"installed version({current}) is already up to date"
                elif latest.version in downloaded:
                    errors[name] = f"version({latest.version}) is already downloaded"
                else:
                    plans.append(latest)
            if not plans:  # 400 only when nothing could be queued; else the rest go ahead
                raise RequestError(errors)
            created = self._queue_downloads("download", "module", plans, with_unpacked_size=True)
        self._wake["download"].set()
        return created

    def _queue_downloads(
        self, kind: str, target: str, releases: list, with_unpacked_size: bool = False
    ) -> dict[str, dict]:
        """One task per release that fetches it from the store; the spec's {name: {task_id, version}}."""
        created = {}
        for release in releases:
            extra = {"unpacked_size": release.unpacked_size} if with_unpacked_size else {}
            task = self.state.add_task(
                kind,
                target,
                release.name,
                release.version,
                url=release.url,
                size=release.size,
                sha256=release.sha256,
                total=release.size,
                **extra,
            )
            created[release.name] = {"task_id": task.id, "version": release.version}
        return created

    def newest_download(self, target: str, name: str) -> Download | None:
        downloads = [d for d in self.state.downloads(target, name) if (self.config.root / d.file).is_file()]
        return max(downloads, key=lambda d: version_key(d.version), default=None)

    def request_install(self, body: object) -> dict:
        names = self._names(body)
        with self._request_lock:
            errors: dict[str, dict[str, str]] = {}
            plans = []
            for name in names:
                known = name in self.index.modules or self.modules.current_version(name) is not None
                chosen = self.newest_download("module", name) if valid_name(name) else None
                current = self.modules.current_version(name) if valid_name(name) else None
                if busy := (self._busy("module", name) if valid_name(name) else None):
                    errors[name] = {"error": busy}
                elif chosen is None:
                    errors[name] = {
                        "error": f"module {name} has no downloaded version, download it first, skip..."
                        if known
                        else f"invalid module {name}, skip..."
                    }
                elif current is not None and version_key(current) > version_key(chosen.version):
                    errors[name] = {
                        "error": f"installed version({current}) is higher than downloaded "
                        f"version({chosen.version}), skip..."
                    }
                elif current == chosen.version:
                    errors[name] = {"error": f"installed version({current}) is already up to date, skip..."}
                else:
                    plans.append(chosen)
            if not plans:  # 400 only when nothing could be queued; else the rest go ahead
                raise RequestError(errors)
            created = {d.module: self._add_install(d) for d in plans}
        self._wake["install"].set()
        return created

    def _add_install(self, d: Download) -> dict:
        task = self.state.add_task(
            "install",
            "module",
            d.module,
            d.version,
            file=d.file,
            size=d.size,
            sha256=d.sha256,
            unpacked_size=d.unpacked_size,
        )
        return {"task_id": task.id, "version": d.version}

    def request_uninstall(self, body: object) -> dict:
        names = self._names(body)
        with self._request_lock:
            errors: dict[str, dict[str, str]] = {}
            plans = []
            for name in names:
                current = self.modules.current_version(name) if valid_name(name) else None
                if current is None:
                    errors[name] = {"error": f"module {name} is not installed, skip..."}
                elif busy := self._busy("module", name):
                    errors[name] = {"error": busy}
                else:
                    plans.append((name, current))
            if not plans:  # 400 only when nothing could be queued; else the rest go ahead
                raise RequestError(errors)
            created = {}
            for name, version in plans:
                task = self.state.add_task("uninstall", "module", name, version)
                created[name] = {"task_id": task.id, "version": version}
        self._wake["install"].set()
        return created

    def request_firmware(self, body: object) -> dict:
        names = self._names(body)
        with self._request_lock:
            errors: dict[str, dict[str, str]] = {}
            plans = []
            firmware = self.offered("firmware")
            for name in names:
                package = firmware.get(name)
                if package is None:
                    errors[name] = {"error": f"invalid firmware {name}, skip..."}
                    continue
                current = self.firmware.current_version(name)
                latest = package.releases[0]
                if busy := self._busy("firmware", name):
                    errors[name] = {"error": busy}
                elif current is not None and version_key(current) >= version_key(latest.version):
                    errors[name] = {"error": f"installed version({current}) is already up to date, skip..."}
                else:
                    plans.append(latest)
            if not plans:  # 400 only when nothing could be queued; else the rest go ahead
                raise RequestError(errors)
            created = self._queue_downloads("install", "firmware", plans)
        self._wake["install"].set()
        return created

    def install_local_file(self, body: object) -> dict:
        """Take a private copy of a module file from the inbox, validate the copy, queue its install.

        Only files in the inbox are taken; every path outside it is refused with the same words,
        decided from the path alone, so the answer never tells whether such a file exists. In the
        inbox, links are not followed, and the file must be a regular file with one link owned
        by the agent's own user (so nobody can hand the agent a file they could not read)."""
        filename = body.get("filename") if isinstance(body, dict) else None
        if not isinstance(filename, str) or not filename:
            raise RequestError({"error": 'expected a JSON body {"filename": "/path/on/the/device"}'})
        path = Path(filename)
        if not path.is_absolute():
            raise RequestError({"error": f"{filename} is not an absolute path"})
        parts = self._inbox_parts(filename)
        if parts is None:
            raise RequestError(
                {
                    "error": f"{filename} is not in the inbox folder {self.config.inbox}; "
                    "only files put there can be installed"
                }
            )
        try:
            name, version, platform = parse_module_filename(path.name)
        except FormatError as exc:
            raise RequestError({"error": f"{path.name}: {exc}"}) from exc
        copy = self._copy_from_inbox(filename, parts)
        try:
            try:
                summary = inspect_tarball(
                    copy, wanted=frozenset({MANIFEST}), max_unpacked=self.config.max_unpacked
                )
                raw_manifest = summary.files.get(MANIFEST)
                manifest = tomllib.loads(raw_manifest.decode()) if raw_manifest is not None else {}
            except FormatError as exc:
                raise RequestError({"error": f"{path.name}: {exc}"}) from exc
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise RequestError({"error": f"{path.name}: {MANIFEST}: {exc}"}) from exc
            for key, expected in (("name", name), ("version", version), ("platform", platform)):
                if key in manifest and str(manifest[key]) != expected:
                    said = f"{MANIFEST} says {key} {manifest[key]!r}"
                    raise RequestError({"error": f"{said} but the file name says {expected!r}"})
            if self.index.platform and platform != self.index.platform:
                raise RequestError(
                    {"error": f"{path.name} is for platform {platform}, this device is {self.index.platform}"}
                )
            with self._request_lock:
                if busy := self._busy("module", name):
                    raise RequestError({"error": busy})
                # The copy the checks read is the one installed (the caller may change its file).
                dest = self.config.local_copies / path.name
                os.replace(copy, dest)
                fsync_dir(dest.parent)
                size, sha256 = sha256_file(dest)
                record = Download(
                    "module",
                    name,
                    version,
                    str(dest.relative_to(self.config.root)),
                    size,
                    sha256,
                    summary.unpacked_size,
                )
                created = self._add_install(record)
        finally:
            with contextlib.suppress(FileNotFoundError):
                copy.unlink()
        self._wake["install"].set()
        return {"module_name": name, "version": version, "task_id": created["task_id"]}

    def _inbox_parts(self, filename: str) -> list[str] | None:
        """The path's components below the inbox, judged from the text alone (no file system
        access, so no answer depends on what exists outside the inbox); None when outside."""
        if "\x00" in filename:
            return None
        raw = filename.split("/")
        if ".." in raw:
            return None
        parts = [p for p in raw if p not in ("", ".")]
        assert self.config.inbox is not None
        for inbox in dict.fromkeys((str(self.config.inbox), os.path.realpath(self.config.inbox))):
            prefix = [p for p in inbox.split("/") if p]
            if len(parts) > len(prefix) and parts[: len(prefix)] == prefix:
                return parts[len(prefix) :]
        return None

    def _copy_from_inbox(self, filename: str, parts: list[str]) -> Path:
        """Open ``parts`` below the inbox without following links, check the file, copy it
        (0600) from the open descriptor into the agent's folder; returns the copy."""
        assert self.config.inbox is not None
        missing = f"{filename} does not exist in the inbox or is not a regular file"
        nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fds = []
        try:
            fds.append(os.open(self.config.inbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            for part in parts[:-1]:
                fds.append(os.open(part, nofollow | os.O_DIRECTORY, dir_fd=fds[-1]))
            # O_NONBLOCK: a FIFO put there must not hang the request
            fd = os.open(parts[-1], nofollow | os.O_NONBLOCK, dir_fd=fds[-1])
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RequestError({"error": f"{filename}: links in the inbox are not followed"}) from exc
            if exc.errno == errno.EACCES:
                raise RequestError({"error": f"{filename} cannot be read by the agent"}) from exc
            raise RequestError({"error": missing}) from exc
        finally:
            for opened in fds:
                os.close(opened)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise RequestError({"error": missing})
            if info.st_uid != os.geteuid():
                raise RequestError(
                    {
                        "error": f"{filename} belongs to uid {info.st_uid}; only files owned by the "
                        f"agent's own user (uid {os.geteuid()}) are installed"
                    }
                )
            if info.st_nlink != 1:
                raise RequestError({"error": f"{filename} has other hard links; copy it into the inbox"})
            os.set_blocking(fd, True)
            return self._private_copy(fd)
        finally:
            os.close(fd)

    def _private_copy(self, source_fd: int) -> Path:
        out_fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.config.local_copies)  # 0600
        try:
            with os.fdopen(out_fd, "wb") as out:
                while block := os.read(source_fd, 1 << 20):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return Path(tmp)

    # -- runners ----------------------------------------------------------------------------

    def download_path(self, target: str, name: str, version: str) -> Path:
        suffix = ".tar.gz" if target == "module" else ".bin"
        return self.config.downloads / target / name / f"{name}.{version}{suffix}"

    def _verify_target(self, task: Task) -> None:
        """With a trusted root: the task's file is fetched only as the store's signed metadata
        states it now (fresh metadata, the same length and SHA-256 the task was queued with).
        A refusal fails the task and says why in its log; the installed state stays as it is."""
        if self.trust is None:
            return
        assert task.url
        self.state.log(task.id, "=== checking the store's signed metadata")
        path = target_path((self.config.store, *self.config.mirrors), task.url)
        try:
            if path is None:
                raise TrustError(f"{task.url[:300]} is not below the store's URL; not trusted")
            updater = self.trust.refresh()
            expected = self.trust.expected(updater, path)
        except TrustError as exc:
            self.index_error = str(exc)
            raise TaskError(str(exc)) from exc
        if (expected.length, expected.sha256) != (task.size, task.sha256):
            raise TaskError(
                f"the store's signed metadata now states another file for {task.module} "
                f"{task.version} ({expected.length} bytes, SHA-256 {expected.sha256}); not downloaded"
            )
        self.state.log(
            task.id, f"signed metadata: {path} is {expected.length} bytes with SHA-256 {expected.sha256}"
        )

    def _fetch(self, task: Task) -> Path:
        assert task.url and task.sha256 and task.size is not None
        dest = self.download_path(task.target, task.module, task.version)
        self._verify_target(task)
        self.state.log(
            task.id, f"=== downloading {task.module}:{task.version} from {task.url} ({task.size} bytes)"
        )
        download(
            Wanted(task.url, task.size, task.sha256),
            dest,
            log=lambda line: self.state.log(task.id, line),
            progress=lambda done, total: self.state.progress(task.id, done, total),
            retries=self.config.retries,
            retry_delay=self.config.retry_delay,
            timeout=self.config.timeout,
            origins=self.config.origins,
        )
        return dest

    def _download(self, task: Task) -> None:
        dest = self._fetch(task)
        assert task.size is not None and task.sha256 is not None
        self.state.add_download(
            Download(
                "module",
                task.module,
                task.version,
                str(dest.relative_to(self.config.root)),
                task.size,
                task.sha256,
                task.unpacked_size,
            )
        )
        self.state.log(task.id, f"=== downloaded {task.module}:{task.version}")

    def _install(self, task: Task) -> None:
        say = lambda line: self.state.log(task.id, line)  # noqa: E731
        release = release_name(task.version, task.id)
        say(f"=== installing {task.module}:{task.version}")
        if self.modules.current_release(task.module) != release:
            assert task.file and task.sha256 and task.size is not None
            archive = self.config.root / task.file
            say("=== checking checksum")
            if not archive.is_file():
                raise TaskError(f"downloaded file {task.file} is missing")
            size, digest = sha256_file(archive)
            if (size, digest) != (task.size, task.sha256):
                raise TaskError(f"checksum mismatch: expected SHA-256 {task.sha256}, got {digest}")
            say(f"size {size} and SHA-256 {digest} verified")
            say("=== extract")
            staging = self.config.staging / str(task.id)
            shutil.rmtree(staging, ignore_errors=True)
            limit = self.config.max_unpacked
            if task.unpacked_size is not None:
                limit = min(limit, task.unpacked_size)
            total = task.unpacked_size or 0
            done = [0]

            def advanced(n: int) -> None:
                done[0] += n
                self.state.progress(task.id, done[0], max(total, done[0]))

            try:
                unpacked = safe_unpack(archive, staging, max_bytes=limit, progress=advanced)
                self._check_manifest(task, staging)
            except (UnsafeArchiveError, TaskError):
                shutil.rmtree(staging, ignore_errors=True)
                raise
            say(f"{unpacked.files} entries, {unpacked.bytes} bytes unpacked into staging")
            say("=== activate")
            previous = self.modules.current_version(task.module)
            self.modules.activate(task.module, staging, release)
            say(
                f"{task.module} switched to {task.version}"
                + (f" (previous {previous} kept)" if previous else "")
            )
        else:
            say("release already active (the agent restarted after the switch)")
        if self.config.health_check:
            self._health_check(task, release)
        if task.file and (self.config.root / task.file).parent == self.config.local_copies:
            with contextlib.suppress(FileNotFoundError):
                (self.config.root / task.file).unlink()
        self._prune_downloads(task.module, say)
        say(f"=== done: {task.module} {task.version} installed")

    def _prune_downloads(self, name: str, say: Callable[[str], None]) -> None:
        """After a successful install keep the tarballs of the installed and the previous version
        (what a reinstall or rollback can use), of versions newer than the installed one (still
        waiting to be installed) and the newest download (the store's release to go back to
        from a build installed by hand); older ones only fill the device's disk."""
        current = self.modules.current_version(name)
        downloads = self.state.downloads("module", name)
        if current is None or not downloads:
            return
        previous_release = self.modules.previous_release(name)
        newest = max(downloads, key=lambda d: version_key(d.version)).version
        keep = {current, newest, release_version(previous_release) if previous_release else current}
        for d in downloads:
            if d.version in keep or version_key(d.version) > version_key(current):
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.config.root / d.file).unlink()
            self.state.forget_downloads("module", name, d.version)
            say(f"removed the download of {name} {d.version}")

    def _check_manifest(self, task: Task, staging: Path) -> None:
        manifest_path = staging / MANIFEST
        if not manifest_path.is_file() or manifest_path.is_symlink():
            return
        try:
            manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise TaskError(f"{MANIFEST}: {exc}") from exc
        for key, expected in (("name", task.module), ("version", task.version)):
            if key in manifest and str(manifest[key]) != expected:
                raise TaskError(f"{MANIFEST} says {key} {manifest[key]!r}, expected {expected!r}")

    def _health_check(self, task: Task, release: str) -> None:
        assert self.config.health_check
        folder = self.modules.folder(task.module) / "current"
        argv = shlex.split(self.config.health_check)
        self.state.log(task.id, f"=== health check: {shlex.join(argv)}")
        env = {
            **os.environ,
            "DEPOT_MODULE": task.module,
            "DEPOT_VERSION": task.version,
            "DEPOT_MODULE_DIR": str(folder),
        }
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
            ok, detail = done.returncode == 0, f"exit status {done.returncode}"
            for line in (done.stdout + done.stderr).splitlines()[-20:]:
                self.state.log(task.id, f"health check: {line}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, detail = False, str(exc)
        if not ok:
            self.state.log(task.id, "=== rollback")
            restored = self.modules.rollback(task.module, release)
            self.state.log(
                task.id, f"rolled back to {restored}" if restored else "no previous version: removed"
            )
            raise TaskError(f"health check failed ({detail}); rolled back", rolled_back=True)

    def _uninstall(self, task: Task) -> None:
        self.state.log(task.id, f"=== uninstalling {task.module}:{task.version}")
        self.modules.uninstall(task.module, str(task.id))
        for d in self.state.downloads("module", task.module):
            with contextlib.suppress(FileNotFoundError):
                (self.config.root / d.file).unlink()
        self.state.forget_downloads("module", task.module)
        self.state.log(task.id, f"=== done: {task.module} removed")

    def _firmware(self, task: Task) -> None:
        image = self._fetch(task)
        assert task.sha256
        self.state.log(task.id, f"=== flashing {task.module}:{task.version}")
        self.firmware.flash(
            task.module, task.version, image, task.sha256, lambda line: self.state.log(task.id, line)
        )
        with contextlib.suppress(FileNotFoundError):
            image.unlink()
        self.state.log(task.id, f"=== done: firmware {task.module} {task.version} installed")

    # -- views ------------------------------------------------------------------------------

    def packages(self, target: str) -> list[dict]:
        installed = self.modules.installed() if target == "module" else self.firmware.installed()
        downloads: dict[str, list[str]] = {}
        for d in self.state.downloads(target):
            if (self.config.root / d.file).is_file():
                downloads.setdefault(d.module, []).append(d.version)
        views = package_list(
            self.offered(target),
            installed,
            downloads,
            self.state.active_tasks(target),
            self.state.latest_tasks(target),
        )
        if self.index_error:  # the last refresh was refused: every line says why it is stale
            for view in views:
                view["store_error"] = self._screen_text(self.index_error)
        return views

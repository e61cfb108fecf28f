"""Installed modules and firmware on disk, switched atomically.

Layout under ``<root>/modules/<name>/``::

    releases/<version>@<task>/   one unpacked tree per install task
    current  -> releases/...     the active release (a symlink, replaced in one rename)
    previous -> releases/...     the release it replaced, kept for rollback

Activation renames the verified staging folder into ``releases/`` and swaps ``current`` by
renaming a new symlink over it, so a reader (or a power cut) sees the old release or the new one,
never a mix. Uninstall renames the whole module folder into ``<root>/trash/`` in one step and
deletes it afterwards. Firmware is recorded in ``<root>/firmware/<name>/current.json``, written
temp → fsync → rename after the flasher succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from builder.atomic import atomic_write, copy_temp, fsync_dir

CURRENT, PREVIOUS, RELEASES = "current", "previous", "releases"


def installed_versions(root: Path, current_version: Callable[[str], str | None]) -> dict[str, str]:
    """name → current version of every item below ``root`` that has one."""
    out = {}
    if root.is_dir():
        for entry in sorted(os.listdir(root)):
            version = current_version(entry)
            if version:
                out[entry] = version
    return out


class InstallError(Exception):
    pass


def release_name(version: str, task_id: int) -> str:
    return f"{version}@{task_id}"


def release_version(release: str) -> str:
    return release.rsplit("@", 1)[0]


def _swap_link(link: Path, target: str) -> None:
    tmp = link.with_name(f".tmp-{link.name}-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def _read_link(link: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return None


class ModuleStore:
    def __init__(self, root: Path, trash: Path) -> None:
        self.root = root
        self.trash = trash

    def folder(self, name: str) -> Path:
        return self.root / name

    def current_release(self, name: str) -> str | None:
        release = _read_link(self.folder(name) / CURRENT)
        if release and (self.folder(name) / RELEASES / release).is_dir():
            return release
        return None

    def current_version(self, name: str) -> str | None:
        release = self.current_release(name)
        return release_version(release) if release else None

    def previous_release(self, name: str) -> str | None:
        release = _read_link(self.folder(name) / PREVIOUS)
        if release and (self.folder(name) / RELEASES / release).is_dir():
            return release
        return None

    def installed(self) -> dict[str, str]:
        """name → current version, read from the disk (the truth after any crash)."""
        return installed_versions(self.root, self.current_version)

    def activate(self, name: str, staging: Path, release: str) -> None:
        """Publish ``staging`` as ``release`` and make it current; the old current becomes previous."""
        folder = self.folder(name)
        releases = folder / RELEASES
        releases.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.root)
        if (releases / release).exists():  # left by a switch the previous process did not finish
            self._discard(releases / release, f"{name}-{release}-stale")
        os.rename(staging, releases / release)
        fsync_dir(releases)
        old = self.current_release(name)
        _swap_link(folder / CURRENT, f"{RELEASES}/{release}")
        if old and old != release:
            _swap_link(folder / PREVIOUS, f"{RELEASES}/{old}")
        self.collect(name)

    def rollback(self, name: str, failed: str) -> str | None:
        """Make the previous release current again (or uninstall when there was none)."""
        folder = self.folder(name)
        previous = self.previous_release(name)
        if previous and previous != failed:
            _swap_link(folder / CURRENT, f"{RELEASES}/{previous}")
            with contextlib.suppress(FileNotFoundError):
                (folder / PREVIOUS).unlink()
            fsync_dir(folder)
        else:
            with contextlib.suppress(FileNotFoundError):
                (folder / CURRENT).unlink()
            fsync_dir(folder)
        self.collect(name)
        return release_version(previous) if previous and previous != failed else None

    def collect(self, name: str) -> None:
        """Delete releases neither current nor previous (moved to trash first, so atomically)."""
        releases = self.folder(name) / RELEASES
        keep = {self.current_release(name), self.previous_release(name)}
        if not releases.is_dir():
            return
        for release in os.listdir(releases):
            if release not in keep:
                self._discard(releases / release, f"{name}-{release}")

    def uninstall(self, name: str, tag: str) -> None:
        folder = self.folder(name)
        if folder.exists():
            self._discard(folder, f"{name}@{tag}")

    def _discard(self, path: Path, label: str) -> None:
        self.trash.mkdir(parents=True, exist_ok=True)
        target = self.trash / label
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.rename(path, target)
        fsync_dir(path.parent)
        shutil.rmtree(target, ignore_errors=True)


class FirmwareStore:
    def __init__(self, root: Path, flasher: str | None) -> None:
        self.root = root
        self.flasher = flasher

    def record(self, name: str) -> dict | None:
        try:
            return json.loads((self.root / name / "current.json").read_text())
        except (OSError, ValueError):
            return None

    def current_version(self, name: str) -> str | None:
        record = self.record(name)
        return str(record["version"]) if record and "version" in record else None

    def installed(self) -> dict[str, str]:
        return installed_versions(self.root, self.current_version)

    def flash(self, name: str, version: str, image: Path, sha256: str, log: Callable[[str], None]) -> None:
        """Run the flasher on ``image``; record the new version only when it succeeded."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        if self.flasher:
            argv = [*shlex.split(self.flasher), str(image)]
            log(f"running flasher: {shlex.join(argv)}")
            env = {**os.environ, "DEPOT_FIRMWARE_NAME": name, "DEPOT_FIRMWARE_VERSION": version}
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, env=env, timeout=3600, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise InstallError(f"flasher could not run: {exc}") from exc
            for line in (done.stdout + done.stderr).splitlines()[-20:]:
                log(f"flasher: {line}")
            if done.returncode != 0:
                raise InstallError(f"flasher exited with status {done.returncode}")
            stored = None
        else:
            stored = folder / f"{version}.bin"
            tmp = copy_temp(stored, image)
            os.replace(tmp, stored)
            fsync_dir(folder)
            log(f"image copied to {stored}")
        old = self.record(name) or {}
        atomic_write(
            folder / "current.json",
            json.dumps({"version": version, "sha256": sha256, "image": stored and stored.name}).encode(),
        )
        old_image = old.get("image")
        if old_image and old_image != (stored and stored.name):
            with contextlib.suppress(FileNotFoundError):
                (folder / old_image).unlink()

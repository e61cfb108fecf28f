"""A version's rollout rule in its sidecars, and the one function that changes it.

A module or firmware version is one file per platform in repo/ (``modules/ax.2.6.4.pi64.tar.gz``,
``modules/ax.2.6.4.opi64.tar.gz``), each with its own sidecar. The rule of a version, as the
status endpoint and ``depot rollout status`` show it, is the sidecar of its first platform file
(by platform name); ``depot rollout set`` without ``--platform`` writes the same values into
every platform's sidecar, so they agree unless someone changed one on purpose. The automatic
pause checks every platform's threshold against the counts of the whole version, and pauses
every platform.

:func:`change_rollout` is the only writer: ``depot rollout set/pause/resume`` and the automatic
pause after a device report both go through it. It runs under the database's write lock
(``BEGIN IMMEDIATE``, shared by every runtime process and the CLI), reads each sidecar whole,
changes only the rollout keys and writes it back through :func:`builder.sidecars.write_sidecar`,
so two writers never lose each other's change and a rollout is paused exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.device.firmware import FILENAME as FIRMWARE_FILENAME
from builder.errors import DepotError
from builder.model import Rollout
from builder.names import FILENAME as MODULE_FILENAME
from builder.settings import ROLLOUT_OPTIONS
from builder.sidecars import read_sidecar, write_sidecar
from runtime.database import Database
from runtime.device.store import VersionKey, counts, failure_rate, log_change
from runtime.storage import transaction

TARGETS = {"module": ("modules", MODULE_FILENAME), "firmware": ("firmware", FIRMWARE_FILENAME)}
ROLLOUT_KEYS = frozenset(option.key for option in ROLLOUT_OPTIONS)
# \Z, not $: "$" also matches before a final "\n" (and checked with fullmatch besides)
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}\Z")


class NoSuchVersionError(DepotError):
    """The version has no file in repo/ (for that platform)."""


@dataclass(frozen=True)
class Rule:
    """A version's rollout as its sidecars state it, with the devices' counts."""

    key: VersionKey
    platforms: dict[str, Rollout]  # platform → that file's sidecar, sorted by platform
    counts: dict[str, int]

    @property
    def rollout(self) -> Rollout:
        """The version's rule: its first platform's sidecar."""
        return next(iter(self.platforms.values()))

    @property
    def failure_rate(self) -> float | None:
        return failure_rate(self.counts)


def _package_files(repo: Path, target: str) -> Iterator[tuple[str, str, str, Path]]:
    """(name, version, platform, path) of every package file name of one target in repo/ (the
    caller checks ``is_file`` of the few it wants)."""
    folder, pattern = TARGETS[target]
    try:
        entries = list((repo / folder).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for path in entries:
        match = pattern.match(path.name)
        if match:
            yield match["name"], match["version"], match["platform"], path


def version_files(repo: Path, target: str, name: str, version: str) -> dict[str, Path]:
    """platform → package file of one version in repo/, sorted by platform; {} when none."""
    if not NAME.fullmatch(name) or not VERSION.fullmatch(version):
        return {}
    found = {
        platform: path
        for n, v, platform, path in _package_files(repo, target)
        if n == name and v == version and path.is_file()
    }
    return dict(sorted(found.items()))


def existing_versions(repo: Path, keys: Iterable[VersionKey]) -> frozenset[VersionKey]:
    """Those of ``keys`` that have a file in repo/ (as :func:`version_files` finds them), with
    one listing of each target's folder: a report names up to 2000 versions, and only these get
    a row in device_versions, so a device cannot fill the database with versions that exist
    nowhere. Called before the report's transaction, so no listing runs under the write lock."""
    wanted = set(keys)
    found: set[VersionKey] = set()
    for target in sorted({key[0] for key in wanted}):
        for name, version, _platform, path in _package_files(repo, target):
            key = (target, name, version)
            if key in wanted and key not in found and path.is_file():
                found.add(key)
    return frozenset(found)


def read_rule(db: Database, repo: Path, key: VersionKey, platform: str | None = None) -> Rule:
    """The rule of one version (of one platform); NoSuchVersionError when it has no file there;
    FormatError when a sidecar cannot be read."""
    target, name, version = key
    files = version_files(repo, target, name, version)
    if platform is not None:
        files = {p: f for p, f in files.items() if p == platform}
    if not files:
        where = f" for platform {platform}" if platform else ""
        raise NoSuchVersionError(
            f"{target} {name} {version} has no file in {repo}/{TARGETS[target][0]}/{where}"
        )
    platforms = {p: Rollout.from_sidecar(read_sidecar(f, target)) for p, f in files.items()}
    return Rule(key, platforms, counts(db, key))


Decide = Callable[[Rule], dict[str, dict[str, Any]] | None]


def change_rollout(
    db: Database,
    repo: Path,
    key: VersionKey,
    decide: Decide,
    actor: str,
    platform: str | None = None,
) -> tuple[Rule, dict[str, dict[str, Any]]]:
    """Under the database's write lock: read the version's rule, ask ``decide`` for the changes
    (platform → {rollout key: value}, a value of None removes the key; None = no change), and
    write them into those platforms' sidecars, every other key kept. Returns the rule it decided
    on and what it wrote (only what differed); the change is logged in device_rollout_log."""
    target = key[0]
    with transaction(db):
        rule = read_rule(db, repo, key, platform)
        wanted = decide(rule) or {}
        files = version_files(repo, *key)
        written: dict[str, dict[str, Any]] = {}
        for name, updates in wanted.items():
            unknown = set(updates) - ROLLOUT_KEYS
            if unknown or name not in rule.platforms:
                raise ValueError(f"not a rollout change: {name} {sorted(unknown)}")
            raw = read_sidecar(files[name])
            fields = {k: v for k, v in {**raw, **updates}.items() if v is not None}
            if fields != raw:
                write_sidecar(files[name], fields, kind=target)  # FormatError: nothing written
                written[name] = {k: updates[k] for k in updates if raw.get(k) != fields.get(k)}
        if written:
            log_change(db, key, actor, written)
    return rule, written


# -- the automatic pause ---------------------------------------------------------------------------


def pause_reason(rollout: Rollout, found: dict[str, int]) -> str | None:
    """The one rule: the reason to pause, when at least ``min_devices`` devices reported an
    install outcome and the share that failed is above ``max_failure_rate``; else None."""
    if rollout.max_failure_rate is None:
        return None
    outcomes = found["installed"] + found["failed"]
    if outcomes < rollout.min_devices or outcomes == 0:
        return None
    rate = found["failed"] / outcomes
    if rate <= rollout.max_failure_rate:
        return None
    return (
        f"paused automatically: {found['failed']} of {outcomes} devices failed "
        f"(rate {rate:.2f} > max_failure_rate {rollout.max_failure_rate:.2f})"
    )


def version_pause_reason(rule: Rule) -> str | None:
    """The version's reason to pause: the first platform whose sidecar's threshold is passed
    (every platform's threshold is checked, against the counts of the whole version, so a
    threshold written into one platform's sidecar guards the version everywhere)."""
    return next(
        (reason for r in rule.platforms.values() if (reason := pause_reason(r, rule.counts)) is not None),
        None,
    )


def decide_auto_pause(rule: Rule) -> dict[str, dict[str, Any]] | None:
    """Pause every platform not paused yet, when the rule says so."""
    reason = version_pause_reason(rule)
    if reason is None:
        return None
    pause = {"paused": True, "paused_reason": reason}
    return {p: pause for p, r in rule.platforms.items() if not r.paused} or None


def auto_pause(db: Database, repo: Path, key: VersionKey) -> str | None:
    """Check one version after a report; the reason when this call paused it, else None (no
    file in repo/, no threshold, below it, or already paused)."""
    target, name, version = key
    if not version_files(repo, target, name, version):
        return None
    rule, written = change_rollout(db, repo, key, decide_auto_pause, "auto")
    if not written:
        return None
    return version_pause_reason(rule)

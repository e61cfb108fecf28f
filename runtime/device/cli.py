"""``depot device ...`` (enrolled devices) and ``depot rollout ...`` (a version's staged rollout).

Kept out of runtime/cli.py so the device dialect's commands are one module; runtime/cli.py calls
:func:`register`. They take the shared ``store_options`` of :mod:`builder.cli`. The rollout
commands write the sidecars through :func:`runtime.device.rollouts.change_rollout`, the same
function the automatic pause uses, then rebuild the catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from builder.cli import Store, keys_option, run_build, store_options, summary
from runtime.database import Database
from runtime.storage import build_lock, configured_url


def _db(store: Store) -> Database:
    from runtime.dialects import load_dialects
    from runtime.storage import open_database

    load_dialects()  # registers the device schema before the database is migrated
    return open_database(store.data)


def _actor() -> str:
    import getpass

    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _groups(text: str) -> list[str]:
    from runtime.device.store import parse_groups

    return parse_groups(text)


def _installed(installed: dict[str, dict[str, str]]) -> str:
    parts = [f"{n}={v}" for n, v in sorted(installed.get("modules", {}).items())]
    parts += [f"firmware:{n}={v}" for n, v in sorted(installed.get("firmware", {}).items())]
    return " ".join(parts) or "-"


def _share(text: str) -> float | None:
    """``--max-failure-rate``: a number from 0 to 1, or ``off`` (None: the key is removed)."""
    if text.strip().lower() in ("off", "none", "unset"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise click.BadParameter(f"{text!r} is not a number from 0 to 1 (or off)")
    return value


def register(main: click.Group) -> None:
    @main.group("device")
    def device() -> None:
        """Enroll devices that report back to the store (docs/device-index.md)."""

    @device.command("add")
    @store_options
    @click.argument("name")
    @click.option("--groups", default="", help="Comma-separated rollout groups, e.g. beta,lab.")
    def device_add(store: Store, name: str, groups: str) -> None:
        """Enroll a device; its token is printed once, as the last line."""
        from runtime.device.store import enroll

        created, raw = enroll(_db(store), name, _groups(groups))
        click.echo(
            f"device {created.name} enrolled"
            + (f" in {', '.join(created.groups)}" if created.groups else "")
            + ". Give the agent this token (--device-token); it is not shown again.",
            err=True,
        )
        click.echo(raw)

    @device.command("list")
    @store_options
    def device_list(store: Store) -> None:
        """Every enrolled device: groups, created, last report, agent version, installed versions."""
        from runtime.device.store import all_devices

        click.echo("name\tgroups\tcreated\tlast_report\tagent_version\tinstalled")
        for d in all_devices(_db(store)):
            click.echo(
                "\t".join(
                    (
                        d.name,
                        ",".join(d.groups) or "-",
                        d.created,
                        d.last_report or "never",
                        d.agent_version or "-",
                        _installed(d.installed),
                    )
                )
            )

    @device.command("remove")
    @store_options
    @click.argument("name")
    def device_remove(store: Store, name: str) -> None:
        """Revoke a device's token and forget what it reported."""
        from runtime.device.store import remove

        remove(_db(store), name)
        click.echo(f"device {name} removed; its token no longer works")

    @device.command("groups")
    @store_options
    @click.argument("name")
    @click.option("--set", "groups", required=True, help="Comma-separated groups ('' for none).")
    def device_groups(store: Store, name: str, groups: str) -> None:
        """Set a device's rollout groups (the device learns them from its next report's answer)."""
        from runtime.device.store import set_groups

        changed = set_groups(_db(store), name, _groups(groups))
        click.echo(f"device {changed.name} groups: {', '.join(changed.groups) or 'none'}")

    @main.group("rollout")
    def rollout() -> None:
        """Stage, pause, resume and count the rollout of one module or firmware version."""

    def target_options(func: Any) -> Any:
        func = click.option(
            "--platform", default=None, help="Only this platform's file (default: every one)."
        )(func)
        func = click.option("--firmware", is_flag=True, help="NAME is a firmware image, not a module.")(func)
        func = click.argument("version")(func)
        return click.argument("name")(func)

    def _change(
        store: Store,
        keys: Path | None,
        name: str,
        version: str,
        firmware: bool,
        platform: str | None,
        updates: dict[str, Any],
    ) -> None:
        from runtime.device.rollouts import change_rollout

        key = ("firmware" if firmware else "module", name, version)
        rule, written = change_rollout(
            _db(store), store.repo, key, lambda rule: {p: updates for p in rule.platforms}, _actor(), platform
        )
        platforms = ", ".join(rule.platforms)
        if not written:
            click.echo(f"{key[0]} {name} {version} ({platforms}): unchanged")
            return
        said = ", ".join(f"{k} {'unset' if v is None else v}" for k, v in updates.items())
        click.echo(f"{key[0]} {name} {version} ({', '.join(written)}): {said}")
        with build_lock(configured_url(store.data)):  # the nodes' build lock on PostgreSQL
            click.echo(summary(run_build(store, quiet=True, keys=keys)))

    @rollout.command("set")
    @store_options
    @keys_option
    @target_options
    @click.option(
        "--share", type=click.FloatRange(0, 1), default=None, help="Share of devices offered it, 0 to 1."
    )
    @click.option(
        "--groups", default=None, help="Only devices in these groups (comma-separated; '' for every device)."
    )
    @click.option(
        "--max-failure-rate",
        default=None,
        help="Pause automatically above this share of failed installs (or off).",
    )
    @click.option(
        "--min-devices",
        type=click.IntRange(min=1),
        default=None,
        help="Install outcomes before the rate counts.",
    )
    def rollout_set(
        store: Store,
        keys: Path | None,
        name: str,
        version: str,
        firmware: bool,
        platform: str | None,
        share: float | None,
        groups: str | None,
        max_failure_rate: str | None,
        min_devices: int | None,
    ) -> None:
        """Write a version's rollout rule into its sidecars, then rebuild."""
        updates: dict[str, Any] = {}
        if share is not None:
            updates["rollout"] = share
        if groups is not None:
            updates["groups"] = _groups(groups) or None
        if max_failure_rate is not None:
            updates["max_failure_rate"] = _share(max_failure_rate)
        if min_devices is not None:
            updates["min_devices"] = min_devices
        if not updates:
            raise click.UsageError(
                "say what to change: --share, --groups, --max-failure-rate or --min-devices"
            )
        _change(store, keys, name, version, firmware, platform, updates)

    @rollout.command("pause")
    @store_options
    @keys_option
    @target_options
    @click.option("--reason", default="paused by hand (depot rollout pause)", show_default=True)
    def rollout_pause(
        store: Store,
        keys: Path | None,
        name: str,
        version: str,
        firmware: bool,
        platform: str | None,
        reason: str,
    ) -> None:
        """Offer the version to no device that has not started it, then rebuild."""
        _change(store, keys, name, version, firmware, platform, {"paused": True, "paused_reason": reason})

    @rollout.command("resume")
    @store_options
    @keys_option
    @target_options
    def rollout_resume(
        store: Store, keys: Path | None, name: str, version: str, firmware: bool, platform: str | None
    ) -> None:
        """Clear paused and paused_reason, then rebuild. The counts stay: when the failure rate is
        still above max_failure_rate, the next install outcome pauses it again."""
        _change(store, keys, name, version, firmware, platform, {"paused": None, "paused_reason": None})

    @rollout.command("status")
    @store_options
    @target_options
    def rollout_status(store: Store, name: str, version: str, firmware: bool, platform: str | None) -> None:
        """The version's rule and what the enrolled devices reported (from the database in --data)."""
        from runtime.device.rollouts import read_rule
        from runtime.device.store import FLAGS

        rule = read_rule(
            _db(store), store.repo, ("firmware" if firmware else "module", name, version), platform
        )
        r = rule.rollout
        rate = rule.failure_rate
        click.echo(f"{rule.key[0]} {name} {version} ({', '.join(rule.platforms)})")
        click.echo(
            f"share {r.share:g}  groups {','.join(r.groups) or 'all'}  paused {'yes' if r.paused else 'no'}"
            f"  max_failure_rate {'off' if r.max_failure_rate is None else f'{r.max_failure_rate:g}'}"
            f"  min_devices {r.min_devices}"
        )
        if r.paused_reason:
            click.echo(f"paused_reason: {r.paused_reason}")
        heads = [*FLAGS, "failure_rate"]
        values = [str(rule.counts[f]) for f in FLAGS] + ["-" if rate is None else f"{rate:.2f}"]
        widths = [max(len(h), len(v)) for h, v in zip(heads, values, strict=True)]
        click.echo("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
        click.echo("  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip())

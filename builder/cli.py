"""The builder's commands of ``depot``: build, watch, check, check-config, nginx, keys, sign-timestamp.

They need nothing of the runtime, so the runtime's command group (:mod:`runtime.cli`) adds them
with :func:`add_commands`, and ``depot build`` imports no web framework. Every command that works
on a store takes the same ``--repo/--site/--data`` options (:func:`store_options`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from builder.build import BuildResult, build
from builder.errors import DepotError


class Store:
    """The three folders one set of options addresses."""

    def __init__(self, repo: Path, site: Path, data: Path) -> None:
        self.repo, self.site, self.data = repo, site, data


def store_options(func: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--repo",
        type=click.Path(path_type=Path),
        default=Path("repo"),
        show_default=True,
        help="The upload repository: the source of truth.",
    )
    @click.option(
        "--site",
        type=click.Path(path_type=Path),
        default=Path("site"),
        show_default=True,
        help="Where the static catalog is published.",
    )
    @click.option(
        "--data",
        type=click.Path(path_type=Path),
        default=Path("var"),
        show_default=True,
        help="Runtime state: database, secret key, upload scratch space.",
    )
    @functools.wraps(func)
    def wrapper(repo: Path, site: Path, data: Path, **kwargs: Any) -> Any:
        return func(Store(repo, site, data), **kwargs)

    return wrapper


class DepotGroup(click.Group):
    """A command group that turns every DepotError into one clear line and its exit code;
    anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DepotError as exc:
            click.echo(f"Error: {exc}", err=True)  # the same form as click's own errors
            ctx.exit(exc.exit_code)


class BarProgress:
    """A click progress bar, shown only on a terminal and only for builds that read many files."""

    THRESHOLD = 200

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int, label: str) -> None:
        if total >= self.THRESHOLD and sys.stderr.isatty() and not os.environ.get("CI"):
            self._bar = click.progressbar(length=total, label=label, file=sys.stderr)
            self._bar.__enter__()

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


DEFAULT_KEYS = Path("keys")


def signing_keys(given: Path | None) -> Path | None:
    """The key folder a build signs with: ``given`` (--keys or DEPOT_KEYS), which must exist,
    else ./keys when it exists, else None (no signed metadata, as before there were keys)."""
    if given is None:
        return DEFAULT_KEYS if DEFAULT_KEYS.is_dir() else None
    if not given.is_dir():
        raise click.ClickException(
            f"key folder {given} does not exist (create it with: depot keys init --keys {given})"
        )
    return given


def keys_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--keys DIR`` (or DEPOT_KEYS) of the commands that build: the key folder that signs the
    TUF metadata of site/tuf/ (docs/device-index.md). Passes ``keys``: a Path, or None."""

    @click.option(
        "--keys",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        envvar="DEPOT_KEYS",
        help="Key folder that signs site/tuf/ (default: ./keys when it exists; env DEPOT_KEYS).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, keys: Path | None, **kwargs: Any) -> Any:
        return func(*args, keys=signing_keys(keys), **kwargs)

    return wrapper


def key_folder_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--keys DIR`` (or DEPOT_KEYS) of the commands that manage the key folder itself."""
    return click.option(
        "--keys",
        type=click.Path(path_type=Path, file_okay=False),
        default=DEFAULT_KEYS,
        envvar="DEPOT_KEYS",
        show_default=True,
        help="The key folder (env DEPOT_KEYS).",
    )(func)


def run_build(
    store: Store,
    quiet: bool = False,
    keys: Path | None = None,
    changed: list[str] | None = None,
    full: bool = False,
) -> BuildResult:
    """Build, printing skipped inputs and the report's warnings; unusable settings raise (exit
    status 1). With ``keys``, the build signs site/tuf/ with that key folder; ``changed`` and
    ``full`` as builder.build.build takes them."""
    if not store.repo.is_dir():
        raise click.ClickException(f"repository folder {store.repo} does not exist")
    result = build(
        store.repo,
        store.site,
        progress=None if quiet else BarProgress(),
        on_wait=lambda: click.echo("another build is running; waiting for it", err=True),
        keys=keys,
        changed=changed,
        full=full,
    )
    for relpath, reason in sorted(result.skipped.items()):
        click.echo(f"warning: skipped {relpath}: {reason}", err=True)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    return result


def summary(result: BuildResult) -> str:
    return (
        f"published: {len(result.written)} written, {result.unchanged} unchanged, "
        f"{len(result.deleted)} deleted, {result.bytes_written} bytes, "
        f"{len(result.skipped)} skipped in {result.timings['total']:.2f}s"
    )


@click.command("build")
@store_options
@keys_option
@click.option("--report", is_flag=True, help="Print the full build report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Print warnings only.")
@click.option(
    "--changed",
    multiple=True,
    metavar="PATH",
    help="A file or folder of repo/ that changed (repeatable): stat only these, not every file "
    "of repo/. For scripts and CI that know what they wrote.",
)
@click.option(
    "--full", is_flag=True, help="Also check every file of site/ and repair what is missing or damaged."
)
def build_command(
    store: Store, keys: Path | None, report: bool, quiet: bool, changed: tuple[str, ...], full: bool
) -> None:
    """Publish repo/ into site/ (incrementally); with a key folder, sign site/tuf/ too."""
    import json

    feed = [_repo_relative(store.repo, p) for p in changed] if changed else None
    result = run_build(store, quiet=quiet, keys=keys, changed=feed, full=full)
    if report:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    elif not quiet:
        click.echo(summary(result))


def _repo_relative(repo: Path, given: str) -> str:
    """A --changed path as the build takes it: relative to repo/ (given relative to repo/, or
    as a path to a file inside repo/)."""
    path = Path(given)
    if path.is_absolute() or (Path.cwd() / path).resolve().is_relative_to(repo.resolve()):
        try:
            return (Path.cwd() / path).resolve().relative_to(repo.resolve()).as_posix()
        except ValueError:
            raise click.BadParameter(f"{given} is not inside {repo}", param_hint="--changed") from None
    return path.as_posix()


@click.command("watch")
@store_options
@keys_option
@click.option("--debounce", default=0.3, show_default=True, help="Seconds of quiet before a rebuild.")
def watch_command(store: Store, keys: Path | None, debounce: float) -> None:
    """Build, then rebuild on every change in repo/ until interrupted."""
    from builder.watch import watch

    click.echo(summary(run_build(store, keys=keys)))
    click.echo(f"watching {store.repo} (Ctrl-C to stop)")
    watch(store.repo, lambda changed: _rebuild_quietly(store, keys, changed), debounce=debounce)


def _rebuild_quietly(store: Store, keys: Path | None = None, changed: list[str] | None = None) -> None:
    """One rebuild for `depot watch`: report and carry on, whatever went wrong."""
    try:
        click.echo(summary(run_build(store, quiet=True, keys=keys, changed=changed)))
    except (DepotError, click.ClickException) as exc:
        message = exc.message if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"error: {message}; keeping the last good site", err=True)
    except Exception as exc:  # a watcher that dies on one bad edit is worse than a noisy one
        click.echo(f"error: build failed ({exc!r}); keeping the last good site", err=True)


@click.command("check")
@store_options
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def check_command(store: Store, files: tuple[Path, ...]) -> None:
    """Validate package files and print why each invalid one is rejected.

    The store's depot.toml (when --repo has one) supplies the settings some formats depend on,
    such as the OTA file-name pattern and the Qt categories."""
    from builder.check import check_file
    from builder.settings import load_settings

    settings = load_settings(store.repo)
    failures = 0
    for path in files:
        problem = check_file(path, settings)
        if problem:
            failures += 1
            click.echo(f"{path}: INVALID: {problem}")
        else:
            click.echo(f"{path}: ok")
    sys.exit(1 if failures else 0)


@click.command("check-config")
@store_options
def check_config_command(store: Store) -> None:
    """Check repo/depot.toml against the settings schema; print every problem, or ok."""
    from builder.settings import check_config

    problems = check_config(store.repo)
    for problem in problems:
        click.echo(problem)
    if problems:
        sys.exit(1)
    click.echo(f"{store.repo / 'depot.toml'}: ok")


@click.command("nginx")
@store_options
@click.option("--upstream", default="127.0.0.1:8000", show_default=True, help="Where depot serve listens.")
@click.option(
    "--node",
    "nodes",
    multiple=True,
    metavar="HOST:PORT",
    help="A runtime node behind nginx (repeatable, instead of --upstream): round robin, with failover.",
)
@click.option("--server-name", default="_", show_default=True)
@click.option("--listen", default="80", show_default=True, help="nginx listen directive value.")
@click.pass_context
def nginx_command(
    ctx: click.Context, store: Store, upstream: str, nodes: tuple[str, ...], server_name: str, listen: str
) -> None:
    """Print an nginx server block generated from the route table (site/routes.json)."""
    from builder.nginx import check_node, nginx_config
    from builder.routes import ROUTES_FILE

    if nodes and ctx.get_parameter_source("upstream") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("give either --upstream or --node, not both")
    addresses = list(nodes) or [upstream]
    for address in addresses:
        try:
            check_node(address)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--node" if nodes else "--upstream") from exc
    routes = store.site / ROUTES_FILE
    if not routes.exists():
        raise click.ClickException(f"{routes} does not exist: run depot build first")
    click.echo(nginx_config(store.site.resolve(), upstream=addresses, server_name=server_name, listen=listen))


@click.group("keys")
def keys_group() -> None:
    """The key folder that signs site/tuf/ (TUF metadata; docs/device-index.md)."""


@keys_group.command("init")
@store_options
@key_folder_option
@click.option(
    "--root-keys", default=1, show_default=True, type=click.IntRange(1, 32), help="Root keys to make."
)
@click.option(
    "--root-threshold",
    default=1,
    show_default=True,
    type=click.IntRange(1, 32),
    help="Root signatures needed.",
)
@click.option(
    "--targets-keys", default=1, show_default=True, type=click.IntRange(1, 32), help="Targets keys to make."
)
@click.option(
    "--targets-threshold",
    default=1,
    show_default=True,
    type=click.IntRange(1, 32),
    help="Targets signatures needed.",
)
def keys_init_command(
    store: Store, keys: Path, root_keys: int, root_threshold: int, targets_keys: int, targets_threshold: int
) -> None:
    """Create a key folder: new keys for every role and root version 1."""
    from builder.trust.keys import check_location, init_keys

    check_location(keys, repo=store.repo, site=store.site)
    digest = init_keys(
        keys,
        root_keys=root_keys,
        root_threshold=root_threshold,
        targets_keys=targets_keys,
        targets_threshold=targets_threshold,
    )
    click.echo(
        f"created {keys}: root {root_threshold} of {root_keys} keys, "
        f"targets {targets_threshold} of {targets_keys}"
    )
    click.echo(f"root fingerprint (SHA-256 of {keys}/metadata/1.root.json): {digest}")
    click.echo(
        "next: depot build publishes site/tuf/1.root.json; give that file to devices as their trusted "
        f"root, back up {keys}/ and move {keys}/root/ offline"
    )


@keys_group.command("rotate")
@store_options
@key_folder_option
@click.argument("role", type=click.Choice(["root", "targets", "snapshot", "timestamp"]))
@click.option("--keyid", default=None, help="Replace only this key of the role (a unique prefix will do).")
def keys_rotate_command(store: Store, keys: Path, role: str, keyid: str | None) -> None:
    """Give ROLE new keys: sign the next root version (needs the root keys)."""
    from builder.trust.keys import check_location, rotate

    check_location(keys, repo=store.repo, site=store.site)
    version = rotate(keys, role, keyid=keyid)
    click.echo(f"signed root version {version} with new {role} keys; depot build publishes it")
    click.echo(
        f"the replaced keys are in {keys}/retired/{role}/: destroy them once the new root is published"
    )


@keys_group.command("renew")
@store_options
@key_folder_option
def keys_renew_command(store: Store, keys: Path) -> None:
    """Sign the next root version with the same keys and a new expiry (needs the root keys)."""
    from builder.trust.keys import check_location, renew_root

    check_location(keys, repo=store.repo, site=store.site)
    click.echo(f"signed root version {renew_root(keys)}; depot build publishes it")


@keys_group.command("show")
@key_folder_option
def keys_show_command(keys: Path) -> None:
    """Print the root fingerprints, roles, keyids, thresholds and expiries."""
    from builder.trust.keys import describe

    info = describe(keys)
    click.echo(f"key folder {info['folder']}")
    click.echo(f"fingerprint of 1.root.json: {info['fingerprint_1_root']}")
    click.echo(
        f"root version {info['root_version']}, expires {info['root_expires']}: {info['fingerprint_root']}"
    )
    for role, entry in info["roles"].items():
        signed = f", version {entry['version']}, expires {entry['expires']}" if "version" in entry else ""
        click.echo(f"{role}: threshold {entry['threshold']} of {len(entry['keys'])}{signed}")
        for keyid, present in entry["keys"].items():
            click.echo(f"  {keyid} {'(private key here)' if present else '(private key not here)'}")


@click.command("sign-timestamp")
@store_options
@key_folder_option
@click.option("--if-due", is_flag=True, help="Only when less than half of its validity is left.")
def sign_timestamp_command(store: Store, keys: Path, if_due: bool) -> None:
    """Sign site/tuf/timestamp.json again (cron, for a site served from a CDN)."""
    from builder.trust.resign import sign_timestamp

    signed = sign_timestamp(store.repo, store.site, keys, force=not if_due)
    if signed is None:
        click.echo("timestamp not due yet")
    else:
        click.echo(f"timestamp version {signed[0]} signed, expires {signed[1]}")


COMMANDS = (
    build_command,
    watch_command,
    check_command,
    check_config_command,
    nginx_command,
    keys_group,
    sign_timestamp_command,
)


def add_commands(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)

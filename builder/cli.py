"""The builder's commands of ``depot``: build, watch, check, check-config, nginx.

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


def run_build(store: Store, quiet: bool = False) -> BuildResult:
    """Build, printing skipped inputs as warnings; unusable settings raise (exit status 1)."""
    if not store.repo.is_dir():
        raise click.ClickException(f"repository folder {store.repo} does not exist")
    result = build(
        store.repo,
        store.site,
        progress=None if quiet else BarProgress(),
        on_wait=lambda: click.echo("another build is running; waiting for it", err=True),
    )
    for relpath, reason in sorted(result.skipped.items()):
        click.echo(f"warning: skipped {relpath}: {reason}", err=True)
    return result


def summary(result: BuildResult) -> str:
    return (
        f"published: {len(result.written)} written, {result.unchanged} unchanged, "
        f"{len(result.deleted)} deleted, {result.bytes_written} bytes, "
        f"{len(result.skipped)} skipped in {result.timings['total']:.2f}s"
    )


@click.command("build")
@store_options
@click.option("--report", is_flag=True, help="Print the full build report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Print warnings only.")
def build_command(store: Store, report: bool, quiet: bool) -> None:
    """Publish repo/ into site/ (incrementally)."""
    import json

    result = run_build(store, quiet=quiet)
    if report:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    elif not quiet:
        click.echo(summary(result))


@click.command("watch")
@store_options
@click.option("--debounce", default=0.3, show_default=True, help="Seconds of quiet before a rebuild.")
def watch_command(store: Store, debounce: float) -> None:
    """Build, then rebuild on every change in repo/ until interrupted."""
    from builder.watch import watch

    click.echo(summary(run_build(store)))
    click.echo(f"watching {store.repo} (Ctrl-C to stop)")
    watch(store.repo, lambda: _rebuild_quietly(store), debounce=debounce)


def _rebuild_quietly(store: Store) -> None:
    """One rebuild for `depot watch`: report and carry on, whatever went wrong."""
    try:
        click.echo(summary(run_build(store, quiet=True)))
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
@click.option("--server-name", default="_", show_default=True)
@click.option("--listen", default="80", show_default=True, help="nginx listen directive value.")
def nginx_command(store: Store, upstream: str, server_name: str, listen: str) -> None:
    """Print an nginx server block generated from site/routes.json."""
    from builder.nginx import nginx_config

    routes = store.site / "routes.json"
    if not routes.exists():
        raise click.ClickException(f"{routes} does not exist: run depot build first")
    click.echo(
        nginx_config(store.site.resolve(), routes, upstream=upstream, server_name=server_name, listen=listen)
    )


COMMANDS = (build_command, watch_command, check_command, check_config_command, nginx_command)


def add_commands(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)

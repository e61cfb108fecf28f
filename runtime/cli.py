"""The ``depot`` command line. Every store command takes the same --repo/--site/--data options."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from builder.build import BuildResult, build
from builder.errors import BuildError, SettingsError


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
    """Build, printing skipped inputs as warnings; exits with status 1 on unusable settings."""
    if not store.repo.is_dir():
        raise click.ClickException(f"repository folder {store.repo} does not exist")
    try:
        result = build(
            store.repo,
            store.site,
            progress=None if quiet else BarProgress(),
            on_wait=lambda: click.echo("another build is running; waiting for it", err=True),
        )
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    except BuildError as exc:
        raise click.ClickException(str(exc)) from exc
    for relpath, reason in sorted(result.skipped.items()):
        click.echo(f"warning: skipped {relpath}: {reason}", err=True)
    return result


def summary(result: BuildResult) -> str:
    return (
        f"published: {len(result.written)} written, {result.unchanged} unchanged, "
        f"{len(result.deleted)} deleted, {result.bytes_written} bytes, "
        f"{len(result.skipped)} skipped in {result.timings['total']:.2f}s"
    )


@click.group()
@click.version_option(package_name="depot")
def main() -> None:
    """Depot: a static app store and OTA catalog with a thin runtime."""


@main.command("build")
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


@main.command("watch")
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
    except click.ClickException as exc:
        click.echo(f"error: {exc.message}; keeping the last good site", err=True)
    except Exception as exc:  # a watcher that dies on one bad edit is worse than a noisy one
        click.echo(f"error: build failed ({exc!r}); keeping the last good site", err=True)


@main.command("serve")
@store_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve_command(store: Store, host: str, port: int) -> None:
    """Build if needed, then serve site/ and the dynamic endpoints."""
    import uvicorn

    from runtime.app import create_app
    from runtime.config import RuntimeConfig

    click.echo(summary(run_build(store, quiet=True)))
    config = RuntimeConfig.from_folders(store.repo, store.site, store.data)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=True)


@main.command("agent")
@click.option("--store", required=True, help="Base URL of the store (its device/index.json is read).")
@click.option("--root", required=True, type=click.Path(path_type=Path), help="Everything the agent owns.")
@click.option("--platform", default=None, help="Device platform (default: the store's first).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--secret", envvar="DEPOT_AGENT_SECRET", default=None, help="Required in the Secret header.")
@click.option("--flasher", default=None, help="Command that flashes a firmware image (path appended).")
@click.option("--health-check", default=None, help="Command run after activation; failure rolls back.")
@click.option("--max-unpacked", default=None, type=int, help="Largest size a module may unpack to.")
@click.option("--retries", default=8, show_default=True, type=int, help="Download attempts without progress.")
@click.option("--retry-delay", default=1.0, show_default=True, type=float, help="First back-off in seconds.")
def agent_command(store: str, root: Path, platform: str | None, host: str, port: int, **options: Any) -> None:
    """Run the device app store: install modules and firmware from a store into ROOT."""
    import uvicorn

    from runtime.agent.api import create_agent_app
    from runtime.agent.config import AgentConfig
    from runtime.agent.tasks import Agent

    settings = {k: v for k, v in options.items() if v is not None}
    config = AgentConfig(store=store, root=root, platform=platform, **settings)
    uvicorn.run(create_agent_app(Agent(config)), host=host, port=port, log_level="info", access_log=True)


@main.group("user")
def user_group() -> None:
    """Manage accounts."""


@user_group.command("add")
@store_options
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--staff", is_flag=True, help="Store team: may upload Qt packages and review.")
@click.option("--devices", default="", help="Comma-separated OTA device codenames this user maintains.")
def user_add(store: Store, name: str, password_stdin: bool, staff: bool, devices: str) -> None:
    """Create an account (or update its password, staff flag and devices)."""
    from runtime.accounts import AccountError, Accounts
    from runtime.dialects import load_dialects
    from runtime.storage import open_database

    load_dialects()

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    db = open_database(store.data)
    try:
        user = Accounts(db).add(
            name,
            password,
            staff=staff,
            devices=[d.strip() for d in devices.split(",") if d.strip()],
        )
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"user {user.name} saved" + (" (staff)" if user.staff else ""))


@main.command("check")
@store_options
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def check_command(store: Store, files: tuple[Path, ...]) -> None:
    """Validate package files and print why each invalid one is rejected.

    The store's depot.toml (when --repo has one) supplies the settings some formats depend on,
    such as the OTA file-name pattern and the Qt categories."""
    from builder.check import check_file
    from builder.settings import load_settings

    try:
        settings = load_settings(store.repo)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    failures = 0
    for path in files:
        problem = check_file(path, settings)
        if problem:
            failures += 1
            click.echo(f"{path}: INVALID: {problem}")
        else:
            click.echo(f"{path}: ok")
    sys.exit(1 if failures else 0)


@main.command("nginx")
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


def _register_portal_commands() -> None:
    from runtime.portal.cli import register

    register(main, store_options, run_build)  # depot ci-token ..., depot portal ...


_register_portal_commands()


if __name__ == "__main__":
    main()

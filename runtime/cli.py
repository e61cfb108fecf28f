"""The ``depot`` command: the runtime's commands (serve, user, agent, ci-token, portal) plus
the builder's (build, watch, check, check-config, nginx, keys, sign-timestamp, from
:mod:`builder.cli`).

Every store command takes the same --repo/--site/--data options. The imports of the web
framework stay inside the commands that serve, so ``depot build`` starts without them.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from builder.cli import DepotGroup, Store, add_commands, keys_option, run_build, store_options, summary


class RuntimeGroup(DepotGroup):
    """The ``depot`` group. The dialects' command groups are imported when one of them is asked
    for (or for ``--help``), not before: importing runtime.portal or runtime.device loads the
    web framework, the password hasher and X.509, which ``depot build`` does not need."""

    LAZY = {
        "ci-token": "runtime.portal.cli",
        "portal": "runtime.portal.cli",
        "device": "runtime.device.cli",
        "rollout": "runtime.device.cli",
        "stats": "runtime.downloads_cli",
        "db": "runtime.database_cli",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY and cmd_name not in self.commands:
            importlib.import_module(self.LAZY[cmd_name]).register(self)  # adds its groups to us
        return super().get_command(ctx, cmd_name)


@click.group(cls=RuntimeGroup)
@click.version_option(package_name="depot")
def main() -> None:
    """Depot: a static app store and OTA catalog with a thin runtime."""


add_commands(main)


@main.command("serve")
@store_options
@keys_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes serving the one port (docs/operations.md: how many).",
)
@click.option(
    "--database",
    default=None,
    metavar="URL",
    help="postgresql://USER@HOST/NAME (several nodes) or sqlite:///PATH; default: DEPOT_DATABASE_URL,"
    " else depot.db in the data folder.",
)
@click.option(
    "--no-build",
    is_flag=True,
    help="Serve site/ as it is and never rebuild (a node beside the one that builds; docs/operations.md).",
)
def serve_command(
    store: Store, keys: Path | None, host: str, port: int, workers: int, database: str | None, no_build: bool
) -> None:
    """Build if needed, then serve site/ and the dynamic endpoints; with a key folder, sign
    site/tuf/ and keep its timestamp fresh."""
    import os

    import uvicorn

    from runtime.accesslog import log_config
    from runtime.app import create_app, start_up_once
    from runtime.config import RuntimeConfig
    from runtime.security import protocol_name, uvicorn_limits

    # a weak key or a bad database URL stops here
    config = RuntimeConfig.from_folders(
        store.repo, store.site, store.data, keys, database, builds=not no_build
    )
    if not no_build:
        from runtime.storage import build_lock

        # under the nodes' build lock (PostgreSQL), as every later build: a node that starts
        # while another one builds waits for it rather than writing site/ beside it
        with build_lock(config.database_url):
            click.echo(summary(run_build(store, quiet=True, keys=config.keys)))
    limits = uvicorn_limits(
        config.server.header_timeout, config.server.max_connections, config.server.keep_alive_timeout
    )
    if workers == 1:
        app = create_app(config)
        logs = log_config()
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=True, log_config=logs, **limits)
        return
    # N processes on one socket: the start-up steps run once, here, and each worker makes its
    # app from the environment (uvicorn starts workers as fresh interpreters); the secret key
    # is var/secret.key (made by from_folders above) or DEPOT_SECRET_KEY, which they inherit.
    start_up_once(config)
    os.environ.update(
        {
            "DEPOT_SERVE_REPO": str(config.repo),
            "DEPOT_SERVE_SITE": str(config.site),
            "DEPOT_SERVE_DATA": str(config.data),
            "DEPOT_DATABASE_URL": config.database_url,
            "DEPOT_SERVE_NO_BUILD": "1" if no_build else "",
            **({"DEPOT_KEYS": str(config.keys)} if config.keys else {}),
        }
    )
    limits["http"] = protocol_name()
    uvicorn.run(
        "runtime.app:app_from_environment",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        access_log=True,
        log_config=log_config(),
        **limits,
    )


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
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host name the API answers to besides loopback (e.g. the robot's address); repeatable.",
)
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    metavar="URL",
    help="Another origin the index may point downloads at (or redirect to); repeatable.",
)
@click.option(
    "--inbox",
    default=None,
    type=click.Path(path_type=Path),
    help="The only folder install_local_file takes files from (default: ROOT/inbox).",
)
@click.option(
    "--trusted-root",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The store's TUF root.json to start trusting from: only signed metadata is believed.",
)
@click.option("--device-id", default=None, help="This device's id for staged rollouts (default: its name).")
@click.option("--groups", default=None, help="Comma-separated rollout groups until the store names them.")
@click.option(
    "--device-token",
    envvar="DEPOT_DEVICE_TOKEN",
    default=None,
    help="The token `depot device add` printed: the agent reports to the store with it.",
)
@click.option("--report-to", default=None, metavar="URL", help="The store runtime's URL (default: --store).")
def agent_command(store: str, root: Path, platform: str | None, host: str, port: int, **options: Any) -> None:
    """Run the device app store: install modules and firmware from a store into ROOT."""
    import uvicorn

    from runtime.agent.api import create_agent_app
    from runtime.agent.config import AgentConfig
    from runtime.agent.tasks import Agent

    settings = {k: v for k, v in options.items() if v is not None}
    settings["allowed_hosts"] = tuple(settings.get("allowed_hosts", ()))
    settings["mirrors"] = tuple(settings.get("mirrors", ()))
    if "groups" in settings:
        settings["groups"] = tuple(g.strip() for g in settings["groups"].split(",") if g.strip())
    try:
        config = AgentConfig(store=store, root=root, platform=platform, **settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
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
@click.option("--full-name", default=None, help="The name shown for a maintainer (kept when not given).")
def user_add(
    store: Store, name: str, password_stdin: bool, staff: bool, devices: str, full_name: str | None
) -> None:
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
            full_name=full_name,
        )
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"user {user.name} saved" + (" (staff)" if user.staff else ""))


@user_group.command("list")
@store_options
def user_list(store: Store) -> None:
    """Print every account: name, staff, disabled, OTA devices maintained, created."""
    from runtime.accounts import Accounts
    from runtime.dialects import load_dialects
    from runtime.storage import open_database

    load_dialects()
    db = open_database(store.data)
    created = {r["id"]: r["created"] for r in db.table("users").rows_where(select="id, created")}
    click.echo("name\tstaff\tdisabled\tdevices\tcreated")
    for u in Accounts(db).all():
        click.echo(
            f"{u.name}\t{'yes' if u.staff else 'no'}\t{'yes' if u.disabled else 'no'}"
            f"\t{','.join(u.devices) or '-'}\t{created.get(u.id) or '-'}"
        )


def _set_disabled(store: Store, name: str, disabled: bool) -> None:
    from runtime.accounts import Accounts
    from runtime.dialects import load_dialects
    from runtime.storage import open_database

    load_dialects()  # their session enders end the account's sessions
    accounts = Accounts(open_database(store.data))
    user = accounts.get(name)
    if user is None:
        raise click.ClickException(f"no user {name!r}")
    accounts.set_disabled(user.id, disabled)
    done = "disabled: its sessions ended, its tokens stop working" if disabled else "enabled"
    click.echo(f"user {name} {done}")


@user_group.command("disable")
@store_options
@click.argument("name")
def user_disable(store: Store, name: str) -> None:
    """Disable an account: no sign-in, its sessions end, its tokens stop working."""
    _set_disabled(store, name, True)


@user_group.command("enable")
@store_options
@click.argument("name")
def user_enable(store: Store, name: str) -> None:
    """Enable a disabled account again (its tokens work again; it signs in anew)."""
    _set_disabled(store, name, False)


@main.group("token")
def token_group() -> None:
    """List and revoke API tokens of every kind (OTA logins, CI tokens, portal sessions)."""


@token_group.command("list")
@store_options
@click.option("--user", "user_name", default=None, help="Only this account's tokens.")
@click.option("--purpose", default=None, help="Only one kind: ota, ci, portal_session, ...")
def token_list(store: Store, user_name: str | None, purpose: str | None) -> None:
    """Print every live token: id, kind, owner, shown prefix, created, last used, expiry."""
    from runtime.accounts import Accounts
    from runtime.dialects import load_dialects
    from runtime.storage import open_database
    from runtime.tokens import Tokens

    load_dialects()
    db = open_database(store.data)
    accounts = Accounts(db)
    user_id = None
    if user_name is not None:
        user = accounts.get(user_name)
        if user is None:
            raise click.ClickException(f"no user {user_name!r}")
        user_id = user.id
    names = {u.id: u.name for u in accounts.all()}
    for t in Tokens(db).all(user_id, purpose):
        click.echo(
            f"{t.id}\t{t.purpose}\t{names.get(t.user_id, '?')}\t{t.prefix}...\tcreated {t.created}"
            f"\tlast used {t.last_used or 'never'}\texpires {t.expires or 'never'}"
            + (f"\tscope {t.scope}" if t.scope else "")
        )


@token_group.command("revoke")
@store_options
@click.argument("token_id", type=int)
def token_revoke(store: Store, token_id: int) -> None:
    """Revoke one token by its id (from `depot token list`)."""
    from runtime.dialects import load_dialects
    from runtime.storage import open_database
    from runtime.tokens import Tokens

    load_dialects()
    if not Tokens(open_database(store.data)).revoke(token_id):
        raise click.ClickException(f"no live token {token_id}")
    click.echo(f"token {token_id} revoked")


if __name__ == "__main__":
    main()

"""``depot ci-token ...`` and ``depot portal ...``: CI tokens and the store team's review.

Kept out of runtime/cli.py so the portal's commands are one module; runtime/cli.py calls
:func:`register`. They take the shared ``store_options`` of :mod:`builder.cli`, so every command
addresses a store the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from builder.cli import Store, keys_option, run_build, store_options
from runtime.accounts import User
from runtime.database import Database
from runtime.storage import build_lock, configured_url


def _db(store: Store) -> Database:
    from runtime.dialects import load_dialects
    from runtime.storage import open_database

    load_dialects()  # registers the portal's schema before the database is migrated
    return open_database(store.data)


def _user(db: Database, name: str) -> User:
    from runtime.accounts import Accounts

    user = Accounts(db).get(name)
    if user is None:
        raise click.ClickException(f"no user {name!r} (create it with `depot user add {name}`)")
    return user


def _actor() -> str:
    import getpass

    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def register(main: click.Group) -> None:
    @main.group("ci-token")
    def ci_token() -> None:
        """Create, list and revoke CI upload tokens."""

    @ci_token.command("create")
    @store_options
    @click.option("--user", "user_name", required=True, help="The developer account the token acts for.")
    @click.option("--app", default=None, help="Limit the token to one package name.")
    @click.option("--expires-days", type=int, default=None, help="Expire after N days (1-365).")
    @click.option("--name", default="", help="A label shown in listings.")
    def ci_token_create(
        store: Store, user_name: str, app: str | None, expires_days: int | None, name: str
    ) -> None:
        """Create a token; the raw token is printed once, as the last line."""
        from runtime.portal.endpoints import create_ci_token

        db = _db(store)
        user = _user(db, user_name)
        try:
            token, raw = create_ci_token(db, user, name, app, expires_days)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(
            f"token {token.id} for {user.name}"
            + (f", only for {token.scope}" if token.scope else "")
            + (f", expires {token.expires}" if token.expires else ", no expiry")
            + ". Store it now: it is not shown again.",
            err=True,
        )
        click.echo(raw)

    @ci_token.command("list")
    @store_options
    @click.option("--user", "user_name", required=True)
    def ci_token_list(store: Store, user_name: str) -> None:
        """List a user's live CI tokens (never their secret values)."""
        from runtime.tokens import Tokens

        db = _db(store)
        user = _user(db, user_name)
        tokens = Tokens(db).list(user.id, "ci")
        click.echo("id\tprefix\tscope\tcreated\texpires\tlast_used\tname")
        for t in tokens:
            click.echo(
                "\t".join(
                    str(x or "-")
                    for x in (t.id, t.prefix, t.scope, t.created, t.expires, t.last_used, t.name)
                )
            )

    @ci_token.command("revoke")
    @store_options
    @click.argument("token_id", type=int)
    def ci_token_revoke(store: Store, token_id: int) -> None:
        """Revoke a CI token at once."""
        from runtime.tokens import Tokens

        db = _db(store)
        tokens = Tokens(db)
        token = tokens.get(token_id)
        if token is None or token.purpose != "ci" or not tokens.revoke(token_id):
            raise click.ClickException(f"no live CI token {token_id}")
        click.echo(f"token {token_id} revoked")

    @main.group("portal")
    def portal() -> None:
        """The store team's review: approve, reject, release, withdraw, resolve."""

    def _review(
        store: Store, action: Callable[[Any], dict], rebuild: bool = False, keys: Path | None = None
    ) -> dict:
        from runtime.portal.review import ReviewError

        db = _db(store)
        try:
            row = action(db)
        except ReviewError as exc:
            raise click.ClickException(str(exc)) from exc
        if rebuild:
            with build_lock(configured_url(store.data)):  # the nodes' build lock on PostgreSQL
                run_build(store, quiet=True, keys=keys)
        return row

    def _said(row: dict) -> str:
        return f"{row['package']} {row['version_code']} ({row['version_name']}) is now {row['status']}"

    @portal.command("list")
    @store_options
    @click.option("--status", default=None, help="Only versions in this status (e.g. in_review).")
    def portal_list(store: Store, status: str | None) -> None:
        """List versions with their status and open findings."""
        from runtime.portal.store import open_issue_count, rows

        db = _db(store)
        sql = """SELECT v.id, a.package, v.version_code, v.version_name, v.status FROM portal_versions v
                 JOIN portal_apps a ON a.id = v.app_id"""
        found = rows(
            db,
            sql + (" WHERE v.status = ?" if status else "") + " ORDER BY v.created",
            [status] * bool(status),
        )
        click.echo("id\tpackage\tversion_code\tversion_name\tstatus\topen_issues")
        for r in found:
            click.echo(
                f"{r['id']}\t{r['package']}\t{r['version_code']}\t{r['version_name']}\t{r['status']}\t"
                f"{open_issue_count(db, r['id'])}"
            )

    @portal.command("approve")
    @store_options
    @click.argument("version_id")
    def portal_approve(store: Store, version_id: str) -> None:
        """Approve a version that passed validation."""
        from runtime.portal.review import approve, expand_id

        click.echo(
            _said(_review(store, lambda db: approve(db, expand_id(db, "version", version_id), _actor())))
        )

    @portal.command("reject")
    @store_options
    @click.argument("version_id")
    @click.option("--reason", required=True, help="What the developer must change.")
    def portal_reject(store: Store, version_id: str, reason: str) -> None:
        """Reject a version with a reason."""
        from runtime.portal.review import expand_id, reject

        click.echo(
            _said(
                _review(store, lambda db: reject(db, expand_id(db, "version", version_id), reason, _actor()))
            )
        )

    @portal.command("release")
    @store_options
    @keys_option
    @click.argument("version_id")
    @click.option("--countries", required=True, help="Comma-separated ISO country codes, e.g. DE,AT.")
    @click.option("--vehicle-contexts", default="", help="Comma-separated vehicle contexts.")
    def portal_release(
        store: Store, keys: Path | None, version_id: str, countries: str, vehicle_contexts: str
    ) -> None:
        """Make an approved version live for the given targets, publish it and rebuild."""
        from runtime.portal.review import ReviewError, expand_id, parse_targets, release

        try:
            c, v = parse_targets(countries, vehicle_contexts)
        except ReviewError as exc:
            raise click.ClickException(str(exc)) from exc
        row = _review(
            store,
            lambda db: release(
                db, store.repo, store.data, expand_id(db, "version", version_id), c, v, _actor()
            ),
            True,
            keys,
        )
        click.echo(_said(row) + f" in {', '.join(c)}")

    @portal.command("withdraw")
    @store_options
    @keys_option
    @click.argument("version_id")
    def portal_withdraw(store: Store, keys: Path | None, version_id: str) -> None:
        """Take a live version out of the catalog (it goes back to approved) and rebuild."""
        from runtime.portal.review import expand_id, withdraw

        def action(db: Database) -> dict:
            return withdraw(db, store.repo, expand_id(db, "version", version_id), _actor())

        click.echo(_said(_review(store, action, True, keys)))

    @portal.command("resolve")
    @store_options
    @click.argument("finding_id")
    def portal_resolve(store: Store, finding_id: str) -> None:
        """Mark a finding resolved, so it no longer counts as an open issue."""
        from runtime.portal.review import expand_id, resolve

        finding = _review(store, lambda db: resolve(db, expand_id(db, "finding", finding_id), _actor()))
        click.echo(f"finding {finding['id']} ({finding['code']}) resolved")

    @portal.command("show")
    @store_options
    @click.argument("version_id")
    def portal_show(store: Store, version_id: str) -> None:
        """Show one version (a full id or its first characters): facts, targets, findings with
        their ids (for `depot portal resolve`) and what the store team did with it."""
        import json

        from runtime.portal.review import expand_id
        from runtime.portal.store import rows, runs_with_findings, version

        db = _db(store)
        row = _review(store, lambda db: version(db, expand_id(db, "version", version_id)) or {})
        facts = json.loads(row["facts"] or "{}")
        for label, value in (
            ("id", row["id"]),
            ("package", row["package"]),
            ("version", f"{row['version_code']} ({row['version_name']})"),
            ("status", row["status"] + (f": {row['reason']}" if row["reason"] else "")),
            ("size", f"{row['size']} bytes"),
            ("sha256", row["sha256"]),
            ("signer", f"{facts.get('signer_subject', '?')} (SHA-256 {row['signer_sha256']})"),
            ("min_sdk", facts.get("min_sdk")),
            ("target_sdk", facts.get("target_sdk")),
            ("abis", ", ".join(facts.get("abis") or []) or "any"),
            ("permissions", ", ".join(facts.get("permissions") or []) or "none"),
            ("countries", ", ".join(json.loads(row["countries"] or "[]")) or "-"),
            ("vehicle_contexts", ", ".join(json.loads(row["vehicle_contexts"] or "[]")) or "-"),
            ("uploaded", row["created"]),
        ):
            click.echo(f"{label}:\t{value}")
        click.echo("findings (id\tseverity\tstatus\tcode\tmessage):")
        for run in runs_with_findings(db, row["id"]):
            for f in run["findings"]:
                click.echo(f"  {f['id']}\t{f['severity']}\t{f['status']}\t{f['code']}\t{f['message']}")
        click.echo("events:")
        for e in rows(db, "SELECT * FROM portal_events WHERE version_id = ? ORDER BY id", [row["id"]]):
            click.echo(
                f"  {e['created']}\t{e['actor']}\t{e['action']}" + (f"\t{e['detail']}" if e["detail"] else "")
            )

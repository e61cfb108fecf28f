"""The developers' pages: the apps they uploaded through the CI portal, and their CI tokens.

Every signed-in account is a developer (a staff account sees its own apps here too; the whole
queue is the review page's). Nothing here is a second copy of a portal rule: the apps a user
owns are the portal's ``portal_apps.owner_id``, versions, findings and release targets are read
with :mod:`runtime.portal.store` (stale validation runs finished first, as the API's reads do),
a token is made by :func:`runtime.portal.endpoints.create_ci_token` (the API's and ``depot
ci-token create``'s name, scope and expiry rules) and revoked the way ``DELETE
/portal/api/ci-tokens/{id}`` revokes it (only a live ``ci`` token of the same account).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from runtime.console.pages import guarded, posted, whole_number
from runtime.console.render import page
from runtime.console.session import ConsoleSession
from runtime.portal.endpoints import MAX_TOKEN_DAYS, create_ci_token, token_view
from runtime.portal.store import release_view, rows, runs_with_findings, version_summary
from runtime.portal.validation import finish_stale_runs
from runtime.services import services
from runtime.tokens import Tokens

CI_PURPOSE = "ci"


def my_apps(db: Any, repo: Any, user_id: int) -> list[dict[str, Any]]:
    """The user's apps, newest version first, each version with its status, open issues, the
    findings of its last validation run and its release targets."""
    apps = rows(
        db, "SELECT id, package, created FROM portal_apps WHERE owner_id = ? ORDER BY package", [user_id]
    )
    for app in apps:
        for stale in rows(
            db, "SELECT id FROM portal_versions WHERE app_id = ? AND status = 'draft'", [app["id"]]
        ):
            finish_stale_runs(db, repo, stale["id"])  # as the API's reads do, after a restart
        versions = []
        for row in rows(
            db,
            """SELECT v.*, a.package FROM portal_versions v JOIN portal_apps a ON a.id = v.app_id
               WHERE v.app_id = ? ORDER BY v.version_code DESC""",
            [app["id"]],
        ):
            runs = runs_with_findings(db, row["id"])
            versions.append(
                {
                    **version_summary(db, row),
                    "reason": row["reason"],
                    "created": row["created"],
                    "run": runs[-1] if runs else None,
                    "release": release_view(row),
                }
            )
        app["versions"] = versions
    return apps


@guarded()
async def apps_page(request: Request, session: ConsoleSession) -> Response:
    svc = services(request)
    apps = await run_in_threadpool(lambda: my_apps(svc.storage.db, svc.config.repo, session.user.id))
    return page(request, "apps.html", session, title="My apps", apps=apps)


def _tokens_page(request: Request, session: ConsoleSession, status: int = 200, **context: Any) -> Response:
    tokens = Tokens(services(request).storage.db).list(session.user.id, CI_PURPOSE)
    defaults: dict[str, Any] = {"created": None, "secret": "", "error": "", "notice": "", "form": {}}
    return page(
        request,
        "ci_tokens.html",
        session,
        status=status,
        title="CI tokens",
        tokens=[token_view(t) for t in tokens],
        max_days=MAX_TOKEN_DAYS,
        **{**defaults, **context},
    )


@guarded()
async def tokens_page(request: Request, session: ConsoleSession) -> Response:
    notice = ""
    revoked = request.query_params.get("revoked", "")
    if whole_number(revoked) is not None:
        notice = f"Token {revoked} is revoked: CI jobs using it are refused from now on."
    return await run_in_threadpool(_tokens_page, request, session, notice=notice)


@guarded()
async def create_token(request: Request, session: ConsoleSession) -> Response:
    data = posted(request)
    name = str(data.get("name") or "").strip()
    app = str(data.get("app") or "").strip() or None
    days_text = str(data.get("expires_days") or "").strip()
    form = {"name": name, "app": app or "", "expires_days": days_text}
    days: int | None = None
    if days_text:
        days_number = whole_number(days_text)
        if days_number is None:
            return await run_in_threadpool(
                _tokens_page,
                request,
                session,
                400,
                error="The expiry must be a whole number of days.",
                form=form,
            )
        days = days_number
    db = services(request).storage.db
    try:
        token, raw = await run_in_threadpool(create_ci_token, db, session.user, name, app, days)
    except ValueError as exc:
        return await run_in_threadpool(
            _tokens_page, request, session, 400, error=f"Not created: {exc}.", form=form
        )
    return await run_in_threadpool(_tokens_page, request, session, created=token_view(token), secret=raw)


@guarded()
async def revoke_token(request: Request, session: ConsoleSession) -> Response:
    token_id = whole_number(request.path_params["token_id"])
    if token_id is None:
        token_id = -1

    def revoke() -> bool:  # DELETE /portal/api/ci-tokens/{id}: a live ci token of this account only
        tokens = Tokens(services(request).storage.db)
        token = tokens.get(token_id)
        return (
            token is not None
            and token.purpose == CI_PURPOSE
            and tokens.revoke(token_id, user_id=session.user.id)
        )

    if not await run_in_threadpool(revoke):
        return await run_in_threadpool(
            _tokens_page, request, session, 404, error="No such CI token of your account (revoked already?)."
        )
    return RedirectResponse(f"/console/ci-tokens?revoked={token_id}", status_code=303)


ROUTES: list[BaseRoute] = [
    Route("/console/apps", apps_page, methods=["GET"]),
    Route("/console/ci-tokens", tokens_page, methods=["GET"]),
    Route("/console/ci-tokens", create_token, methods=["POST"]),
    Route("/console/ci-tokens/{token_id}/revoke", revoke_token, methods=["POST"]),
]

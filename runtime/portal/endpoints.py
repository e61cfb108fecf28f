"""The CI upload portal under ``/portal/api``: CI tokens, APK uploads, version status.

Automation endpoints take ``Authorization: Bearer <token>`` (a ``ci`` token, optionally scoped
to one package); the interactive ones (token management) take the portal session cookie from
``POST /login``. Every error is ``{"error": {"code", "message"}}`` with a stable code.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from builder.jsonsafe import JsonError, loads_json
from runtime.accounts import Accounts, User, on_password_change
from runtime.bodies import SMALL_BODY, BodyTooLargeError, read_body
from runtime.database import Database
from runtime.errors import ApiError
from runtime.logins import password_login
from runtime.portal import upload as portal_upload
from runtime.portal.errors import error
from runtime.portal.store import (
    release_view,
    runs_with_findings,
    version,
    version_summary,
)
from runtime.portal.validation import finish_stale_runs, run_validation
from runtime.ratelimit import LoginThrottledError
from runtime.services import client_address, services
from runtime.tokens import Token, Tokens, token_hash

PREFIX = "/portal/api"
COOKIE = "depot_portal_session"
SESSION_SECONDS = 12 * 3600
SESSION_PURPOSE = "portal_session"  # a Tokens purpose: revocable, so logout ends a copied cookie


@on_password_change
def end_portal_sessions(db: Database, user_id: int) -> None:
    Tokens(db).revoke_all(user_id, SESSION_PURPOSE)


MAX_TOKEN_DAYS = 365
TOKEN_NAME = re.compile(r"^[\w .@:/-]{0,64}$")


# -- authentication -------------------------------------------------------------------------------


def bearer_token(request: Request) -> Token:
    """The live CI token of the request, or 401 with the reason."""
    header = request.headers.get("authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise error(401, "token_missing", "Send the CI token as 'Authorization: Bearer <token>'.")
    raw = raw.strip()
    db = services(request).storage.db
    token = Tokens(db).verify(raw, "ci")
    if token is not None:
        return token
    where = "token_hash = ? and purpose = 'ci'"
    rows = list(db.table("tokens").rows_where(where, [token_hash(raw)], limit=1))
    if rows and rows[0]["revoked"]:
        raise error(401, "token_revoked", "This CI token was revoked.")
    if rows and Tokens(db).owner_disabled(rows[0]["user_id"]):
        raise error(401, "account_disabled", "The account of this CI token is disabled.")
    if rows:
        raise error(401, "token_expired", f"This CI token expired on {rows[0]['expires']}.")
    raise error(401, "token_invalid", "Unknown CI token.")


def session_user(request: Request) -> User:
    """The user of the session cookie: a random portal_session token, live in the database."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise error(401, "session_missing", f"Log in with POST {PREFIX}/login first.")
    db = services(request).storage.db
    token = Tokens(db).verify(cookie, SESSION_PURPOSE)
    if token is None:
        raise error(401, "session_invalid", "The portal session ended or is not valid; log in again.")
    user = Accounts(db).by_id(token.user_id)
    if user is None:
        raise error(401, "session_invalid", "The account of this session no longer exists.")
    return user


def caller(request: Request) -> tuple[User, Token | None]:
    """Bearer token if one is sent, else the session cookie: for the read endpoints."""
    if request.headers.get("authorization"):
        token = bearer_token(request)
        user = Accounts(services(request).storage.db).by_id(token.user_id)
        if user is None:
            raise error(401, "token_invalid", "The account of this token no longer exists.")
        return user, token
    return session_user(request), None


async def _json_body(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise error(415, "unsupported_media_type", "Send a JSON body (Content-Type: application/json).")
    try:  # read under the cap as it arrives: a 200 MiB login was buffered whole before this check
        body = await read_body(request, SMALL_BODY)
    except BodyTooLargeError as exc:
        raise error(413, "body_too_large", "The JSON body is too large.") from exc
    try:
        data = loads_json(body or b"{}")
    except JsonError as exc:
        raise error(400, "invalid_json", f"The body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise error(400, "invalid_json", "The body must be a JSON object.")
    return data


# -- session and tokens -----------------------------------------------------------------------------


async def login(request: Request) -> Response:
    data = await _json_body(request)
    name, password = data.get("name"), data.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        raise error(400, "invalid_request", "Send {'name': ..., 'password': ...}.")
    svc = services(request)
    try:
        user = await password_login(svc, name, password, client_address(request))
    except LoginThrottledError as exc:
        raise ApiError(
            429,
            {
                "error": {
                    "code": "too_many_attempts",
                    "message": f"Too many failed logins; try again in {exc.retry_after} seconds.",
                }
            },
            {"Retry-After": str(exc.retry_after)},
        ) from None
    if user is None:
        raise error(401, "invalid_credentials", "Wrong user name or password.")
    _token, raw = Tokens(svc.storage.db).create(
        user.id, SESSION_PURPOSE, name="portal login", expires_in=timedelta(seconds=SESSION_SECONDS)
    )
    response = JSONResponse({"user": {"name": user.name, "staff": user.staff}})
    response.set_cookie(
        COOKIE,
        raw,
        max_age=SESSION_SECONDS,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    """Revoke the session's token, so a copy of the cookie stops working too; 204 either way."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        tokens = Tokens(services(request).storage.db)
        token = tokens.verify(cookie, SESSION_PURPOSE)
        if token is not None:
            tokens.revoke(token.id)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


def token_view(token: Token) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "scope": token.scope or None,
        "created": token.created,
        "expires": token.expires,
        "last_used": token.last_used,
    }


async def list_tokens(request: Request) -> Response:
    user = await run_in_threadpool(session_user, request)
    tokens = await run_in_threadpool(lambda: Tokens(services(request).storage.db).list(user.id, "ci"))
    return JSONResponse({"tokens": [token_view(t) for t in tokens]})


def create_ci_token(
    db: Any, user: User, name: str, app: str | None, expires_days: int | None
) -> tuple[Token, str]:
    """Shared by the endpoint and ``depot ci-token create``; raises ValueError on bad input."""
    from builder.portal.apk import PACKAGE_NAME

    if not TOKEN_NAME.match(name):
        raise ValueError("the token name may have at most 64 letters, digits, spaces and . @ : / -")
    if app is not None and not PACKAGE_NAME.match(app):
        raise ValueError(f"{app!r} is not an Android package name")
    if expires_days is not None and not 1 <= expires_days <= MAX_TOKEN_DAYS:
        raise ValueError(f"expiry must be between 1 and {MAX_TOKEN_DAYS} days")
    expires = timedelta(days=expires_days) if expires_days else None
    return Tokens(db).create(user.id, "ci", name=name, scope=app or "", expires_in=expires)


async def post_token(request: Request) -> Response:
    user = await run_in_threadpool(session_user, request)
    data = await _json_body(request)
    name, app, days = data.get("name", ""), data.get("app"), data.get("expires_days")
    if not isinstance(name, str) or (app is not None and not isinstance(app, str)):
        raise error(400, "invalid_request", "name and app must be strings.")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool)):
        raise error(400, "invalid_request", "expires_days must be a whole number.")
    try:
        token, raw = await run_in_threadpool(
            lambda: create_ci_token(services(request).storage.db, user, name, app, days)
        )
    except ValueError as exc:
        raise error(400, "invalid_request", str(exc)) from exc
    return JSONResponse({"token": token_view(token), "secret": raw}, status_code=201)


async def delete_token(request: Request) -> Response:
    user = await run_in_threadpool(session_user, request)
    try:
        token_id = int(request.path_params["token_id"])
    except ValueError:
        raise error(404, "token_not_found", "No such CI token.") from None

    def revoke() -> bool:
        tokens = Tokens(services(request).storage.db)
        token = tokens.get(token_id)
        return token is not None and token.purpose == "ci" and tokens.revoke(token_id, user_id=user.id)

    if not await run_in_threadpool(revoke):
        raise error(404, "token_not_found", "No such CI token.")
    return Response(status_code=204)


# -- uploads and versions ---------------------------------------------------------------------------


async def upload(request: Request) -> Response:
    token = await run_in_threadpool(bearer_token, request)
    svc = services(request)
    body, status, run_id = await portal_upload.handle_upload(request, svc, token)
    task = BackgroundTask(_validate, svc, run_id) if run_id else None
    return JSONResponse(body, status_code=status, background=task)


def _validate(svc: Any, run_id: str) -> None:
    """The background half of an upload: runs in a worker thread after the 201 went out."""
    run_validation(svc.storage.db, svc.config.repo, run_id)


def _readable_version(request: Request) -> dict[str, Any]:
    user, token = caller(request)
    db = services(request).storage.db
    row = version(db, request.path_params["version_id"])
    visible = row is not None and (row["owner_id"] == user.id or (token is None and user.staff))
    if row is not None and visible and token is not None and token.scope and token.scope != row["package"]:
        visible = False
    if row is None or not visible:
        raise error(404, "version_not_found", "No such version, or it belongs to another account.")
    finish_stale_runs(db, services(request).config.repo, row["id"])
    return version(db, row["id"]) or row


# The database work of these runs in a worker thread, never on the event loop; each thread
# uses its own connection (services(request).storage.db resolves in the thread that asks).


async def get_version(request: Request) -> Response:
    def read() -> dict[str, Any]:
        return version_summary(services(request).storage.db, _readable_version(request))

    return JSONResponse(await run_in_threadpool(read))


async def get_validation(request: Request) -> Response:
    def read() -> dict[str, Any]:
        row = _readable_version(request)
        return {"runs": runs_with_findings(services(request).storage.db, row["id"])}

    return JSONResponse(await run_in_threadpool(read))


async def get_release(request: Request) -> Response:
    return JSONResponse(release_view(await run_in_threadpool(_readable_version, request)))


async def not_found(request: Request) -> Response:
    raise error(404, "not_found", f"No portal endpoint {request.method} {request.url.path}.")


def routes() -> list[BaseRoute]:
    return [
        Route(f"{PREFIX}/login", login, methods=["POST"]),
        Route(f"{PREFIX}/logout", logout, methods=["POST"]),
        Route(f"{PREFIX}/ci-tokens", list_tokens, methods=["GET"]),
        Route(f"{PREFIX}/ci-tokens", post_token, methods=["POST"]),
        Route(f"{PREFIX}/ci-tokens/{{token_id}}", delete_token, methods=["DELETE"]),
        Route(f"{PREFIX}/uploads/ci", upload, methods=["POST"]),
        Route(f"{PREFIX}/versions/{{version_id}}", get_version, methods=["GET"]),
        Route(f"{PREFIX}/versions/{{version_id}}/validation", get_validation, methods=["GET"]),
        Route(f"{PREFIX}/versions/{{version_id}}/release", get_release, methods=["GET"]),
        Route(f"{PREFIX}/{{rest:path}}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]

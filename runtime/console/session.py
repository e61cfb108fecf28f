"""Console sign-in: a session cookie backed by a revocable token, and a CSRF token per session.

The cookie holds a random ``console_session`` token (runtime.tokens: stored only as its
SHA-256, sliding expiry), so signing out, "sign out everywhere", a password change or disabling
the account ends a copied cookie too. It is ``HttpOnly`` (script cannot read it),
``SameSite=Strict`` (another site's page cannot send it) and ``Secure`` when the console is
reached over HTTPS (directly or through a proxy that says so with ``X-Forwarded-Proto``).

Every form carries a CSRF token: an HMAC of the session token's hash under the store's secret,
so it needs no storage, is different for every session and is worthless without the cookie. A
POST without the right one is refused with 403 before anything is done; so is a POST whose
``Origin`` (or, without one, ``Sec-Fetch-Site``) says another site sent it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from runtime.accounts import Accounts, User, on_password_change
from runtime.services import services
from runtime.tokens import Tokens, token_hash

COOKIE = "depot_console"
PURPOSE = "console_session"
IDLE = timedelta(hours=12)  # a session not used for this long ends; each use moves it on


class ConsoleSession:
    """The signed-in user of one request, and the CSRF token its forms carry."""

    def __init__(self, user: User, raw: str, token_id: int, secret: str) -> None:
        self.user, self.raw, self.token_id = user, raw, token_id
        self.csrf = hmac.new(
            secret.encode(), b"console-csrf:" + token_hash(raw).encode(), hashlib.sha256
        ).hexdigest()

    def csrf_ok(self, sent: str | None) -> bool:
        return isinstance(sent, str) and hmac.compare_digest(sent, self.csrf)


def current(request: Request) -> ConsoleSession | None:
    """The session of the request's cookie, or None (no cookie, ended, expired, account gone).
    Database work: call it in the threadpool."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    svc = services(request)
    db = svc.storage.db
    token = Tokens(db).verify(raw, PURPOSE, renew=IDLE)
    if token is None:
        return None
    user = Accounts(db).by_id(token.user_id)
    if user is None:
        return None
    return ConsoleSession(user, raw, token.id, svc.config.secret_key)


def start(request: Request, user: User) -> str:
    """A new session for ``user``; the raw token for the cookie. Threadpool."""
    _token, raw = Tokens(services(request).storage.db).create(user.id, PURPOSE, "console", expires_in=IDLE)
    return raw


# Called at sign-out with (database, user id, the session's token id, or None for "every
# session"): pages that hand a session something that lives beside it (the OTA page's upload
# token) end it here, so signing out ends everything the session was given.
SIGN_OUT_HOOKS: list[Callable[[Any, int, int | None], None]] = []


def end(request: Request, session: ConsoleSession, everywhere: bool = False) -> None:
    """Sign out this session, or every console session of the account. Threadpool."""
    db = services(request).storage.db
    tokens = Tokens(db)
    if everywhere:
        tokens.revoke_all(session.user.id, PURPOSE)
    else:
        tokens.revoke(session.token_id, session.user.id)
    for hook in SIGN_OUT_HOOKS:
        hook(db, session.user.id, None if everywhere else session.token_id)


def secure(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(response: Response, request: Request, raw: str) -> None:
    response.set_cookie(
        COOKIE,
        raw,
        max_age=int(IDLE.total_seconds()),
        path="/console",
        httponly=True,
        secure=secure(request),
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, secure=secure(request), samesite="strict")


def same_site(request: Request) -> bool:
    """The POST comes from a console page of this origin, as far as the browser says."""
    origin = request.headers.get("origin")
    fetch_site = request.headers.get("sec-fetch-site")
    if origin == "null":  # what browsers send under the runtime's Referrer-Policy: no-referrer
        return fetch_site == "same-origin"
    if origin is not None:
        return origin == f"{request.url.scheme}://{request.url.netloc}" or (
            secure(request) and origin == f"https://{request.url.netloc}"
        )
    return fetch_site in (None, "same-origin", "none")


@on_password_change
def _end_console_sessions(db: object, user_id: int) -> None:
    """A new password ends every console session of the account (as it ends its other ones)."""
    Tokens(db).revoke_all(user_id, PURPOSE)  # type: ignore[arg-type]

"""The console's frame: sign-in and sign-out, the guard every page goes through, the home page
and the console's own static files. The pages of each role are in their own modules and use
:func:`guarded` the same way.

A page is a function ``(request, session) -> Response``; :func:`guarded` wraps it so that:
without a session a GET is sent to the sign-in page (and back afterwards) and a POST gets 403;
a user without the page's role gets 403; a POST must carry the session's CSRF token (form field
``csrf``) and come from this origin, else 403 and nothing is done. Form bodies are read under a
cap before they are parsed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from importlib import resources
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from runtime.console import session as sessions
from runtime.console.render import has_role, page
from runtime.console.session import ConsoleSession
from runtime.logins import password_login
from runtime.ratelimit import LoginThrottledError
from runtime.services import client_address, services

Page = Callable[[Request, ConsoleSession], Awaitable[Response]]
# A number from a client (a path id, a query value, a form field, a header): ASCII digits only
# (str.isdigit also takes "²" and other digits int() refuses) and below 2**63, SQLite's limit.
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")
MAX_FORM = 64 * 1024  # a console form names things and carries a reason: a few kilobytes
STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "upload.js": "text/javascript; charset=utf-8",
}


class FormTooLargeError(Exception):
    pass


def whole_number(value: object) -> int | None:
    """``value`` as a non-negative integer, or None when it is anything else."""
    return int(value) if isinstance(value, str) and WHOLE_NUMBER.fullmatch(value) else None


async def form(request: Request, limit: int = MAX_FORM) -> FormData:
    """The URL-encoded form of a POST, read under ``limit`` bytes (multipart has its own page)."""
    size = whole_number(request.headers.get("content-length") or "0")
    if size is None or size > limit:
        raise FormTooLargeError
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise FormTooLargeError
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=200)
    except ValueError as exc:  # more fields than any console form has
        raise FormTooLargeError from exc
    return FormData(list(pairs))


def forbidden(request: Request, session: ConsoleSession | None, why: str) -> Response:
    return page(request, "error.html", session, status=403, title="Not allowed", message=why)


def guarded(role: str | None = None) -> Callable[[Page], Callable[[Request], Awaitable[Response]]]:
    def wrap(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = await run_in_threadpool(sessions.current, request)
            if session is None:
                if request.method == "GET":
                    target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                    return RedirectResponse(f"/console/login?next={target}", status_code=303)
                return forbidden(request, None, "Sign in first.")
            if not has_role(session, role):
                return forbidden(request, session, "This page is not for your account.")
            if request.method == "POST":
                if not sessions.same_site(request):
                    return forbidden(request, session, "This form was sent from another site.")
                try:
                    data = await form(request)
                except FormTooLargeError:
                    return forbidden(request, session, "The form is too large.")
                if not session.csrf_ok(data.get("csrf")):  # type: ignore[arg-type]
                    return forbidden(
                        request, session, "The form is out of date: reload the page and try again."
                    )
                request.state.form = data
            return await handler(request, session)

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return wrap


def posted(request: Request) -> FormData:
    """The form :func:`guarded` read and checked for this POST."""
    return request.state.form


def safe_next(value: str | None) -> str:
    """Only a console path: a sign-in link cannot send anyone to another site."""
    if not value:
        return "/console/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/") or "\\" in value:
        return "/console/"
    return value


async def login_page(request: Request) -> Response:
    existing = await run_in_threadpool(sessions.current, request)
    if existing is not None and request.method == "GET":
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    if request.method == "GET":
        return page(request, "login.html", None, next=safe_next(request.query_params.get("next")), error="")
    if not sessions.same_site(request):
        return forbidden(request, None, "This form was sent from another site.")
    try:
        data = await form(request)
    except FormTooLargeError:
        return forbidden(request, None, "The form is too large.")
    name, password = str(data.get("name") or ""), str(data.get("password") or "")
    target = safe_next(str(data.get("next") or ""))
    svc = services(request)
    try:
        user = await password_login(svc, name, password, client_address(request))
    except LoginThrottledError as exc:
        return page(request, "login.html", None, status=429, next=target, error=str(exc))
    if user is None:
        return page(request, "login.html", None, status=401, next=target, error="Wrong name or password.")
    raw = await run_in_threadpool(sessions.start, request, user)
    response = RedirectResponse(target, status_code=303)
    sessions.set_cookie(response, request, raw)
    return response


@guarded()
async def logout(request: Request, session: ConsoleSession) -> Response:
    everywhere = posted(request).get("everywhere") == "1"
    await run_in_threadpool(sessions.end, request, session, everywhere)
    response = RedirectResponse("/console/login", status_code=303)
    sessions.clear_cookie(response, request)
    return response


@guarded()
async def home(request: Request, session: ConsoleSession) -> Response:
    return page(request, "home.html", session, title="Home")


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        return Response("Not found", status_code=404, media_type="text/plain")
    body = resources.files("runtime.console").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def routes(extra: list[BaseRoute] | None = None) -> list[BaseRoute]:
    return [
        Route("/console/login", login_page, methods=["GET", "POST"]),
        Route("/console/logout", logout, methods=["POST"]),
        Route("/console/", home, methods=["GET"]),
        Route("/console", lambda request: RedirectResponse("/console/", status_code=308), methods=["GET"]),
        Route("/console/static/{name}", static_file, methods=["GET", "HEAD"]),
        *(extra or []),
    ]

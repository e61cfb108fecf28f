"""The Qt deployment server dialect's dynamic endpoints (Neptune 3 UI, Qt Application Manager).

Everything a list shows was pre-rendered by the builder (``builder.qt.render``); these
endpoints only pick the right pre-rendered file for the session and filter it. Logical errors are
HTTP 200 with a ``status`` string, as the reference server answers; where the reference has a
bug the documented behaviour is served instead (docs/qt.md lists each difference).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from builder.qt.arch import normalize_client_arch
from builder.qt.tags import TagError, TagList
from runtime.accounts import Accounts
from runtime.bodies import SMALL_BODY, BodyTooLargeError, read_body
from runtime.downloads import counter_for, counts_as_download
from runtime.errors import ApiError
from runtime.files import file_response
from runtime.logins import password_login
from runtime.qt.services import QtServices, qt
from runtime.qt.session import QtSession
from runtime.qt.signing import CACHE_FOLDER, signed_package
from runtime.ratelimit import LoginThrottledError
from runtime.security import is_cross_site
from runtime.services import client_address
from runtime.signing import LinkError

PNG = "image/png"
HTML = "text/html; charset=utf-8"
PACKAGE_TYPE = "application/octet-stream"
DOWNLOAD_SUFFIX = ".appkg"
MAX_HELLO_VERSION = 256
log = logging.getLogger("runtime.qt.endpoints")


def cross_site_refused() -> Response:
    """/login, /logout and /upload change who is logged in or what the store holds, and Neptune
    sends the first two as GET: a browser made to send one by another site is refused (it says
    so with Origin or Sec-Fetch-Site; Qt clients send neither)."""
    return JSONResponse({"status": "failed", "error": "cross-site request refused"}, status_code=403)


def reply(q: QtServices, session: QtSession, body: Any, status: int = 200) -> Response:
    return q.sessions.save(session, JSONResponse(body, status_code=status))


def params(request: Request) -> dict[str, str]:
    return dict(request.query_params)


def absolute(request: Request, path: str) -> str:
    return str(request.base_url).rstrip("/") + path


def not_found() -> Response:
    return Response("Not Found", status_code=404, media_type="text/plain")


# -- endpoints ------------------------------------------------------------------------------------


async def hello(request: Request) -> Response:
    q = qt(request)
    settings = q.settings()
    p = await _get_or_form(request)
    session = q.sessions.load(request)
    status = "ok"
    if settings.maintenance:
        status = "maintenance"
    elif p.get("platform") != settings.qt_platform:
        status = "incompatible-platform"
    elif not 0 < _int_or(p.get("version"), -1) <= settings.qt_api_version:
        status = "incompatible-version"
    tag_texts = [p[k] for k in ("require_tag", "tag") if p.get(k)]
    try:
        tags = TagList.parse(",".join(tag_texts)) if tag_texts else TagList()
        session.tag = str(tags)
    except TagError:
        session.tag = ""
        status = "malformed-tag"
    session.arch = ""
    if "architecture" in p:
        session.arch = normalize_client_arch(p["architecture"])
        if not session.arch:
            status = "incompatible-architecture"
    return reply(q, session, {"status": status})


def _int_or(value: str | None, default: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return number if number <= MAX_HELLO_VERSION else default


async def login(request: Request) -> Response:
    if is_cross_site(request):
        return cross_site_refused()
    q = qt(request)
    p = await _get_or_form(request)
    session = q.sessions.load(request)
    if "username" not in p or "password" not in p:
        return reply(q, session, {"status": "missing-credentials"})
    try:
        user = await password_login(q.svc, p["username"], p["password"], client_address(request))
    except LoginThrottledError as exc:
        # Neptune only checks for "ok"; the header and error tell a person how long to wait.
        body = {"status": "authentication-failed", "error": str(exc)}
        response = reply(q, session, body)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        return reply(q, session, {"status": "authentication-failed"})
    await run_in_threadpool(q.sessions.login, session, user)  # database work off the event loop
    return reply(q, session, {"status": "ok"})


async def logout(request: Request) -> Response:
    if is_cross_site(request):
        return cross_site_refused()
    q = qt(request)
    session = q.sessions.load(request)
    ended = await run_in_threadpool(q.sessions.logout, session)
    return reply(q, session, {"status": "ok" if ended else "failed"})


async def app_list(request: Request) -> Response:
    q = qt(request)
    p = await _get_or_form(request)
    session = q.sessions.load(request)
    category = p.get("category_id", "").strip()
    if category in ("", "-1"):
        category = "all"
    elif not re.fullmatch(r"[0-9]+", category) or len(category.lstrip("0")) > 18:
        return reply(q, session, [])  # no category has a longer id (int() refuses 4300+ digits)
    else:
        category = str(int(category.lstrip("0") or "0"))
    entries = q.catalog.visible(session.tag, session.arch, category, p.get("filter", ""))
    body = [{**e, "iconUrl": absolute(request, e["iconUrl"])} for e in entries]
    return reply(q, session, body)


def _pick(q: QtServices, session: QtSession, app_id: str, arch: str | None) -> dict[str, Any] | None:
    return q.catalog.pick(q.catalog.visible(session.tag, arch), app_id)


async def app_icon(request: Request) -> Response:
    q = qt(request)
    p = await _get_or_form(request)
    session = q.sessions.load(request)
    app_id = p.get("id")
    if not app_id:
        return not_found()
    arch = normalize_client_arch(p["architecture"]) if "architecture" in p else session.arch
    entry = _pick(q, session, app_id, arch)
    if entry is None:
        return not_found()
    return _file(q.catalog.icon_file(entry), PNG)


async def app_description(request: Request) -> Response:
    q = qt(request)
    p = await _get_or_form(request)
    session = q.sessions.load(request)
    app_id = p.get("id")
    entry = _pick(q, session, app_id, session.arch) if app_id else None
    if entry is None:
        return not_found()
    return _file(q.catalog.description_file(entry), HTML)


def _file(path: Path, media_type: str) -> Response:
    try:
        return file_response(path, media_type, cache_control="no-cache")
    except FileNotFoundError:
        return not_found()


async def category_list(request: Request) -> Response:
    """POST /category/list: the pre-rendered list a GET gets from the static site (the reference
    answers both methods, and Qt AM clients may POST)."""
    return _file(qt(request).config.site / "qt" / "category-list.json", "application/json")


async def category_icon(request: Request) -> Response:
    q = qt(request)
    icons = q.config.site / "qt" / "category-icons"
    value = (await _get_or_form(request)).get("id", "")
    name = "all" if value == "-1" else value if re.fullmatch(r"[0-9]+", value) else "error"
    path = icons / f"{name}.png"
    if not path.is_file():
        path = icons / "error.png"
    return _file(path, PNG)


async def purchase(request: Request) -> Response:
    q = qt(request)
    settings = q.settings()
    p = await _get_or_form(request)
    session = q.sessions.load(request)
    # Two reads by key on this thread's connection: in WAL mode a reader never waits for a
    # writer, and the hop to a worker thread cost more than the reads (half of the answer's
    # time under load, docs/benchmarks.md "depot serve beside nginx").
    user = q.sessions.user(session)
    if user is None:
        return q.sessions.save(session, Response("no login", status_code=403, media_type="text/html"))
    device_id = p.get("device_id", "")
    if settings.purchase_requires_device_id:
        if not device_id:
            return reply(q, session, {"status": "failed", "error": "device_id required"})
    else:
        device_id = ""
    visible = q.catalog.visible(session.tag, session.arch)
    if p.get("id"):
        entry = q.catalog.pick(visible, p["id"])
    elif p.get("purchaseId"):
        entry = next((e for e in visible if e["purchaseId"] == p["purchaseId"]), None)
    else:
        return reply(q, session, {"status": "failed", "error": "id or purchaseId parameter required"})
    if entry is None:
        return reply(q, session, {"status": "failed", "error": "no such app"})
    expires_in = settings.download_expiry
    token = q.links.make({"v": entry["purchaseId"], "u": user.id, "d": device_id}, expires_in)
    url = absolute(request, "/app/download/" + token + DOWNLOAD_SUFFIX)
    return reply(q, session, {"status": "ok", "url": url, "expiresIn": expires_in})


async def download(request: Request) -> Response:
    q = qt(request)
    name = request.path_params["name"]
    if not name.endswith(DOWNLOAD_SUFFIX) or "/" in name or "\\" in name:
        return _refuse(404, "no such download")
    try:
        grant = q.links.open(name[: -len(DOWNLOAD_SUFFIX)])
    except LinkError as exc:
        if exc.reason == "expired":
            return _refuse(410, "download link expired")
        return _refuse(403, "invalid download link")
    variant = q.catalog.variant(str(grant.get("v", "")))
    if variant is None:
        return _refuse(404, "the app is no longer in the store")
    user_id = int(grant.get("u", 0))
    if await run_in_threadpool(lambda: Accounts(q.svc.storage.db).by_id(user_id)) is None:
        return _refuse(403, "invalid download link")
    apps = (q.config.repo / "apps").resolve()
    package = (q.config.repo / variant["file"]).resolve()
    if not package.is_relative_to(apps) or not package.is_file():
        return _refuse(404, "the app is no longer in the store")
    try:
        signer = q.store_signer()
        signed = None
        if signer is not None:
            folder = q.config.data / CACHE_FOLDER
            device = str(grant.get("d", ""))
            signed = await run_in_threadpool(signed_package, signer, folder, package, variant, device)
    except Exception:  # a broken store key must not look like the client's fault
        log.exception("store signing failed for %s", variant["file"])
        return _refuse(503, "store signing is not available")
    filename = variant["id"] + DOWNLOAD_SUFFIX
    if signed is not None:
        response = file_response(signed, PACKAGE_TYPE, filename=filename)
    else:
        response = file_response(package, PACKAGE_TYPE, sha256=variant["sha256"], filename=filename)
    # the store-wide download statistics (runtime.downloads): a fresh GET that got the bytes
    fresh = counts_as_download(request.method, request.headers.get("range"))
    if response.status_code in (200, 206) and fresh:
        counter_for(q.svc.storage.url).record("qt", variant["id"])
    return response


def _refuse(status: int, message: str) -> Response:
    return JSONResponse({"status": "failed", "error": message}, status_code=status)


async def _get_or_form(request: Request) -> dict[str, str]:
    """The reference reads POST parameters for POST and the query string otherwise. A POST body
    is a few fields: it is read under a cap before it is parsed (an anonymous /hello could make
    the server spool a 200 MiB multipart part), with no file parts and at most 50 fields."""
    if request.method == "POST":
        try:
            await read_body(request, SMALL_BODY)
            form = await request.form(max_files=0, max_fields=50, max_part_size=SMALL_BODY)
        except BodyTooLargeError as exc:
            raise ApiError(
                413, {"status": "failed", "error": f"the request body is larger than {exc.limit} bytes"}
            ) from exc
        except Exception as exc:  # python-multipart's and Starlette's parse errors: the client's
            raise ApiError(400, {"status": "failed", "error": "malformed form data"}) from exc
        return {k: v for k, v in form.items() if isinstance(v, str)}
    return params(request)


async def upload(request: Request) -> Response:
    from runtime.qt.upload import handle_upload

    if is_cross_site(request):  # a browser's cached Basic credentials must not upload for a page
        return cross_site_refused()
    return await handle_upload(request, qt(request))


def routes() -> list[BaseRoute]:
    any_method = ["GET", "POST", "HEAD"]
    return [
        Route("/hello", hello, methods=any_method),
        Route("/login", login, methods=any_method),
        Route("/logout", logout, methods=any_method),
        Route("/app/list", app_list, methods=any_method),
        Route("/app/icon", app_icon, methods=any_method),
        Route("/app/description", app_description, methods=any_method),
        Route("/app/purchase", purchase, methods=any_method),
        Route("/app/download/{name}", download, methods=["GET", "HEAD"]),
        Route("/category/icon", category_icon, methods=any_method),
        Route("/category/list", category_list, methods=["POST"]),  # GET and HEAD: the static site
        Route("/upload", upload, methods=any_method),
    ]

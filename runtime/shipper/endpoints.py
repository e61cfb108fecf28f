"""The shipper dialect's dynamic endpoints (Android OTA builds), as shipper 2.43.0 answers them.

Public: the error answers of the updater feeds that the static table cannot know (unknown
device or variant), download counters and rolling counts, counted downloads with HTTP Range,
maintainer lists. Maintainers (``Authorization: Token <key>``): login, token check, the file-name
pattern, duplicate check, enable/disable; the chunked upload lives in ``shipper_upload``.
Every route ends in ``/``; the slash-less GETs shippy sends get a 301 to the slashed URL.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from builder.errors import FormatError
from builder.shipper import render as feeds
from builder.shipper.ota import (
    CHECKSUM_SUFFIX,
    parse_build_name,
    pattern_of,
    read_checksum_file,
)
from runtime.accounts import Accounts
from runtime.database import Database
from runtime.downloads import counter_for
from runtime.errors import ApiError
from runtime.files import file_response
from runtime.logins import password_login
from runtime.ratelimit import LoginThrottledError
from runtime.services import client_address, services
from runtime.shipper import upload as shipper_upload
from runtime.shipper.builds import (
    build_id_for,
    find_by_id,
    find_by_stem,
    is_enabled,
)
from runtime.shipper.common import (
    NO_STORE,
    NO_SUCH_BUILD,
    NOT_YOUR_DEVICE,
    TOKEN_PURPOSE,
    authenticate,
    body_fields,
    rebuild,
    set_build_enabled,
    throttle,
    throttle_error,
)
from runtime.signing import ExpiringLinks, LinkError
from runtime.tokens import Tokens

DOWNLOAD_TYPES = ("download", "update")
WINDOWS = {"day": 1, "week": 7, "month": 31}
COUNTED_PARAM = "counted"  # marks a redirect from magic_download, which already counted


def _message(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def _error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, {"error": code, "message": message})


# -- public feeds: what the static table cannot know -------------------------------------------


def _static(request: Request) -> Response | None:
    return services(request).static.response(request)


async def feed(request: Request) -> Response:
    static = _static(request)
    if static is not None:
        return static
    settings = services(request).settings()
    codename, variant = request.path_params["codename"], request.path_params["variant"]
    if codename in feeds.X86_CODENAMES:
        return _message(400, feeds.MSG_ARM_ONLY)
    if codename not in {d.codename for d in settings.ota_devices}:
        return _message(404, feeds.MSG_NO_DEVICE)
    if variant not in {v.codename for v in settings.ota_variants}:
        return _message(400, feeds.MSG_BAD_PARAMETER)
    return _message(404, feeds.MSG_NO_BUILDS)


async def x86_feed(request: Request) -> Response:
    static = _static(request)
    if static is not None:
        return static
    settings = services(request).settings()
    params = request.path_params
    if params["codename"] not in feeds.X86_CODENAMES:
        return _message(400, feeds.MSG_X86_ONLY)
    if params["codename"] not in {d.codename for d in settings.ota_devices}:
        return _message(404, feeds.MSG_NO_DEVICE)
    if params["x86_type"] not in {t.codename for t in settings.ota_x86_types} or params["variant"] not in {
        v.codename for v in settings.ota_variants
    }:
        return _message(400, feeds.MSG_BAD_PARAMETER)
    return _message(404, feeds.MSG_NO_BUILDS)


async def latest(request: Request) -> Response:
    static = _static(request)
    if static is not None:
        return static
    settings = services(request).settings()
    codename, variant = request.path_params["codename"], request.path_params["variant"]
    if codename not in {d.codename for d in settings.ota_devices}:
        return _message(404, feeds.MSG_NO_DEVICE)
    if variant not in {v.codename for v in settings.ota_variants}:
        return _message(400, feeds.MSG_BAD_PARAMETER)
    return _message(404, feeds.MSG_NO_BUILDS)


# -- statistics ----------------------------------------------------------------------------------


def record_download(request: Request, codename: str, path: Path, download_type: str) -> None:
    services(request).storage.db.table("shipper_downloads").insert(
        {
            "time": time.time(),
            "codename": codename,
            "file_name": path.name.removesuffix(".zip"),
            "build_id": build_id_for(codename, path),
            "ip": client_address(request) or "",
            "download_type": download_type,
        }
    )


def count_served(request: Request, codename: str, path: Path) -> None:
    """The store-wide download statistics (runtime.downloads, batched in memory): a download
    this runtime served or redirected to, not a count an updater reported."""
    counter_for(services(request).storage.url).record("ota", f"{codename}/{path.name.removesuffix('.zip')}")


def _find_build(request: Request, fields: dict, v2: bool) -> tuple[str, Path]:
    repo = services(request).config.repo
    file_name = fields.get("file_name")
    if file_name not in (None, ""):
        found = find_by_stem(repo, str(file_name))  # shipper's file_name has no .zip: "x.zip" is no build
        if found is None:
            raise _error(404, "invalid_build_name", "A build with that file name does not exist!")
        return found
    build_id = fields.get("build_id")
    if build_id not in (None, ""):
        try:
            found = find_by_id(repo, int(build_id))
        except (TypeError, ValueError, OverflowError):  # OverflowError: JSON 1e999 is infinity
            found = None
        if found is None:
            raise _error(404, "invalid_build_id", "A build with that ID does not exist!")
        return found
    if v2:
        raise _error(
            400,
            "missing_build_information",
            "No build information specified. Specify a file_name parameter or a build_id parameter.",
        )
    raise _error(
        400,
        "missing_parameters",
        "No parameters specified. Specify a file_name parameter or a build_id parameter.",
    )


async def counter_v2(request: Request) -> Response:
    await throttle(request)
    fields = await body_fields(request)
    if client_address(request) is None:
        raise _error(400, "invalid_ip", "Your IP address is invalid!")
    download_type = fields.get("download_type")
    if download_type not in DOWNLOAD_TYPES:
        raise _error(
            400,
            "invalid_download_type",
            "The supplied download type does not exist! Valid values are download, update",
        )
    codename, path = await run_in_threadpool(_find_build, request, fields, True)
    record_download(request, codename, path, str(download_type))
    return JSONResponse({"message": "The request was successful!"})


async def counter_v1(request: Request) -> Response:
    """Removed upstream in shipper 2.24.0; kept for old clients (no download_type)."""
    await throttle(request)
    fields = await body_fields(request)
    if client_address(request) is None:
        raise _error(400, "invalid_ip", "Your IP address is invalid!")
    codename, path = await run_in_threadpool(_find_build, request, fields, False)
    record_download(request, codename, path, "download")
    return JSONResponse({"message": "The request was successful!"})


def download_count(db: Database, period: str, codenames: Sequence[str] | None = None) -> int:
    """shipper's rolling count: rows of the last 1, 7 or 31 days (``day``, ``week``, ``month``)
    or every row (``all``); only those devices' with ``codenames``. KeyError: another period."""
    where: list[str] = []
    args: list[object] = []
    if period != "all":
        where.append("time >= ?")
        args.append(time.time() - WINDOWS[period] * 86400)
    if codenames is not None:
        where.append(f"codename IN ({', '.join('?' for _ in codenames)})" if codenames else "1 = 0")
        args.extend(codenames)
    sql = "SELECT count(*) FROM shipper_downloads" + (" WHERE " + " AND ".join(where) if where else "")
    (n,) = db.execute(sql, args).fetchone()
    return int(n)


async def count(request: Request) -> Response:
    await throttle(request)
    period = request.path_params["period"]
    if period != "all" and period not in WINDOWS:
        return JSONResponse({"detail": "Not found."}, status_code=404)
    storage = services(request).storage
    n = await run_in_threadpool(lambda: download_count(storage.db, period))
    return JSONResponse({"count": n}, headers=NO_STORE)


# -- counted downloads ---------------------------------------------------------------------------


def _published_build(request: Request) -> tuple[str, Path]:
    """The enabled build a download URL names, or 404."""
    codename, stem = request.path_params["codename"], request.path_params["file_name"]
    repo = services(request).config.repo
    found = find_by_stem(repo, stem, codename)
    if found is not None:
        try:
            parse_build_name(found[1].name, services(request).settings())
        except FormatError:
            found = None
    if found is None or not is_enabled(found[1]):
        raise ApiError(404, {"detail": "Not found."})
    return found


def _links(request: Request) -> ExpiringLinks:
    return ExpiringLinks(services(request).config.secret_key, "shipper-counted")


def _counts_as_download(request: Request, stem: str) -> bool:
    """A fresh GET counts; a resumed one (Range not from byte 0), a HEAD, or the redirect from
    magic_download (already counted) does not, so one download is one row."""
    if request.method != "GET":
        return False
    marker = request.query_params.get(COUNTED_PARAM)
    if marker:
        try:
            if _links(request).open(marker).get("f") == stem:
                return False
        except LinkError:
            pass
    http_range = request.headers.get("range", "").replace(" ", "")
    return not (http_range.startswith("bytes=") and not http_range.startswith("bytes=0-"))


async def download_check(request: Request) -> Response:
    codename, path = await run_in_threadpool(_published_build, request)
    if _counts_as_download(request, request.path_params["file_name"]):
        record_download(request, codename, path, "update")
        count_served(request, codename, path)
    try:
        sha256 = read_checksum_file(path.with_name(path.name + CHECKSUM_SUFFIX))
    except FormatError:
        sha256 = None
    accel = services(request).config.accel_redirect_builds  # an internal nginx alias of repo/builds/
    try:
        return file_response(
            path,
            "application/zip",
            sha256=sha256,
            filename=path.name,
            cache_control="no-cache",
            accel_redirect=f"{accel}{codename}/{path.name}" if accel else None,
        )
    except FileNotFoundError as exc:
        raise ApiError(404, {"detail": "Not found."}) from exc


async def magic_download(request: Request) -> Response:
    codename, path = await run_in_threadpool(_published_build, request)
    stem = request.path_params["file_name"]
    record_download(request, codename, path, "download")
    count_served(request, codename, path)
    base = services(request).settings().ota_feed_base_url
    marker = _links(request).make({"f": stem}, expires_in=3600)
    target = feeds.download_url(base, codename, stem) + f"?{COUNTED_PARAM}={quote(marker)}"
    return RedirectResponse(target, status_code=302)


# -- maintainers ---------------------------------------------------------------------------------


def _maintainers(request: Request, with_active: bool) -> dict:
    out = {}
    for user in Accounts(services(request).storage.db).all():
        if not user.devices:
            continue  # accounts that maintain no device (store team, CI) stay private
        entry = {
            "name": user.full_name,  # shipper's get_full_name(): "" when unset, not the username
            "bio": "",
            "profile_picture": "",
            "contact_url": "",
            "devices": list(user.devices),
        }
        out[user.name] = {"active": True, **entry} if with_active else entry
    return out


async def maintainers_all(request: Request) -> Response:
    await throttle(request)
    return JSONResponse(_maintainers(request, True))


async def maintainers_active(request: Request) -> Response:
    await throttle(request)
    return JSONResponse(_maintainers(request, False))


async def login(request: Request) -> Response:
    await throttle(request)
    fields = await body_fields(request)
    username, password = fields.get("username"), fields.get("password")
    if username is None or password is None:
        raise _error(400, "blank_username_or_password", "Username or password cannot be blank!")
    username, password = str(username), str(password)
    try:
        user = await password_login(services(request), username, password, client_address(request))
    except LoginThrottledError as exc:
        raise throttle_error(exc.retry_after) from None
    if user is None:
        raise _error(404, "invalid_credential", "Invalid credentials. Please try again.")
    svc = services(request)
    lifetime = timedelta(days=svc.config.ota_token_days)  # renewed by every use
    tokens = Tokens(svc.storage.db)
    _token, raw = tokens.create(user.id, TOKEN_PURPOSE, name="shippy login", expires_in=lifetime)
    return JSONResponse({"token": raw, "message": "Successfully logged in!"}, headers=NO_STORE)


async def token_check(request: Request) -> Response:
    user = await authenticate(request)
    return JSONResponse({"username": html.escape(user.name)}, headers=NO_STORE)


async def regex_pattern(request: Request) -> Response:
    await authenticate(request)
    return JSONResponse({"pattern": pattern_of(services(request).settings())})


async def duplicate_check(request: Request) -> Response:
    await authenticate(request)
    fields = await body_fields(request)
    file_name = fields.get("file_name")
    if file_name is None:
        raise _error(400, "missing_parameters", "The required parameter `file_name` was not provided.")
    # shippy sends the name with ".zip" (shipper then always answers false); accept both forms.
    stem = str(file_name).removesuffix(".zip")
    found = find_by_stem(services(request).config.repo, stem)
    return JSONResponse({"exists": found is not None})


async def enabled_status_modify(request: Request) -> Response:
    user = await authenticate(request)
    fields = await body_fields(request)
    build_id, enable = fields.get("build_id"), fields.get("enable")
    if build_id in (None, "") or enable in (None, ""):
        raise _error(
            400,
            "missing_parameters",
            "One or more of the required parameters is blank! Required parameters: build ID, enabled flag",
        )
    try:
        wanted = int(build_id)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: JSON 1e999 is infinity
        raise _error(400, "invalid_parameters", "The specified build ID is invalid.") from exc
    flag = enable if isinstance(enable, bool) else str(enable).lower() == "true"
    outcome = await run_in_threadpool(set_build_enabled, services(request).config.repo, user, wanted, flag)
    if outcome == NO_SUCH_BUILD:
        raise ApiError(404, {"detail": "No Build matches the given query."})
    if outcome == NOT_YOUR_DEVICE:
        raise _error(
            401,
            "insufficient_permissions",
            "You are not authorized to modify builds associated with this device!",
        )
    await rebuild(request)
    word = "enabled" if flag else "disabled"
    return JSONResponse({"message": f"Successfully {word} the build!"})


# -- routing -------------------------------------------------------------------------------------


async def add_slash(request: Request) -> Response:
    url = request.url.path + "/" + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(url, status_code=301)


GET = ["GET", "HEAD"]
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def method_not_allowed(allowed: list[str]) -> Callable[[Request], Awaitable[Response]]:
    """DRF's answer to a method a view does not take: 405 with its detail text and Allow."""

    async def endpoint(request: Request) -> Response:
        return JSONResponse(
            {"detail": f'Method "{request.method}" not allowed.'},
            status_code=405,
            headers={"Allow": ", ".join([*allowed, "OPTIONS"])},
        )

    return endpoint


def routes() -> list[BaseRoute]:
    table: list[tuple[str, object, list[str]]] = [
        ("/api/v1/updater/los/{codename}/{variant}/", feed, GET),
        ("/api/v1/updater/los/{codename}/{x86_type}/{variant}/", x86_feed, GET),
        ("/api/v1/general/build/latest/{codename}/{variant}/", latest, GET),
        ("/api/v2/download/build/counter/", counter_v2, ["POST"]),
        ("/api/v1/download/build/counter/", counter_v1, ["POST"]),
        ("/api/v1/download/count/{period}/", count, GET),
        ("/download_check/{codename}/{file_name}/", download_check, GET),
        ("/api/v1/general/build/magic_download/{codename}/{file_name}/", magic_download, GET),
        ("/api/v1/general/maintainer/all/", maintainers_all, GET),
        ("/api/v1/general/maintainer/active/", maintainers_active, GET),
        ("/api/v1/maintainers/login/", login, ["POST"]),
        ("/api/v1/maintainers/token_check/", token_check, GET),
        ("/api/v1/maintainers/upload_filename_regex_pattern/", regex_pattern, GET),
        ("/api/v1/maintainers/build/duplicate_check/", duplicate_check, ["POST"]),
        ("/api/v1/maintainers/build/enabled_status_modify/", enabled_status_modify, ["POST"]),
    ]
    out: list[BaseRoute] = [Route(path, endpoint, methods=methods) for path, endpoint, methods in table]  # type: ignore[arg-type]
    out += [
        Route(path, method_not_allowed(methods), methods=[m for m in METHODS if m not in methods])
        for path, _endpoint, methods in table
    ]
    out += shipper_upload.routes()
    # The static GET URLs and every GET above, without their slash: 301 to the slashed URL.
    slashless = {feeds.SYSTEM_INFO_URL, feeds.DEVICES_URL} | {p for p, _e, m in table if m == GET}
    out += [Route(p.rstrip("/"), add_slash, methods=GET) for p in sorted(slashless)]
    return out

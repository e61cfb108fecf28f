"""The store side of fleet rollouts under ``/device/api/v1``: device reports and rollout counts.

- ``POST /device/api/v1/reports`` takes ``Authorization: Bearer <device token>`` (from
  ``depot device add``) and a report of at most 256 KiB (runtime.device.reports); after a new
  report that brought an install outcome, the versions it names are checked against their
  ``max_failure_rate`` and paused automatically (runtime.device.rollouts), then the catalog is
  rebuilt before the answer, so the device's next index fetch shows the pause.
- ``GET /device/api/v1/rollouts/{modules|firmware}/{name}/{version}`` answers a version's rule
  and counts to a **staff account** (HTTP Basic, under the runtime's failed-login limits, as Qt's
  upload takes it). A device token is not enough: the counts describe the whole fleet and name
  which versions fail where, which no single device needs to know, and a token copied off one
  robot must not reveal the rest.

Every error is ``{"error": "<message>"}`` with its status; no database work runs on the event loop.
"""

from __future__ import annotations

import base64
import logging
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from builder.errors import DepotError, FormatError
from builder.jsonsafe import JsonError, loads_json
from runtime.accounts import User
from runtime.bodies import BodyTooLargeError, read_body
from runtime.device import store
from runtime.device.reports import MAX_BODY, ReportError, parse_report
from runtime.device.rollouts import NoSuchVersionError, auto_pause, existing_versions, read_rule
from runtime.errors import ApiError
from runtime.logins import password_login
from runtime.ratelimit import LoginThrottledError, RateLimiter
from runtime.services import Services, client_address, services

PREFIX = "/device/api/v1"
log = logging.getLogger("runtime.device")
BEARER = {"WWW-Authenticate": 'Bearer realm="depot-device"'}
BASIC = {"WWW-Authenticate": 'Basic realm="depot-device"'}
FOLDERS = {"modules": "module", "firmware": "firmware"}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(status, {"error": message}, headers)


# -- reports ---------------------------------------------------------------------------------------


def _device(svc: Services, header: str) -> store.Device:
    """The enrolled device of the request's token, counted against its report rate."""
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise error(401, "Send the device token as 'Authorization: Bearer <token>'.", BEARER)
    db = svc.storage.db
    device = store.by_token(db, raw.strip())
    if device is None:
        raise error(401, "Unknown or revoked device token.", BEARER)
    wait = RateLimiter(db).hit(f"device:report:{device.id}", svc.config.limits.device_report)
    if wait is not None:
        raise error(429, f"Too many reports; try again in {wait} seconds.", {"Retry-After": str(wait)})
    return device


async def post_report(request: Request) -> Response:
    svc = services(request)
    device = await run_in_threadpool(_device, svc, request.headers.get("authorization", ""))
    try:
        body = await read_body(request, MAX_BODY)
    except BodyTooLargeError as exc:
        raise error(413, f"The report is larger than {exc.limit} bytes.") from exc
    try:
        data = loads_json(body)
    except JsonError as exc:
        raise error(400, f"The body is not valid JSON: {exc}") from exc
    try:
        report = parse_report(data)
    except ReportError as exc:
        raise error(422, str(exc)) from exc

    def record() -> tuple[bool, list[str]]:
        db = svc.storage.db
        known = existing_versions(svc.config.repo, store.report_keys(report))  # before the write lock
        duplicate, outcomes = store.record_report(db, device, report, known)
        paused: list[str] = []
        for key in sorted(outcomes):
            try:
                reason = auto_pause(db, svc.config.repo, key)
            except DepotError as exc:  # a sidecar that cannot be read or written: the report is stored
                log.error("rollout of %s %s %s not checked: %s", *key, exc)
                continue
            if reason is not None:
                log.warning("%s %s %s: %s (after a report of device %s)", *key, reason, device.name)
                paused.append(" ".join(key))
        return duplicate, paused

    duplicate, paused = await run_in_threadpool(record)
    if paused:
        await svc.rebuilder.rebuild()  # errors are logged there; the pause is in repo/ either way
    return JSONResponse({"device": device.name, "groups": list(device.groups), "duplicate": duplicate})


# -- rollout status --------------------------------------------------------------------------------


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (name, password) if sep else None


async def staff_user(request: Request) -> User:
    credentials = _basic_credentials(request)
    if credentials is None:
        raise error(401, "Send a staff account's name and password (HTTP Basic).", BASIC)
    try:
        user = await password_login(services(request), *credentials, client_address(request))
    except LoginThrottledError as exc:
        raise error(429, str(exc), {"Retry-After": str(exc.retry_after)}) from None
    if user is None:
        raise error(401, "Wrong user name or password.", BASIC)
    if not user.staff:
        raise error(403, "Only staff accounts may read rollouts.")
    return user


def rollout_view(rule: Any) -> dict[str, Any]:
    target, name, version = rule.key
    rollout = rule.rollout
    return {
        "target": target,
        "name": name,
        "version": version,
        "share": rollout.share,
        "groups": list(rollout.groups),
        "paused": rollout.paused,
        "paused_reason": rollout.paused_reason,
        "max_failure_rate": rollout.max_failure_rate,
        "min_devices": rollout.min_devices,
        "platforms": list(rule.platforms),
        "counts": rule.counts,
        "failure_rate": rule.failure_rate,
    }


async def get_rollout(request: Request) -> Response:
    await staff_user(request)
    svc = services(request)
    target = FOLDERS[request.path_params["folder"]]
    key = (target, request.path_params["name"], request.path_params["version"])
    try:
        rule = await run_in_threadpool(lambda: read_rule(svc.storage.db, svc.config.repo, key))
    except NoSuchVersionError:
        raise error(404, f"No {target} {key[1]} {key[2]} in the store.") from None
    except FormatError as exc:
        log.error("rollout of %s %s %s cannot be read: %s", *key, exc)
        raise error(503, "The version's sidecar cannot be read; the server log says why.") from None
    return JSONResponse(rollout_view(rule))


# -- the rest --------------------------------------------------------------------------------------

ROLLOUT_PATH = re.compile(rf"^{PREFIX}/rollouts/(modules|firmware)/[^/]+/[^/]+$")


async def not_found(request: Request) -> Response:
    """404 in the dialect's shape; 405 (with Allow) for a known path and another method."""
    path = request.url.path
    allowed = "POST" if path == f"{PREFIX}/reports" else "GET, HEAD" if ROLLOUT_PATH.match(path) else None
    if allowed is not None and request.method not in allowed.split(", "):
        raise error(405, f"{path} takes {allowed} only.", {"Allow": allowed})
    raise error(404, f"No device endpoint {request.method} {path}.")


def routes() -> list[BaseRoute]:
    return [
        Route(f"{PREFIX}/reports", post_report, methods=["POST"]),
        Route(
            f"{PREFIX}/rollouts/{{folder:str}}/{{name:str}}/{{version:str}}", _rollout_or_404, methods=["GET"]
        ),
        Route(
            f"{PREFIX}/{{rest:path}}", not_found, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        ),
    ]


async def _rollout_or_404(request: Request) -> Response:
    if request.path_params["folder"] not in FOLDERS:
        return await not_found(request)
    return await get_rollout(request)

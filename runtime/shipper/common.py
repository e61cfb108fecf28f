"""What every shipper endpoint shares: token authentication with DRF's error bodies, rate
limits with DRF's 429, request bodies that may be form, multipart or JSON, and the schema."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from builder.jsonsafe import JsonError, loads_json
from runtime.accounts import Accounts, User, on_password_change
from runtime.bodies import SMALL_BODY, BodyTooLargeError, read_body
from runtime.database import Database
from runtime.errors import ApiError
from runtime.ratelimit import RateLimiter, throttled_detail
from runtime.services import client_address, services
from runtime.shipper.builds import fill_missing_checksums, find_by_id, update_sidecar
from runtime.storage import register_schema
from runtime.tokens import Tokens

TOKEN_PURPOSE = "ota"


@on_password_change
def end_ota_tokens(db: Database, user_id: int) -> None:
    """A password change ends every shippy login token: a token taken with the old password
    must not outlive it."""
    Tokens(db).revoke_all(user_id, TOKEN_PURPOSE)


NO_STORE = {"cache-control": "no-store"}


def _v1(db: Database) -> None:
    db.table("shipper_uploads").create(
        {
            "id": str,  # UUID4
            "user_id": int,
            "filename": str,
            "offset": int,
            "total": int,
            "created_at": float,  # UNIX seconds
            "status": int,  # 1 incomplete, 2 complete (drf-chunked-upload's values)
            "completed_at": float,
        },
        pk="id",
        foreign_keys=[("user_id", "users", "id")],
    )
    db.table("shipper_uploads").create_index(["user_id"])
    db.table("shipper_downloads").create(
        {
            "id": int,
            "time": float,  # UNIX seconds
            "codename": str,
            "file_name": str,  # without .zip, as shipper's Build.file_name
            "build_id": int,
            "ip": str,
            "download_type": str,  # "download" or "update"
        },
        pk="id",
    )
    db.table("shipper_downloads").create_index(["time"])
    db.table("shipper_downloads").create_index(["file_name"])


register_schema("shipper", [_v1])


def throttle_error(seconds: int) -> ApiError:
    return ApiError(429, {"detail": throttled_detail(seconds)}, headers={"Retry-After": str(seconds)})


async def throttle(request: Request, user: User | None = None) -> None:
    """Count this request against the caller's rate (per user, else per address); the database
    work runs in a worker thread, never on the event loop."""
    svc = services(request)
    limits = svc.config.limits
    if user is not None:
        key, rate = f"shipper:user:{user.id}", limits.shipper_user
    else:
        key, rate = f"shipper:anon:{client_address(request)}", limits.shipper_anon
    if rate is None:  # "off": no count to keep, and no worker-thread hop for it
        return
    wait = await run_in_threadpool(lambda: RateLimiter(svc.storage.db).hit(key, rate))
    if wait is not None:
        raise throttle_error(wait)


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, {"detail": detail}, headers={"WWW-Authenticate": "Token"})


async def authenticate(request: Request) -> User:
    """The user of ``Authorization: Token <key>``, or a 401 with DRF's body; then throttled.
    The lookups run in a worker thread, never on the event loop."""
    parts = request.headers.get("authorization", "").split()
    if not parts or parts[0].lower() != "token":
        raise _unauthorized("Authentication credentials were not provided.")
    if len(parts) == 1:
        raise _unauthorized("Invalid token header. No credentials provided.")
    if len(parts) > 2:
        raise _unauthorized("Invalid token header. Token string should not contain spaces.")
    svc = services(request)
    lifetime = timedelta(days=svc.config.ota_token_days)

    def lookup() -> tuple[bool, User | None]:
        token = Tokens(svc.storage.db).verify(parts[1], TOKEN_PURPOSE, renew=lifetime)
        return token is not None, Accounts(svc.storage.db).by_id(token.user_id) if token else None

    found, user = await run_in_threadpool(lookup)
    if not found:
        raise _unauthorized("Invalid token.")
    if user is None:
        raise _unauthorized("User inactive or deleted.")
    await throttle(request, user)
    return user


async def body_fields(request: Request) -> dict[str, Any]:
    """Form, multipart or JSON bodies alike (DRF's default parsers); {} for an empty body. Read
    under a cap before anything parses them: these endpoints take a few fields, and most of them
    answer anonymous clients."""
    ctype = request.headers.get("content-type", "")
    try:
        raw = await read_body(request, SMALL_BODY)
    except BodyTooLargeError as exc:
        raise ApiError(413, {"detail": f"Request body too large: at most {exc.limit} bytes."}) from exc
    if ctype.startswith("application/json"):
        if not raw.strip():
            return {}
        try:
            data = loads_json(raw)
        except JsonError as exc:
            raise ApiError(400, {"detail": f"JSON parse error - {exc}"}) from exc
        if not isinstance(data, dict):
            raise ApiError(400, {"detail": "Invalid data. Expected a dictionary."})
        return data
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form(max_files=0, max_fields=100)
        return {k: v for k, v in form.items() if isinstance(v, str)}
    return {}


def may_maintain(user: User, codename: str) -> bool:
    """Maintainers of the device; staff accounts act for every device (shipper's full access)."""
    return user.staff or codename in user.devices


NO_SUCH_BUILD, NOT_YOUR_DEVICE, SWITCHED = "no_such_build", "not_your_device", "switched"


def set_build_enabled(repo: Path, user: User, build_id: int, enabled: bool) -> str:
    """Switch one build on or off for the feeds, as ``user``: the one rule shipper's
    ``enabled_status_modify`` and the console's OTA page share. NO_SUCH_BUILD,
    NOT_YOUR_DEVICE (only its maintainers and staff may), or SWITCHED (then rebuild)."""
    found = find_by_id(repo, build_id)
    if found is None:
        return NO_SUCH_BUILD
    codename, path = found
    if not may_maintain(user, codename):
        return NOT_YOUR_DEVICE
    update_sidecar(path, enabled=enabled)
    return SWITCHED


async def rebuild(request: Request, changed: Iterable[str] | None = None) -> None:
    """Rebuild after a change of repo/builds/. ``changed``: the paths (relative to repo/) the
    caller wrote, when it knows them all; the zips whose checksums are written here join them,
    so the build stats those, not the whole store (runtime.rebuild)."""
    svc = services(request)
    repo = svc.config.repo
    hashed = await run_in_threadpool(fill_missing_checksums, repo)
    feed = None if changed is None else [*changed, *(p.relative_to(repo).as_posix() for p in hashed)]
    await svc.rebuilder.rebuild(changed=feed)

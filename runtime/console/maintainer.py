"""The maintainers' page: the OTA builds of the devices an account maintains (staff: every
device), switched on and off, with their download counts, and uploaded from the browser.

Nothing here is a second copy of a shipper rule. Who may act for a device is
:func:`runtime.shipper.common.may_maintain`; a build is found by id with
:func:`runtime.shipper.builds.find_by_id` and switched with
:func:`runtime.shipper.builds.update_sidecar` and :func:`runtime.shipper.common.rebuild`, in the
order ``POST /api/v1/maintainers/build/enabled_status_modify/`` does; the counts are shipper's
``shipper_downloads`` rows, which its counters and counted downloads write.

**Uploads** go from the browser straight to shipper's chunked-upload API, the protocol shippy
speaks (``static/upload.js``): there is one implementation of chunks, offsets, resuming,
checksums and publishing, and a browser upload is exactly a shippy upload. The API authenticates
with shipper's ``Token`` header, not with the console's cookie, so the page asks the same
:class:`runtime.tokens.Tokens` service for an ``ota`` token of the signed-in maintainer when it
renders, and hands it to the script in a ``data-`` attribute. Why not a console proxy: it would
either re-implement the chunk handling or fake an ``Authorization`` header into shipper's
request, and stream gigabytes through a second hop; a token is what the API already trusts, and
it gives the page nothing its user could not get from the login endpoint with their password.
The page is ``no-store`` and no inline script can run (CSP), so the token stays in that tab.

Such a token is named ``console:<session id>`` and expires after :data:`UPLOAD_TOKEN_HOURS`
unused; each use renews it as shipper renews every ``ota`` token (``DEPOT_OTA_TOKEN_DAYS``), so
it also ends with every other ``ota`` token of the account on a password change, and is revoked
when the account opens this page again after the console session that made it ended or after
:data:`UPLOAD_TOKEN_HOURS` hours (an upload is resumed with the new page's token: uploads belong
to the account, not to a token).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from builder.errors import FormatError
from builder.model import StoreSettings
from builder.shipper.ota import iter_build_files, parse_build_name
from runtime.accounts import User
from runtime.clock import iso_in
from runtime.console.pages import forbidden, guarded, posted, whole_number
from runtime.console.render import page
from runtime.console.session import PURPOSE as SESSION_PURPOSE
from runtime.console.session import SIGN_OUT_HOOKS, ConsoleSession
from runtime.services import services
from runtime.shipper.builds import build_id_for, find_by_id, is_enabled
from runtime.shipper.common import (
    NO_SUCH_BUILD,
    NOT_YOUR_DEVICE,
    TOKEN_PURPOSE,
    may_maintain,
    rebuild,
    set_build_enabled,
)
from runtime.tokens import Tokens

UPLOAD_TOKEN_HOURS = 12
TOKEN_NAME_PREFIX = "console:"
CHUNK_SIZE = 4 * 1024 * 1024  # shippy sends 1 MB; fewer, larger chunks keep under the API's rate
WEEK = 7 * 86400
UPLOAD_API = "/api/v1/maintainers/chunked_upload/"


def device_names(settings: StoreSettings) -> dict[str, str]:
    return {d.codename: " ".join(p for p in (d.manufacturer, d.name) if p) for d in settings.ota_devices}


def maintained(settings: StoreSettings, user: User) -> list[str]:
    """The declared devices ``user`` may act for, in depot.toml's order."""
    return [d.codename for d in settings.ota_devices if may_maintain(user, d.codename)]


def download_counts(db: Any, now: float) -> dict[tuple[str, str], tuple[int, int]]:
    """(codename, file name without .zip) → (all counted downloads, those of the last 7 days)."""
    cursor = db.execute(
        """SELECT codename, file_name, count(*), coalesce(sum(CASE WHEN time >= ? THEN 1 ELSE 0 END), 0)
           FROM shipper_downloads GROUP BY codename, file_name""",
        [now - WEEK],
    )
    return {(c, f): (int(n), int(w)) for c, f, n, w in cursor.fetchall()}


def builds_of(repo: Any, settings: StoreSettings, db: Any, user: User) -> list[dict[str, Any]]:
    """Every build in repo/builds/ of a device the user may act for, newest file-name date first."""
    counts = download_counts(db, time.time())
    names = device_names(settings)
    out = []
    for codename, path in iter_build_files(repo):
        if not may_maintain(user, codename):
            continue
        stem = path.name.removesuffix(".zip")
        entry: dict[str, Any] = {
            "codename": codename,
            "device": names.get(codename, ""),
            "file_name": path.name,
            "stem": stem,
            "size": path.stat().st_size,
            "enabled": is_enabled(path),
            "date": "",
            "variant": "",
            "version": "",
            "problem": "",
        }
        try:
            entry["build_id"] = build_id_for(codename, path)
        except FormatError as exc:
            entry["build_id"], entry["problem"] = None, f"unreadable sidecar: {exc}"
        try:
            name = parse_build_name(path.name, settings)
            entry.update(date=name.date, variant=name.variant, version=name.version)
        except FormatError:
            entry["problem"] = entry["problem"] or "not published: the file name does not fit the pattern"
        entry["downloads"], entry["downloads_week"] = counts.get((codename, stem), (0, 0))
        out.append(entry)
    out.sort(key=lambda b: (b["date"], b["file_name"]), reverse=True)
    return out


def upload_token(db: Any, session: ConsoleSession) -> str:
    """A fresh ``ota`` token for this page's uploads. At most one lives per console session:
    the session's earlier one is revoked (every view of the page makes a new one, since only
    its hash is kept), and so are the account's console-made ones whose session ended or that
    are older than :data:`UPLOAD_TOKEN_HOURS`."""
    tokens = Tokens(db)
    cutoff = iso_in(-timedelta(hours=UPLOAD_TOKEN_HOURS))
    for token in tokens.list(session.user.id, TOKEN_PURPOSE):
        if not token.name.startswith(TOKEN_NAME_PREFIX):
            continue  # shippy's own logins are the maintainer's business
        made_by = token.name.removeprefix(TOKEN_NAME_PREFIX)
        owner_id = whole_number(made_by)
        owner = tokens.get(owner_id) if owner_id is not None else None
        ended = owner is None or owner.purpose != SESSION_PURPOSE
        if ended or owner_id == session.token_id or token.created < cutoff:
            tokens.revoke(token.id, session.user.id)
    _token, raw = tokens.create(
        session.user.id,
        TOKEN_PURPOSE,
        name=f"{TOKEN_NAME_PREFIX}{session.token_id}",
        expires_in=timedelta(hours=UPLOAD_TOKEN_HOURS),
    )
    return raw


def _notice(request: Request, user: User) -> str:
    repo = services(request).config.repo
    query = request.query_params
    for key, word in (
        ("uploaded", "uploaded and published"),
        ("enabled", "enabled"),
        ("disabled", "disabled"),
    ):
        number = whole_number(query.get(key, ""))
        if number is not None:
            found = find_by_id(repo, number)
            if found is not None and may_maintain(user, found[0]):
                return f"{found[1].name} is {word}."
    return ""


def _page_context(request: Request, session: ConsoleSession) -> dict[str, Any]:
    svc = services(request)
    settings = svc.settings()
    db = svc.storage.db
    devices = maintained(settings, session.user)
    names = device_names(settings)
    return {
        "builds": builds_of(svc.config.repo, settings, db, session.user),
        "devices": [(c, names.get(c, "")) for c in devices],
        "token": upload_token(db, session) if devices else "",
        "chunk_size": CHUNK_SIZE,
        "upload_api": UPLOAD_API,
        "notice": _notice(request, session.user),
    }


@guarded("maintainer")
async def ota_page(request: Request, session: ConsoleSession) -> Response:
    context = await run_in_threadpool(_page_context, request, session)
    return page(request, "ota.html", session, title="OTA builds", error="", **context)


@guarded("maintainer")
async def toggle_build(request: Request, session: ConsoleSession) -> Response:
    """Shipper's own rule (set_build_enabled, as its enabled_status_modify), then a rebuild:
    the feeds list only enabled builds."""
    build_id = whole_number(request.path_params["build_id"])
    if build_id is None:
        build_id = -1
    wanted = posted(request).get("enable")
    if wanted not in ("true", "false"):
        return forbidden(request, session, "Say whether to enable or disable the build.")
    flag = wanted == "true"
    repo = services(request).config.repo
    outcome = await run_in_threadpool(set_build_enabled, repo, session.user, build_id, flag)
    if outcome == NO_SUCH_BUILD:
        return page(request, "error.html", session, status=404, title="No such build",
                    message="No OTA build has that id (removed from repo/builds/?).")  # fmt: skip
    if outcome == NOT_YOUR_DEVICE:
        return forbidden(request, session, "You do not maintain the device of this build.")
    await rebuild(request)
    word = "enabled" if flag else "disabled"
    return RedirectResponse(f"/console/ota?{word}={build_id}", status_code=303)


ROUTES: list[BaseRoute] = [
    Route("/console/ota", ota_page, methods=["GET"]),
    Route("/console/ota/builds/{build_id}", toggle_build, methods=["POST"]),
]


def _end_upload_tokens(db: Any, user_id: int, session_token_id: int | None) -> None:
    """Signing out ends the upload token of the session (of every session: all of them)."""
    tokens = Tokens(db)
    for token in tokens.list(user_id, TOKEN_PURPOSE):
        if token.name.startswith(TOKEN_NAME_PREFIX) and (
            session_token_id is None or token.name == f"{TOKEN_NAME_PREFIX}{session_token_id}"
        ):
            tokens.revoke(token.id, user_id)


SIGN_OUT_HOOKS.append(_end_upload_tokens)

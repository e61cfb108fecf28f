"""``POST /upload``: staff put a Qt package into the store.

The checks and their status strings come in the reference server's order. A valid package and
its sidecar are written into repo/apps/ (temp file, fsync, rename), then the incremental build
runs before the answer, so the uploader's next /app/list shows the package. Re-uploading the
same (id, architecture, tags) replaces the file and keeps its purchaseId.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from builder.atomic import TEMP_PREFIX
from builder.errors import FormatError
from builder.qt.package import (
    PackageError,
    default_purchase_id,
    escape_key,
    validate_package,
)
from builder.sidecars import read_sidecar, write_sidecar
from runtime.accounts import User
from runtime.logins import password_login
from runtime.qt.services import QtServices
from runtime.ratelimit import LoginThrottledError
from runtime.services import client_address, services
from runtime.uploads import check_room, incoming_folder, place, sweep_stale

UNAUTHORIZED = {"WWW-Authenticate": 'Basic realm=""'}


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """(name, password) of a well-formed ``Authorization: Basic`` header, else None."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (name, password) if sep else None


async def _basic_user(request: Request) -> User | None:
    """The user of valid Basic credentials, under the shared failed-login limits."""
    credentials = _basic_credentials(request)
    if credentials is None:
        return None
    name, password = credentials
    return await password_login(services(request), name, password, client_address(request))


def status(value: str, code: int = 200, **extra: Any) -> Response:
    return JSONResponse({"status": value, **extra}, status_code=code)


def _existing_purchase_id(package: Path) -> str:
    """The purchaseId a re-uploaded package keeps; "" when its sidecar has none or is unreadable."""
    try:
        value = read_sidecar(package).get("purchase_id", "")
    except (OSError, FormatError):
        return ""
    return value if isinstance(value, str) else ""


async def handle_upload(request: Request, q: QtServices) -> Response:
    user = await run_in_threadpool(q.sessions.user, q.sessions.load(request))
    if user is None:
        try:
            user = await _basic_user(request)
        except LoginThrottledError as exc:
            return JSONResponse(
                {"status": "failed", "error": str(exc)},
                status_code=429,
                headers={"Retry-After": str(exc.retry_after)},
            )
    if user is None:
        return Response(b"", status_code=401, headers=UNAUTHORIZED)
    if not user.staff:
        return Response(b"", status_code=403)

    # a usable depot.toml or a 503 in the dialect's shape (QtServices.settings); the schema
    # guarantees a positive integer here, so a bad value never reaches the size check
    limit = q.settings().qt_max_upload_bytes or q.config.max_upload_bytes
    if request.method == "POST":
        length = request.headers.get("content-length")
        if length is None:
            if request.headers.get("content-type"):
                return status("a Content-Length is required", 411)
            length = "0"  # no body at all
        if not length.isdigit() or int(length) > limit:
            return status(f"package too large: the limit is {limit} bytes", 413)
        check_room(q.config.data, int(length) * 2)  # spooled by the form parser, then copied
        try:
            form = await request.form(max_files=2, max_fields=20)
        except Exception:  # a malformed multipart body is the client's error
            return status("malformed form data", 400)
        fields: dict[str, Any] = dict(form.items())
    else:
        form, fields = None, dict(request.query_params)
    try:
        return await _checked_upload(request, q, fields)
    finally:
        if form is not None:
            await form.close()


async def _checked_upload(request: Request, q: Any, fields: dict[str, Any]) -> Response:
    for name, message in (
        ("description", "no description"),
        ("short-description", "no short description"),
        ("category", "no category"),
        ("vendor", "no vendor"),
    ):
        if not isinstance(fields.get(name), str):
            return status(message)
    package = fields.get("package")
    if request.method != "POST" or not isinstance(package, UploadFile):
        return status("no package to upload")
    settings = q.settings()
    if fields["category"] not in [c.name for c in settings.categories]:
        return status("Non-existing category")
    vendor = next((v for v in settings.vendors if v.name == fields["vendor"]), None)
    if vendor is None:
        return status("Non-existing vendor")

    apps = q.config.repo / "apps"
    apps.mkdir(parents=True, exist_ok=True)
    incoming = incoming_folder(q.config.data, "qt")  # spooled in the data folder, never in repo/
    sweep_stale(incoming)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=incoming)
    temp = Path(temp_name)
    try:
        await run_in_threadpool(_spool, package, fd)
        try:
            pkg = await run_in_threadpool(validate_package, temp)
        except PackageError as exc:
            return status("Package validation failed", error=str(exc))
        existing = q.catalog.variant_by_key(pkg.key)
        if existing is not None:
            relpath = existing[1]["file"]
        else:
            filename = escape_key(pkg.key)
            relpath = "apps/" + ("_" + filename if filename.startswith(".") else filename) + ".appkg"
        target = (q.config.repo / relpath).resolve()
        if not target.is_relative_to(apps.resolve()):
            return status("Package validation failed", error="the package would be stored outside apps/")
        purchase_id = (
            (existing[0] if existing else "") or _existing_purchase_id(target) or default_purchase_id(pkg.key)
        )
        meta = {
            "category": fields["category"],
            "vendor": vendor.name,
            "brief_description": fields["short-description"],
            "description": fields["description"],
            "purchase_id": purchase_id,
            # the web catalog lists the newest and updated apps by this date
            "updated": datetime.datetime.now(datetime.UTC).date().isoformat(),
        }
        write_sidecar(target, meta, kind="qt-app")  # exactly the keys the reader accepts
        place(temp, target)
    except OSError as exc:
        return status(f"could not store the package: {exc.strerror or exc}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    result = await services(request).rebuilder.rebuild()
    # No result: the build could not run; the package is stored and the next build publishes it.
    problem = result.skipped.get(relpath) if result is not None else None
    if problem:
        return status("Package validation failed", error=problem)
    return status("ok")


def _spool(upload: UploadFile, fd: int) -> None:
    upload.file.seek(0)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())

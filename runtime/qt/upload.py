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
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
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
from runtime.multipart import multipart_boundary, stream_form
from runtime.qt.services import QtServices
from runtime.ratelimit import LoginThrottledError
from runtime.services import client_address, services
from runtime.uploads import HashedWriter, check_room, incoming_folder, place, sweep_stale

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
        check_room(q.config.data, int(length))  # streamed once, into the data folder
        incoming = incoming_folder(q.config.data, "qt")  # never in repo/
        sweep_stale(incoming)
        fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=incoming)
        temp: Path | None = Path(temp_name)
        assert temp is not None
        try:
            try:
                fields = await stream_fields(request, fd)
            finally:
                os.close(fd)
            if fields is None:
                return status("malformed form data", 400)
            if fields.get("package") is not PACKAGE:
                temp.unlink()
                temp = None
            return await checked_upload(request, q, fields, temp)
        finally:
            if temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
    return await checked_upload(request, q, dict(request.query_params), None)


PACKAGE = object()  # the form's "package" value: a file part, streamed to the temporary file


async def stream_fields(request: Request, fd: int) -> dict[str, Any] | None:
    """The form's fields, with the ``package`` file part written to ``fd`` (fsynced) and hashed
    as it arrives, in bounded memory; None for a malformed form (the caps are Starlette's form's:
    two files, twenty fields). A form whose ``package`` repeats keeps the last, as Starlette's."""
    ctype = request.headers.get("content-type", "")
    boundary = multipart_boundary(ctype)
    if boundary is None:  # not multipart: no package; a urlencoded form's fields still count
        try:
            plain = await request.form(max_files=0, max_fields=20)
        except Exception:
            return None
        return {k: v for k, v in plain.items() if isinstance(v, str)}
    writers: list[HashedWriter] = []

    async def sink() -> Any:
        if writers:  # a second package part: start the file over
            await writers[-1].close()
            os.ftruncate(fd, 0)
        writers.append(HashedWriter(fd, 0, (hashlib.sha256(),)))
        return writers[-1].write

    try:
        try:
            form = await stream_form(request.stream(), boundary, "package", sink, max_files=2, max_fields=20)
            if writers:
                await writers[-1].close()
        except BaseException:
            if writers:
                await writers[-1].abort()
            raise
    except Exception:  # a malformed or cut-off multipart body is the client's error
        return None
    if form.has_file:
        await run_in_threadpool(os.fsync, fd)
    fields: dict[str, Any] = dict(form.fields)
    for name in form.file_names:
        fields[name] = PACKAGE if name == "package" and form.has_file else object()  # a file, not text
    return fields


async def checked_upload(request: Request, q: Any, fields: dict[str, Any], temp: Path | None) -> Response:
    """The rest of POST /upload once the form is read (``temp``: the package part, on disk):
    every check and message of the reference, then the package stored and the catalog rebuilt.
    The console's upload form calls it too, so both answer with the same words."""
    for name, message in (
        ("description", "no description"),
        ("short-description", "no short description"),
        ("category", "no category"),
        ("vendor", "no vendor"),
    ):
        if not isinstance(fields.get(name), str):
            return status(message)
    if request.method != "POST" or fields.get("package") is not PACKAGE or temp is None:
        return status("no package to upload")
    settings = q.settings()
    if fields["category"] not in [c.name for c in settings.categories]:
        return status("Non-existing category")
    vendor = next((v for v in settings.vendors if v.name == fields["vendor"]), None)
    if vendor is None:
        return status("Non-existing vendor")

    apps = q.config.repo / "apps"
    apps.mkdir(parents=True, exist_ok=True)
    try:
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
    result = await services(request).rebuilder.rebuild(changed=[relpath])  # and its sidecar
    # No result: the build could not run; the package is stored and the next build publishes it.
    problem = result.skipped.get(relpath) if result is not None else None
    if problem:
        return status("Package validation failed", error=problem)
    return status("ok")

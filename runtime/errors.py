"""JSON errors that never leak a traceback.

Each dialect answers errors in its own shape (its module installs handlers for its paths); this
is the default shape, ``{"detail": "..."}``, and the last line of defence for bugs.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from builder.errors import DepotError, SettingsError
from runtime.accesslog import redact_path
from runtime.database import DatabaseFullError, DatabaseUnavailableError, UnstorableTextError

log = logging.getLogger("runtime")
SETTINGS_UNUSABLE = "The store's settings (depot.toml) cannot be used; the server log says why."


class ApiError(Exception):
    """An error a client caused, with the body to send in the dialect's own shape."""

    def __init__(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status, self.body, self.headers = status, body, headers


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def settings_error(request: Request, exc: Exception) -> Response:
    """depot.toml became unusable while the runtime runs: the store's fault, not the client's
    and not a bug. 503 in the default shape; the problems go to the log only, since they may
    name paths and values of the store's configuration. Dialects with another error shape
    catch SettingsError where they read the settings (the Qt dialect does)."""
    log.error("%s %s: depot.toml cannot be used:\n%s", request.method, redact_path(request.url.path), exc)
    return JSONResponse({"detail": SETTINGS_UNUSABLE}, status_code=503)


# -- errors in each dialect's own shape ----------------------------------------------------------

ErrorShape = Callable[[int, str, str], object]  # (status, stable code, message) → the JSON body
SHAPES: list[tuple[tuple[str, ...], ErrorShape]] = []


def register_error_shape(prefixes: tuple[str, ...], shape: ErrorShape) -> None:
    """A dialect names the URL prefixes it answers and how its errors look; the runtime's own
    failures (a full disk, say) are then answered in that shape on those URLs."""
    SHAPES.append((prefixes, shape))


def shaped(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    path = request.url.path
    shape = next((s for prefixes, s in SHAPES if path.startswith(prefixes)), None)
    body = shape(status, code, message) if shape is not None else {"detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


# -- a full disk ----------------------------------------------------------------------------------

DATABASE_UNAVAILABLE = "The store's database is unavailable; nothing was stored. Try again shortly."
OUT_OF_SPACE = "The store is out of disk space; nothing was stored. Try again later."
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(exc, InsufficientStorageError | DatabaseFullError)


class InsufficientStorageError(DepotError):
    """An upload declared more bytes than the disk can take (checked before any byte is kept)."""


async def storage_error(request: Request, exc: Exception) -> Response:
    """A full disk is the store's condition, not a bug: 507 in the dialect's shape, one log line.
    Nothing half-written stays (every write is temp → fsync → rename, and SQLite rolls back)."""
    if not is_disk_full(exc):
        return await unexpected_error(request, exc)
    log.error("%s %s: out of disk space: %s", request.method, redact_path(request.url.path), exc)
    return shaped(request, 507, "insufficient_storage", OUT_OF_SPACE)


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """PostgreSQL down or restarting, or SQLite locked past its busy timeout: the store's
    condition, answered 503 with Retry-After in the dialect's shape; nothing was stored."""
    log.error("%s %s: the database is unavailable: %s", request.method, redact_path(request.url.path), exc)
    return shaped(request, 503, "database_unavailable", DATABASE_UNAVAILABLE, {"retry-after": "5"})


async def unstorable_text(request: Request, exc: Exception) -> Response:
    """A NUL character in a value the store was asked to look up or keep: no name, token or
    field of the store holds one, and PostgreSQL's text cannot; the client's mistake (400)."""
    return shaped(request, 400, "invalid_characters", "The request holds a NUL character.")


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, redact_path(request.url.path))
    return JSONResponse({"detail": "internal server error"}, status_code=500)


HANDLERS = {
    ApiError: api_error,
    HTTPException: http_error,
    SettingsError: settings_error,
    InsufficientStorageError: storage_error,
    OSError: storage_error,
    DatabaseFullError: storage_error,
    DatabaseUnavailableError: database_unavailable,
    UnstorableTextError: unstorable_text,
    Exception: unexpected_error,
}

"""JSON errors that never leak a traceback.

Each dialect answers errors in its own shape (its module installs handlers for its paths); this
is the default shape, ``{"detail": "..."}``, and the last line of defence for bugs.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from builder.errors import SettingsError
from runtime.accesslog import redact_path

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


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, redact_path(request.url.path))
    return JSONResponse({"detail": "internal server error"}, status_code=500)


HANDLERS = {
    ApiError: api_error,
    HTTPException: http_error,
    SettingsError: settings_error,
    Exception: unexpected_error,
}

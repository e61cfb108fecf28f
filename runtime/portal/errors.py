"""The portal's error shape: ``{"error": {"code", "message", "details"}}`` with a stable code."""

from __future__ import annotations

from typing import Any

from runtime.errors import ApiError


def error(status: int, code: str, message: str, **details: Any) -> ApiError:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    headers = {"WWW-Authenticate": 'Bearer realm="depot-portal"'} if status == 401 else None
    return ApiError(status, {"error": body}, headers)

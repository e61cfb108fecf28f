"""File responses with HTTP Range, conditional requests and optional nginx hand-off.

Starlette's FileResponse already answers Range (206, multipart ranges, 416) and If-Range. Two
things are added so downloads behave as RFC 9110 says and as download managers expect:

* a Range header that cannot be parsed, or uses a unit other than bytes, is ignored and the whole
  file is sent (RFC 9110 §14.2), instead of a 400;
* a strong ETag derived from the content's SHA-256 when the caller knows it, and
  If-None-Match → 304 for GET and HEAD.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.responses import FileResponse, MalformedRangeHeader, Response
from starlette.types import Receive, Scope, Send


class RangeFileResponse(FileResponse):
    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # ignored: the whole representation is sent with 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        if_none_match = headers.get("if-none-match")
        if if_none_match and scope["method"] in ("GET", "HEAD"):
            if self.stat_result is None:
                self.stat_result = os.stat(self.path)
                self.set_stat_headers(self.stat_result)
            etag = self.headers.get("etag", "")
            candidates = [c.strip().removeprefix("W/") for c in if_none_match.split(",")]
            if "*" in candidates or etag in candidates:
                keep = {
                    k: v for k, v in self.headers.items() if k in ("etag", "cache-control", "last-modified")
                }
                await Response(status_code=304, headers=keep)(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def file_response(
    path: Path,
    media_type: str,
    *,
    sha256: str | None = None,
    filename: str | None = None,
    cache_control: str | None = None,
    accel_redirect: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """Serve ``path``; raises FileNotFoundError when it is gone.

    With ``accel_redirect`` (an internal nginx location for this file) the body is left to nginx,
    which does Range itself; Python only decides whether the download is allowed."""
    stat = os.stat(path)
    headers: dict[str, str] = dict(extra_headers or {})
    if sha256:
        headers["etag"] = f'"{sha256}"'
    if cache_control:
        headers["cache-control"] = cache_control
    if accel_redirect:
        headers["x-accel-redirect"] = quote(accel_redirect)
        if filename:
            headers["content-disposition"] = f"attachment; filename*=utf-8''{quote(filename)}"
        return Response(status_code=200, headers=headers, media_type=media_type)
    return RangeFileResponse(
        path,
        media_type=media_type,
        headers=headers,
        filename=filename,
        stat_result=stat,
    )

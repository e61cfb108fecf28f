"""File responses with HTTP Range, conditional requests and optional nginx hand-off.

Starlette's FileResponse already answers Range (206, multipart ranges, 416) and If-Range. Two
things are added so downloads behave as RFC 9110 says and as download managers expect:

* a Range header that cannot be parsed, or uses a unit other than bytes, is ignored and the whole
  file is sent (RFC 9110 §14.2), instead of a 400;
* a strong ETag derived from the content's SHA-256 when the caller knows it, and
  If-None-Match → 304 for GET and HEAD.

The file is opened once, when the response is made, and its size, Last-Modified and bytes all
come from that one descriptor. A build renames new files over old ones and deletes files that
are gone; a response that stat'ed the name and opened it again later could announce one file's
length and send another's bytes. An open descriptor keeps the inode it was opened on, so every
answer is one complete file that some build published.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import anyio
from starlette.datastructures import Headers
from starlette.responses import FileResponse, MalformedRangeHeader, Response
from starlette.types import Receive, Scope, Send


class RangeFileResponse(FileResponse):
    """A FileResponse over a file already opened: every read goes to that descriptor."""

    def __init__(
        self,
        handle: BinaryIO,
        path: Path,
        media_type: str,
        headers: dict[str, str],
        filename: str | None = None,
    ) -> None:
        self.handle = handle
        stat = os.fstat(handle.fileno())
        super().__init__(path, media_type=media_type, headers=headers, filename=filename, stat_result=stat)

    @contextlib.asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        yield anyio.wrap_file(self.handle)  # closed once, when the response is done

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # ignored: the whole representation is sent with 200

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # "pathsend" would hand the server the name, not the descriptor: never offer it
        extensions = {k: v for k, v in scope.get("extensions", {}).items() if k != "http.response.pathsend"}
        try:
            await self._respond({**scope, "extensions": extensions}, receive, send)
        finally:
            self.handle.close()

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        if_none_match = headers.get("if-none-match")
        if if_none_match and scope["method"] in ("GET", "HEAD"):
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
    """Serve ``path``; raises FileNotFoundError when it is gone (IsADirectoryError for a folder).

    With ``accel_redirect`` (an internal nginx location for this file) the body is left to nginx,
    which does Range itself; Python only decides whether the download is allowed."""
    headers: dict[str, str] = dict(extra_headers or {})
    if sha256:
        headers["etag"] = f'"{sha256}"'
    if cache_control:
        headers["cache-control"] = cache_control
    if accel_redirect:
        headers["x-accel-redirect"] = quote(accel_redirect)
        if filename:
            headers["content-disposition"] = f"attachment; filename*=utf-8''{quote(filename)}"
        if not path.is_file():
            raise FileNotFoundError(path)
        return Response(status_code=200, headers=headers, media_type=media_type)
    handle = path.open("rb")
    try:
        return RangeFileResponse(handle, path, media_type=media_type, headers=headers, filename=filename)
    except BaseException:
        handle.close()
        raise

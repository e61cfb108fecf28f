"""The embedded static mount: serves site/ through the builder's route table.

Only URLs of the builder's route table (``site/routes.json`` and the shards it names,
:mod:`builder.routes`) are served, each from the file and with the media type the table gives;
nothing else under site/ (or outside it) is reachable, whatever the path says, the table's own
files included. The table is followed as the builder replaces it (only the shards a build
changed are read again), so a rebuild is visible on the next request.

Small files are answered from memory (:class:`FileCache`, :class:`StaticFastPath`): read once,
kept with their whole header block made in advance, and checked against one ``stat`` of the
file on every request, so a file a build replaced (a new inode, size or mtime) is read again on
the request that first sees it and never served stale. Large files, Range requests and the
X-Accel-Redirect hand-off take the general path (:func:`runtime.files.file_response`).
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_module
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from builder.routes import ROUTES_FILE, ShardedTable
from builder.webpolicy import SECURITY_HEADERS
from runtime.files import file_response

# Content-addressed trees: a file's name changes when its bytes do, so it may be cached forever.
IMMUTABLE_PREFIXES = ("files/", "assets/")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

RouteKey = tuple[str, tuple[tuple[str, str], ...]]


class RouteTable:
    """The route table as the static mount asks it: (URL, query) → row, read through
    :class:`builder.routes.ShardedTable` (a sharded table or a schema-1 single file). A site
    without a table has no routes."""

    def __init__(self, site: Path) -> None:
        self.site = site
        self._table = ShardedTable(site)
        self._routes: dict[RouteKey, dict[str, Any]] = {}
        self._urls: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        # Bumped each time a new table is loaded: what the fast path decided per URL is
        # forgotten with the table it was decided for.
        self.generation = 0

    def _refresh(self) -> None:
        # One stat of routes.json when nothing changed (ShardedTable compares its mtime and
        # size), under the lock: ShardedTable is not thread-safe, and a request that comes
        # while another thread loads a new table waits for it rather than load it again.
        with self._lock:
            if not self._table.refresh():
                return
            routes: dict[RouteKey, dict[str, Any]] = {}
            for route in self._table.rows:
                query = route.get("query")
                routes[(route["url"], tuple(sorted(query.items())) if query else ())] = route
            self._routes = routes
            self._urls = frozenset(url for url, _query in routes)
            self.generation += 1

    def has_url(self, path: str) -> bool:
        """Whether some route (any query) serves ``path``: a cheap "no" for dynamic URLs."""
        self._refresh()
        urls = self._urls
        return path in urls or (path.endswith("/") and path + "index.html" in urls)

    def lookup(self, path: str, query: dict[str, str]) -> dict[str, Any] | None:
        self._refresh()
        routes = self._routes
        key = tuple(sorted(query.items()))
        for candidate in (path, path + "index.html" if path.endswith("/") else None):
            if candidate is None:
                continue
            route = routes.get((candidate, key)) or routes.get((candidate, ()))
            if route:
                return route
        return None


class StaticSite:
    """Endpoint for every URL no dynamic route claimed."""

    def __init__(self, site: Path, accel_redirect_prefix: str = "") -> None:
        self.site = site.resolve()
        self.table = RouteTable(self.site)
        self.accel_prefix = accel_redirect_prefix
        self.cache = FileCache()
        # Told of every file answered (site path, method, Range header): the download counter
        # (runtime.downloads) counts the package files among them. Set by the app.
        self.on_answer: Callable[[str, str, str | None], object] | None = None

    def answered(self, relative: str, method: str, range_header: str | None) -> None:
        if self.on_answer is not None:
            self.on_answer(relative, method, range_header)

    def target(self, relative: str) -> str | None:
        """The file of a route, or None when its path leads out of site/."""
        target = (self.site / relative).resolve()
        return str(target) if target.is_relative_to(self.site) else None

    def response(self, request: Request) -> Response | None:
        """The static answer for ``request``, or None when no static URL matches."""
        if request.method not in ("GET", "HEAD"):
            return None
        route = self.table.lookup(request.url.path, dict(request.query_params))
        if route is None:
            return None
        target = (self.site / route["file"]).resolve()
        if not target.is_relative_to(self.site):
            return None
        cache = IMMUTABLE if route["file"].startswith(IMMUTABLE_PREFIXES) else REVALIDATE
        if route.get("status", 200) != 200:
            # A static error body (a dialect's "no such thing" answer): small, sent whole.
            try:
                body = target.read_bytes()
            except FileNotFoundError:
                return None
            return Response(
                body, status_code=route["status"], media_type=route["type"], headers={"cache-control": cache}
            )
        try:
            response = file_response(
                target,
                route["type"],
                cache_control=cache,
                accel_redirect=(self.accel_prefix + route["file"]) if self.accel_prefix else None,
            )
        except FileNotFoundError:
            return None
        if response.status_code in (200, 206):
            self.answered(route["file"], request.method, request.headers.get("range"))
        return response

    async def endpoint(self, request: Request) -> Response:
        response = self.response(request)
        if response is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return response


def site_exists(site: Path) -> bool:
    return os.path.exists(site / ROUTES_FILE)


# -- small files from memory --------------------------------------------------------------------

# A file up to CACHE_FILE_MAX bytes is kept in memory, up to CACHE_TOTAL_MAX bytes of bodies per
# process, least recently used first out. Below 256 KiB the cost of an answer is Python's
# per-request work (a thread hop and several reads per file), which the cache removes; above it
# the cost is moving the bytes, which streaming does as well. Every icon, page, style sheet and
# index of the demo store and the Qt, shipper and portal indexes of a store of some thousands of
# packages are far below it; package files are mostly above, and are streamed. 64 MiB holds
# thousands of such files and bounds each worker of `depot serve --workers N` (N x 64 MiB at
# most).
CACHE_FILE_MAX = 256 * 1024
CACHE_TOTAL_MAX = 64 * 1024 * 1024

SECURITY_RAW = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in SECURITY_HEADERS]
FileKey = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def starlette_etag(st: os.stat_result) -> str:
    """The ETag Starlette's FileResponse gives the same file, so a validator from a cached
    answer also works for a Range request (If-Range) that takes the streaming path."""
    base = str(st.st_mtime) + "-" + str(st.st_size)
    return '"' + hashlib.md5(base.encode(), usedforsecurity=False).hexdigest() + '"'


def content_type(media_type: str) -> str:
    if media_type.startswith("text/") and "charset=" not in media_type.lower():
        return media_type + "; charset=utf-8"  # as Starlette's Response does
    return media_type


class CachedFile:
    """One file's bytes and its answers' header blocks, made once."""

    __slots__ = ("body", "etag", "headers", "key", "not_modified", "size")

    def __init__(self, key: FileKey, body: bytes, st: os.stat_result, media_type: str, cache: str) -> None:
        self.key, self.body, self.size = key, body, len(body)
        self.etag = starlette_etag(st)
        common = [
            (b"etag", self.etag.encode("latin-1")),
            (b"cache-control", cache.encode("latin-1")),
            (b"last-modified", formatdate(st.st_mtime, usegmt=True).encode("latin-1")),
        ]
        self.headers = [
            (b"content-type", content_type(media_type).encode("latin-1")),
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"accept-ranges", b"bytes"),
            *common,
            *SECURITY_RAW,
        ]
        self.not_modified = [*common, *SECURITY_RAW]

    def matches(self, if_none_match: str) -> bool:
        """If-None-Match names this file (weak comparison, RFC 9110 13.1.2), or is ``*``."""
        candidates = [c.strip().removeprefix("W/") for c in if_none_match.split(",")]
        return "*" in candidates or self.etag in candidates


class FileCache:
    """Files read once and answered from memory while one stat of the name still shows the
    inode, size, mtime and ctime they were read with. A build replaces a file by renaming a new
    one over it (a new inode) and the mutable index files are only ever replaced that way, so
    the stat on each request is enough to never serve a replaced file; the bytes and the key
    come from one open descriptor, so they always belong together."""

    def __init__(self, max_file: int = CACHE_FILE_MAX, max_total: int = CACHE_TOTAL_MAX) -> None:
        self.max_file, self.max_total = max_file, max_total
        self.total = 0
        self._entries: OrderedDict[tuple[str, str, str], CachedFile] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str, media_type: str, cache: str) -> CachedFile | None:
        """The cached file, read now if it is not cached or changed; None when it is gone, not
        a regular file or too large to keep (the caller streams it)."""
        try:
            st = os.stat(path)
        except OSError:
            self._drop((path, media_type, cache))
            return None
        slot = (path, media_type, cache)
        entry = self._entries.get(slot)
        if entry is not None and entry.key == file_key(st):
            with self._lock:
                if slot in self._entries:  # not dropped by another thread since
                    self._entries.move_to_end(slot)
            return entry
        if st.st_size > self.max_file or not _is_regular(st):
            self._drop(slot)
            return None
        entry = self._read(path, media_type, cache)
        with self._lock:
            old = self._entries.pop(slot, None)
            if old is not None:
                self.total -= old.size
            if entry is not None:
                self._entries[slot] = entry
                self.total += entry.size
                while self.total > self.max_total and self._entries:
                    _slot, evicted = self._entries.popitem(last=False)
                    self.total -= evicted.size
        return entry

    def _read(self, path: str, media_type: str, cache: str) -> CachedFile | None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if st.st_size > self.max_file or not _is_regular(st):
                return None
            chunks, left = [], st.st_size
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    return None  # shorter than its stat said: changed in place; not cached
                chunks.append(chunk)
                left -= len(chunk)
            body = b"".join(chunks)
            if file_key(os.fstat(fd)) != file_key(st):
                return None  # written to while being read
            return CachedFile(file_key(st), body, st, media_type, cache)
        finally:
            os.close(fd)

    def _drop(self, slot: tuple[str, str, str]) -> None:
        if slot in self._entries:
            with self._lock:
                old = self._entries.pop(slot, None)
                if old is not None:
                    self.total -= old.size


def _is_regular(st: os.stat_result) -> bool:
    return stat_module.S_ISREG(st.st_mode)


class StaticFastPath:
    """Pure ASGI, outermost: a GET or HEAD of a static URL that no dynamic route claims, for a
    file the cache holds, is answered here with the precomputed headers (the security headers
    included) and no thread hop; everything else (dynamic URLs, Range requests, large or missing
    files, error bodies, X-Accel-Redirect) goes on to ``app``, which answers as before.

    Whether a dynamic route claims a (method, path) is asked of the routes themselves, as the
    router would, once per route table generation and only for paths the table has."""

    def __init__(self, app: ASGIApp, static: StaticSite, dynamic: Sequence[BaseRoute]) -> None:
        self.app, self.static, self.dynamic = app, static, list(dynamic)
        self.cache = static.cache
        self._generation = -1
        self._claimed: dict[tuple[str, str], bool] = {}
        self._targets: dict[str, str | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not await self._answer(scope, send):
            await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send) -> bool:
        method = scope["method"]
        if (method != "GET" and method != "HEAD") or self.static.accel_prefix:
            return False
        path: str = scope["path"]
        if "?" in path or "#" in path or "\\" in path:
            return False  # Starlette escapes these in request.url.path: leave them to it
        table = self.static.table
        if not table.has_url(path):
            return False
        if table.generation != self._generation:
            self._claimed, self._targets, self._generation = {}, {}, table.generation
        claim = (method, path)  # a path of the table: as many as it has URLs
        claimed = self._claimed.get(claim)
        if claimed is None:
            claimed = self._claimed[claim] = any(r.matches(scope)[0] == Match.FULL for r in self.dynamic)
        if claimed:
            return False  # the dialect answers this URL itself (Qt's session-filtered /app/list)
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"range":
                return False  # Starlette's FileResponse does Range, If-Range, multipart
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        query_string: bytes = scope.get("query_string", b"")
        query = {}
        if query_string:  # as Starlette's QueryParams reads it; the last value of a key wins
            query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
        route = table.lookup(path, query)
        if route is None or route.get("status", 200) != 200:
            return False
        relative: str = route["file"]
        target = self._targets.get(relative, "")
        if target == "":
            target = self._targets[relative] = self.static.target(relative)
        if target is None:
            return False
        cache = IMMUTABLE if relative.startswith(IMMUTABLE_PREFIXES) else REVALIDATE
        entry = self.cache.get(target, route["type"], cache)
        if entry is None:
            return False
        if if_none_match is not None and entry.matches(if_none_match):
            await send({"type": "http.response.start", "status": 304, "headers": entry.not_modified})
            await send({"type": "http.response.body", "body": b""})
            return True
        await send({"type": "http.response.start", "status": 200, "headers": entry.headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else entry.body})
        self.static.answered(relative, method, None)  # no Range reaches this path
        return True

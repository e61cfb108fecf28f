"""The embedded static mount: serves site/ through the builder's route table.

Only URLs in ``site/routes.json`` are served, each from the file and with the media type the
table gives; nothing else under site/ (or outside it) is reachable, whatever the path says. The
table is re-read when the builder replaces it, so a rebuild is visible on the next request.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from builder.build import ROUTES_FILE
from runtime.files import file_response

# Content-addressed trees: a file's name changes when its bytes do, so it may be cached forever.
IMMUTABLE_PREFIXES = ("files/", "assets/")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

RouteKey = tuple[str, tuple[tuple[str, str], ...]]


class RouteTable:
    def __init__(self, site: Path) -> None:
        self.site = site
        self._routes: dict[RouteKey, dict[str, Any]] = {}
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        path = self.site / ROUTES_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            self._routes, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            table = json.loads(path.read_text(encoding="utf-8"))
            routes: dict[RouteKey, dict[str, Any]] = {}
            for route in table["routes"]:
                query = tuple(sorted((route.get("query") or {}).items()))
                routes[(route["url"], query)] = route
            self._routes, self._stamp = routes, stamp

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
            return file_response(
                target,
                route["type"],
                cache_control=cache,
                accel_redirect=(self.accel_prefix + route["file"]) if self.accel_prefix else None,
            )
        except FileNotFoundError:
            return None

    async def endpoint(self, request: Request) -> Response:
        response = self.response(request)
        if response is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return response


def site_exists(site: Path) -> bool:
    return os.path.exists(site / ROUTES_FILE)

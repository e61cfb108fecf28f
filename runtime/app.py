"""The Starlette application: dialect endpoints first, the static site for every other URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from builder.errors import DepotError
from runtime import accesslog
from runtime.config import RuntimeConfig, env_value
from runtime.console import routes as console_routes
from runtime.database import DatabaseError, engine_of
from runtime.dialects import load_dialects
from runtime.downloads import counter_for
from runtime.errors import HANDLERS
from runtime.rebuild import Rebuilder
from runtime.security import SecurityHeaders, connections_that_fit, slow_client_protocol
from runtime.services import Services, services
from runtime.static import StaticFastPath, StaticSite, site_exists
from runtime.storage import Storage
from runtime.trust import timestamp_resigning
from runtime.uploads import RESERVE, free_bytes

log = logging.getLogger("runtime")


async def health(request: Request) -> Response:
    """``{"status": "ok", "database": "ok", "disk": "ok"}``; 503 when a query does not answer
    (``"database": "unavailable"``) or a disk the store writes to has less than the reserve
    uploads keep (``"disk": "out_of_space"``, with the free bytes): a load balancer then sends
    traffic to another node."""
    svc = services(request)
    config = svc.config
    folders = {"data": config.data, "repo": config.repo, "site": config.site}
    free = {name: free_bytes(folder) for name, folder in folders.items() if folder.exists()}
    body: dict[str, object] = {"status": "ok", "database": "ok", "disk": "ok"}
    try:
        await run_in_threadpool(lambda: svc.storage.db.value("SELECT 1"))  # the worker's connection
    except DatabaseError as exc:
        log.error("health check: the database (%s) is unavailable: %s", engine_of(svc.storage.url), exc)
        body.update(status="database_unavailable", database="unavailable")
    if any(value < RESERVE for value in free.values()):
        body.update(status="out_of_space", disk="out_of_space", free_bytes=free)
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


class DepotApp(Starlette):
    """Starlette with the security headers outermost: outside its ServerErrorMiddleware too,
    so a 500 answer carries them like every other. In front of it all, the static fast path
    (runtime.static.StaticFastPath) answers small static files from memory, with the same
    security headers in its precomputed header blocks."""

    static_site: StaticSite | None = None

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = SecurityHeaders(super().build_middleware_stack())
        if self.static_site is None:
            return app
        static = self.static_site
        dynamic = [r for r in self.router.routes if getattr(r, "endpoint", None) != static.endpoint]
        return StaticFastPath(app, static, dynamic)


def make_services(config: RuntimeConfig) -> Services:
    storage = Storage(config.data, config.database_url)
    return Services(
        config=config,
        storage=storage,
        rebuilder=Rebuilder(config.repo, config.site, config.keys, storage.url, config.builds),
        static=StaticSite(config.site, config.accel_redirect_prefix),
    )


async def run_startups(svc: Services) -> None:
    """The dialects' start-up steps (sweeps, recoveries), then a build if one of them changed
    repo/ or there is no site yet. ``depot serve --workers N`` runs this once, in the parent,
    before the workers start; each worker skips it (:func:`app_from_environment`)."""
    changed = False
    for module in load_dialects():
        if not hasattr(module, "startup"):
            continue
        try:
            changed = await run_in_threadpool(module.startup, svc) or changed
        except DepotError as exc:  # a broken depot.toml: serve anyway, the endpoints answer 503
            log.error("a start-up step did not run: %s: %s", type(exc).__name__, exc)
    if svc.config.builds and (changed or not site_exists(svc.config.site)):
        await svc.rebuilder.rebuild()


def start_up_once(config: RuntimeConfig) -> None:
    """:func:`run_startups` outside a server: the parent of ``depot serve --workers N``."""
    accesslog.install()
    svc = make_services(config)
    try:
        asyncio.run(run_startups(svc))
    finally:
        svc.storage.close()


def create_app(config: RuntimeConfig, startup: bool = True) -> Starlette:
    """The application; ``startup=False``: the start-up steps already ran (a worker of
    ``depot serve --workers N``, whose parent ran them once)."""
    accesslog.install()  # no password, secret or download token in uvicorn's access log
    dialects = load_dialects()  # imports the dialects, registering their schemas
    routes: list[BaseRoute] = [route for module in dialects for route in module.routes()]
    svc = make_services(config)
    downloads = counter_for(svc.storage.url)  # every package file served is counted, batched
    svc.static.on_answer = downloads.record_path

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if startup:
            await run_startups(svc)
        try:
            async with timestamp_resigning(config):  # with a key folder: site/tuf/timestamp.json
                yield
        finally:
            await run_in_threadpool(downloads.flush)  # the counts of the last seconds
            svc.storage.close()

    routes = [
        Route("/healthz", health),
        *routes,
        *console_routes(),  # the people's UI over the dialects' services (runtime.console)
        Route("/{path:path}", svc.static.endpoint, methods=["GET", "HEAD"]),
    ]
    app = DepotApp(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan)
    app.state.services = svc
    app.static_site = svc.static
    return app


def app_from_environment() -> Starlette:
    """The application of one worker of ``depot serve --workers N`` (uvicorn's app factory, run
    in each worker process): the store's folders come from ``DEPOT_SERVE_REPO``,
    ``DEPOT_SERVE_SITE`` and ``DEPOT_SERVE_DATA`` and the key folder from ``DEPOT_KEYS``, which
    the parent set; the parent has built and run the start-up steps, so the worker does not."""
    folders = [env_value(name) for name in ("DEPOT_SERVE_REPO", "DEPOT_SERVE_SITE", "DEPOT_SERVE_DATA")]
    if not all(folders):
        raise RuntimeError("app_from_environment is for the workers of depot serve --workers")
    repo, site, data = (Path(folder) for folder in folders)
    config = RuntimeConfig.from_folders(repo, site, data, builds=env_value("DEPOT_SERVE_NO_BUILD") != "1")
    server = config.server
    slow_client_protocol(server.header_timeout, connections_that_fit(server.max_connections))
    return create_app(config, startup=False)

"""The Starlette application: dialect endpoints first, the static site for every other URL."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from builder.errors import DepotError
from runtime import accesslog
from runtime.config import RuntimeConfig
from runtime.dialects import load_dialects
from runtime.errors import HANDLERS
from runtime.rebuild import Rebuilder
from runtime.security import SecurityHeaders
from runtime.services import Services, services
from runtime.static import StaticSite, site_exists
from runtime.storage import Storage
from runtime.trust import timestamp_resigning
from runtime.uploads import RESERVE, free_bytes

log = logging.getLogger("runtime")


async def health(request: Request) -> Response:
    """``{"status": "ok"}``, or 503 ``out_of_space`` with the free bytes when a disk the store
    writes to has less than the reserve uploads keep (a load balancer then sends traffic to
    another node)."""
    config = services(request).config
    folders = {"data": config.data, "repo": config.repo, "site": config.site}
    free = {name: free_bytes(folder) for name, folder in folders.items() if folder.exists()}
    if any(value < RESERVE for value in free.values()):
        return JSONResponse({"status": "out_of_space", "free_bytes": free}, status_code=503)
    return JSONResponse({"status": "ok"})


class DepotApp(Starlette):
    """Starlette with the security headers outermost: outside its ServerErrorMiddleware too,
    so a 500 answer carries them like every other."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def create_app(config: RuntimeConfig) -> Starlette:
    accesslog.install()  # no password, secret or download token in uvicorn's access log
    dialects = load_dialects()  # imports the dialects, registering their schemas
    routes: list[BaseRoute] = [route for module in dialects for route in module.routes()]
    startups = [module.startup for module in dialects if hasattr(module, "startup")]
    svc = Services(
        config=config,
        storage=Storage(config.data),
        rebuilder=Rebuilder(config.repo, config.site, config.keys),
        static=StaticSite(config.site, config.accel_redirect_prefix),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        changed = False
        for startup in startups:
            try:
                changed = await run_in_threadpool(startup, svc) or changed
            except DepotError as exc:  # a broken depot.toml: serve anyway, the endpoints answer 503
                log.error("a start-up step did not run: %s: %s", type(exc).__name__, exc)
        if changed or not site_exists(config.site):
            await svc.rebuilder.rebuild()
        async with timestamp_resigning(config):  # with a key folder: site/tuf/timestamp.json
            yield
        svc.storage.close()

    routes = [
        Route("/healthz", health),
        *routes,
        Route("/{path:path}", svc.static.endpoint, methods=["GET", "HEAD"]),
    ]
    app = DepotApp(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan)
    app.state.services = svc
    return app

"""The Starlette application: dialect endpoints first, the static site for every other URL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from runtime.config import RuntimeConfig
from runtime.dialects import load_dialects
from runtime.errors import HANDLERS
from runtime.rebuild import Rebuilder
from runtime.services import Services
from runtime.static import StaticSite, site_exists
from runtime.storage import Storage


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def dialect_routes() -> list[BaseRoute]:
    return [route for module in load_dialects() for route in module.routes()]


def create_app(config: RuntimeConfig) -> Starlette:
    routes: list[BaseRoute] = dialect_routes()  # imports the dialects, registering their schemas
    svc = Services(
        config=config,
        storage=Storage(config.data),
        rebuilder=Rebuilder(config.repo, config.site),
        static=StaticSite(config.site, config.accel_redirect_prefix),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not site_exists(config.site):
            await svc.rebuilder.rebuild()
        yield
        svc.storage.close()

    routes = [
        Route("/healthz", health),
        *routes,
        Route("/{path:path}", svc.static.endpoint, methods=["GET", "HEAD"]),
    ]
    app = Starlette(routes=routes, exception_handlers=HANDLERS, lifespan=lifespan)
    app.state.services = svc
    return app

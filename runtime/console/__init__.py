"""The store console under ``/console/``: the web UI of the store team, the developers and the
maintainers (docs/console.md). Server-rendered (jinja2), working without script.

It is not a dialect: it speaks no existing client's API. It is the one part of the runtime that
uses every dialect's services, and it calls them, never a second copy of their rules (a review
action here is :mod:`runtime.portal.review`'s, an OTA build switched off is shipper's). Each
role's pages are one module: ``staff``, ``developer``, ``maintainer``, ``stats``; the frame
(sign-in, the guard, the layout) is :mod:`runtime.console.pages`.
"""

from __future__ import annotations

import importlib

from starlette.routing import BaseRoute

from runtime.console.pages import routes as frame_routes

# The modules of the role pages; each has ROUTES. One line per module.
PAGE_MODULES: list[str] = [
    "runtime.console.developer",
    "runtime.console.maintainer",
    "runtime.console.staff",
    "runtime.console.stats",
    "runtime.console.fleet",
]


def routes() -> list[BaseRoute]:
    extra: list[BaseRoute] = []
    for name in PAGE_MODULES:
        extra.extend(importlib.import_module(name).ROUTES)
    return frame_routes(extra)

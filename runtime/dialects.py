"""The registry of dialects' dynamic parts.

Each dialect's runtime side is one package in runtime exposing ``routes() -> list[BaseRoute]``,
and optionally ``startup(services) -> bool``, run once before the app serves (True when it
changed repo/, so the app rebuilds first); if it keeps state it registers its database schema
with ``runtime.storage.register_schema`` at import time. Adding a dialect is one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

DIALECTS: list[str] = ["runtime.qt", "runtime.shipper", "runtime.portal", "runtime.device"]


def load_dialects() -> list[ModuleType]:
    """Import every dialect (registering its schema) and return the modules in order."""
    return [importlib.import_module(name) for name in DIALECTS]

"""What every endpoint shares, and the one way to reach it: :func:`services`.

Endpoints call ``services(request)`` and hand domain code the parts it needs (a database, a
folder, the settings) as arguments; nothing below the endpoints sees a ``Request``. A dialect
that keeps per-process helpers (parsed lists, signers) keeps them in :meth:`Services.dialect`,
built once from the shared services, so a second process rebuilds them from disk and no state
lives only in one process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request

from builder.model import StoreSettings
from builder.settings import SETTINGS_FILE, load_settings
from runtime.config import RuntimeConfig
from runtime.rebuild import Rebuilder
from runtime.static import StaticSite
from runtime.storage import Storage

T = TypeVar("T")


@dataclass
class Services:
    config: RuntimeConfig
    storage: Storage
    rebuilder: Rebuilder
    static: StaticSite
    _settings: tuple[tuple[int, int] | None, StoreSettings] | None = field(default=None, repr=False)
    _dialects: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def settings(self) -> StoreSettings:
        """``repo/depot.toml``, re-read when its size or mtime changes; raises SettingsError
        when it cannot be used (the caller answers in its dialect's shape)."""
        path = self.config.repo / SETTINGS_FILE
        try:
            st = path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if self._settings is None or self._settings[0] != stamp:
                self._settings = (stamp, load_settings(self.config.repo))
            return self._settings[1]

    def dialect(self, name: str, factory: Callable[[Services], T]) -> T:
        """The dialect's per-process helpers, made by ``factory(self)`` on first use."""
        with self._lock:
            existing = self._dialects.get(name)
            if existing is None:
                existing = self._dialects[name] = factory(self)
            made: T = existing
            return made


def services(request: Request) -> Services:
    """The shared services of the application that received ``request``."""
    svc: Services = request.app.state.services
    return svc


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None

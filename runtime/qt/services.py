"""The Qt dialect's per-process helpers, made once from the shared services and reached as
``qt(request)``: the parsed pre-rendered lists, the session store, download links, the store
signer. Everything here can be rebuilt from disk, so any process behind a load balancer has its
own and they agree.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request

from builder.errors import SettingsError
from builder.model import StoreSettings
from runtime.errors import ApiError
from runtime.qt.catalog import QtCatalog
from runtime.qt.session import Sessions
from runtime.qt.signing import SignerCache, StoreSigner
from runtime.services import Services, services
from runtime.signing import ExpiringLinks

SETTINGS_UNUSABLE = "the store's settings (depot.toml) cannot be used; the server log says why"
log = logging.getLogger("runtime.qt")


class QtServices:
    """The Qt dialect's per-process helpers, made once from the shared services."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.config = svc.config
        self.catalog = QtCatalog(svc.config.site)
        self.sessions = Sessions(svc.config.secret_key, svc.storage)
        self.links = ExpiringLinks(svc.config.secret_key, "qt-download")
        self.signers = SignerCache()

    def settings(self) -> StoreSettings:
        """depot.toml, re-read when it changes (maintenance, expiry, categories, vendors).

        When it cannot be used, the request is answered in this dialect's error shape, 503
        ``{"status": "failed", "error": ...}``, never a 500; the problems go to the log, not to
        the client (they may name paths and values of the store's configuration)."""
        try:
            return self.svc.settings()
        except SettingsError as exc:
            log.error("depot.toml cannot be used:\n%s", exc)
            raise ApiError(503, {"status": "failed", "error": SETTINGS_UNUSABLE}) from exc

    def store_signer(self) -> StoreSigner | None:
        """The signer of ``[qt] store_signing_pkcs12``, or None when store signing is off."""
        settings = self.settings()
        if not settings.qt_store_signing_pkcs12:
            return None
        path = Path(settings.qt_store_signing_pkcs12)
        path = path if path.is_absolute() else self.config.data / path
        password = self.config.qt_signing_password or settings.qt_store_signing_password
        return self.signers.get(path, password)


def qt(request: Request) -> QtServices:
    return services(request).dialect("qt", QtServices)

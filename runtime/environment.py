"""Every environment variable the runtime reads, declared once (name, default, help) and read
only through :func:`env_value`; :mod:`runtime.config` turns them into settings. A module of its
own, importing nothing of the runtime, so the storage layer can read ``DEPOT_DATABASE_URL``
without importing the settings that import it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    help: str


ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar(
        "DEPOT_DATABASE_URL",
        "",
        "postgresql://USER@HOST/NAME for several nodes (or sqlite:///PATH); else depot.db in the data folder",
    ),
    EnvVar("DEPOT_SECRET_KEY", "", "signing secret shared by every runtime process; else var/secret.key"),
    EnvVar("DEPOT_ACCEL_REDIRECT", "", "internal nginx prefix of site/ for X-Accel-Redirect downloads"),
    EnvVar("DEPOT_ACCEL_REDIRECT_BUILDS", "", "internal nginx prefix of repo/builds/ for OTA downloads"),
    EnvVar("DEPOT_LOGIN_ACCOUNT_RATE", "10/15minute", "failed password logins per account and address"),
    EnvVar("DEPOT_LOGIN_ADDRESS_RATE", "30/15minute", "failed password logins per client address"),
    EnvVar(
        "DEPOT_LOGIN_ACCOUNT_GLOBAL_RATE",
        "100/day",
        "failed logins per account from addresses it never logged in from (its own are never locked)",
    ),
    EnvVar("DEPOT_SHIPPER_ANON_RATE", "60/minute", "shipper requests without a token, per address"),
    EnvVar("DEPOT_SHIPPER_USER_RATE", "10/second", "shipper requests with a token, per account"),
    EnvVar("DEPOT_DEVICE_REPORT_RATE", "60/minute", "device reports per enrolled device"),
    EnvVar("DEPOT_OTA_TOKEN_DAYS", "90", "days a shippy login token lives after its last use"),
    EnvVar("DEPOT_QT_STORE_SIGNING_PASSWORD", "", "password of the Qt store-signing PKCS#12 file"),
    EnvVar("DEPOT_HEADER_TIMEOUT", "10", "seconds a connection has to send a whole request head"),
    EnvVar("DEPOT_KEEP_ALIVE_TIMEOUT", "5", "seconds an idle kept-alive connection stays open"),
    EnvVar("DEPOT_MAX_CONNECTIONS", "1000", "open connections per depot serve process; beyond, refused"),
    EnvVar("DEPOT_KEYS", "", "key folder that signs site/tuf/ (TUF); else ./keys when it exists"),
    EnvVar("DEPOT_SERVE_REPO", "", "set by depot serve --workers N for its workers: the repo/ folder"),
    EnvVar("DEPOT_SERVE_SITE", "", "set by depot serve --workers N for its workers: the site/ folder"),
    EnvVar("DEPOT_SERVE_DATA", "", "set by depot serve --workers N for its workers: the data folder"),
    EnvVar("DEPOT_SERVE_NO_BUILD", "", "set by depot serve --workers N --no-build for its workers: 1"),
)


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable's value, or its declared default; only declared names may be read."""
    declared = {v.name: v for v in ENVIRONMENT}
    if name not in declared:
        raise KeyError(f"{name} is not declared in runtime.config.ENVIRONMENT")
    return (os.environ if environ is None else environ).get(name, declared[name].default)

"""Runtime settings: the store's folders, the secret it signs with, and the environment.

Every environment variable the runtime reads is declared once in
:data:`runtime.environment.ENVIRONMENT` (name, default, help; re-exported here), the way
:mod:`builder.settings` declares ``depot.toml``; the rest of the runtime reads them only
through :class:`RuntimeConfig`, which reads the environment once at start-up. A value that
does not parse stops the start with a message naming the variable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.atomic import fsync_dir, write_temp
from builder.errors import SettingsError
from runtime.database import database_url, make_data_folder
from runtime.environment import ENVIRONMENT, EnvVar, env_value

__all__ = ["ENVIRONMENT", "EnvVar", "Limits", "RuntimeConfig", "ServerLimits", "env_value"]
from runtime.ratelimit import Rate

SECRET_FILE = "secret.key"
# A signing key anyone could guess lets them forge download links and session cookies: the
# generated key has 64 characters, and a key from the environment must have at least 32 bytes.
MIN_SECRET_BYTES = 32
MAKE_A_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def env_rate(name: str, environ: Mapping[str, str] | None = None) -> Rate | None:
    try:
        return Rate.parse(env_value(name, environ))
    except ValueError as exc:
        raise SettingsError(f"environment variable {name}: {exc}") from exc


def env_days(name: str, environ: Mapping[str, str] | None = None) -> int:
    text = env_value(name, environ)
    if not text.isdigit() or not 0 < int(text) <= 3650:
        raise SettingsError(f"environment variable {name} must be a number of days, 1 to 3650, not {text!r}")
    return int(text)


@dataclass(frozen=True)
class Limits:
    """Request and login limits; None disables one ("off")."""

    login_account: Rate | None = None  # per (account, address)
    login_address: Rate | None = None
    login_account_global: Rate | None = None
    shipper_anon: Rate | None = None
    shipper_user: Rate | None = None
    device_report: Rate | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        return cls(
            login_account=env_rate("DEPOT_LOGIN_ACCOUNT_RATE", environ),
            login_address=env_rate("DEPOT_LOGIN_ADDRESS_RATE", environ),
            login_account_global=env_rate("DEPOT_LOGIN_ACCOUNT_GLOBAL_RATE", environ),
            shipper_anon=env_rate("DEPOT_SHIPPER_ANON_RATE", environ),
            shipper_user=env_rate("DEPOT_SHIPPER_USER_RATE", environ),
            device_report=env_rate("DEPOT_DEVICE_REPORT_RATE", environ),
        )


def env_number(name: str, environ: Mapping[str, str] | None = None, *, minimum: float = 1) -> float:
    value = env_value(name, environ)
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number >= minimum:  # also refuses nan
        raise SettingsError(f"environment variable {name}: {value!r} is not a number of at least {minimum:g}")
    return number


@dataclass(frozen=True)
class ServerLimits:
    """What one ``depot serve`` process lets clients hold (uvicorn's settings, with
    :func:`runtime.security.uvicorn_limits`): production runs behind nginx, which has its own."""

    header_timeout: float = 10.0
    keep_alive_timeout: int = 5
    max_connections: int = 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerLimits:
        return cls(
            header_timeout=env_number("DEPOT_HEADER_TIMEOUT", environ, minimum=0.1),
            keep_alive_timeout=int(env_number("DEPOT_KEEP_ALIVE_TIMEOUT", environ)),
            max_connections=int(env_number("DEPOT_MAX_CONNECTIONS", environ, minimum=8)),
        )


@dataclass(frozen=True)
class RuntimeConfig:
    repo: Path
    site: Path
    data: Path
    secret_key: str
    max_upload_bytes: int = 5 * 1024**3
    # When set, downloads are handed to nginx with X-Accel-Redirect under this internal prefix
    # (for example "/_depot_site/") instead of being streamed by Python.
    accel_redirect_prefix: str = ""
    accel_redirect_builds: str = ""  # the same for repo/builds/ (counted OTA downloads)
    qt_signing_password: str = ""
    limits: Limits = field(default_factory=Limits.from_env)
    server: ServerLimits = field(default_factory=ServerLimits.from_env)
    ota_token_days: int = 90
    # The key folder that signs site/tuf/ (builder.trust): the rebuilds sign with it and a
    # background task signs the timestamp again before it expires. None: no signed metadata.
    keys: Path | None = None
    # The database (runtime.database); left out (a config made by hand, in tests), it is
    # DEPOT_DATABASE_URL, else depot.db in the data folder, as from_folders resolves it.
    database_url: str = ""
    # False: ``depot serve --no-build``, a node that serves site/ as another node builds it.
    builds: bool = True

    def __post_init__(self) -> None:
        if not self.database_url:
            url = database_url(self.data, env_value("DEPOT_DATABASE_URL"))
            object.__setattr__(self, "database_url", url)  # frozen: resolved once, here

    @classmethod
    def from_folders(
        cls,
        repo: Path,
        site: Path,
        data: Path,
        keys: Path | None = None,
        database: str | None = None,
        builds: bool = True,
    ) -> RuntimeConfig:
        """``keys``: the key folder (``depot serve --keys``); when not given, ``DEPOT_KEYS``,
        else ``./keys`` when that folder exists. ``database``: ``depot serve --database``; when
        not given, ``DEPOT_DATABASE_URL``, else SQLite in the data folder."""
        make_data_folder(data)
        if keys is None:
            keys = Path(env_value("DEPOT_KEYS") or "keys")
            if not keys.is_dir() and not env_value("DEPOT_KEYS"):
                keys = None
        return cls(
            repo=repo.resolve(),
            site=site.resolve(),
            data=data.resolve(),
            secret_key=load_secret_key(data),
            accel_redirect_prefix=env_value("DEPOT_ACCEL_REDIRECT"),
            accel_redirect_builds=env_value("DEPOT_ACCEL_REDIRECT_BUILDS"),
            qt_signing_password=env_value("DEPOT_QT_STORE_SIGNING_PASSWORD"),
            limits=Limits.from_env(),
            server=ServerLimits.from_env(),
            ota_token_days=env_days("DEPOT_OTA_TOKEN_DAYS"),
            keys=keys.resolve() if keys is not None else None,
            database_url=database_url(data, database or env_value("DEPOT_DATABASE_URL")),
            builds=builds,
        )


def load_secret_key(data: Path) -> str:
    """``DEPOT_SECRET_KEY`` if set, else a key generated once and kept in the data folder.

    Several runtime processes behind one load balancer must share the key: set the variable,
    or share the data folder."""
    from_env = env_value("DEPOT_SECRET_KEY")
    if from_env:
        size = len(from_env.encode())
        if size < MIN_SECRET_BYTES:
            raise SettingsError(
                f"environment variable DEPOT_SECRET_KEY is {size} bytes long; a signing key needs at"
                f" least {MIN_SECRET_BYTES} (make one with {MAKE_A_KEY}, or unset the variable to use"
                f" {data / SECRET_FILE})"
            )
        return from_env
    path = data / SECRET_FILE
    if not path.exists():
        # Written to a temporary file, then linked into place: link() fails if the name exists,
        # so of two processes starting at once on an empty data folder exactly one key wins and
        # both read it.
        tmp = write_temp(path, secrets.token_urlsafe(48).encode())
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
            fsync_dir(data)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if len(key.encode()) < MIN_SECRET_BYTES:
        raise SettingsError(
            f"{path} holds a key of {len(key.encode())} bytes; a signing key needs at least"
            f" {MIN_SECRET_BYTES} (delete the file to have one generated)"
        )
    return key

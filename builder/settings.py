"""Read ``repo/depot.toml`` into :class:`StoreSettings`.

A missing file gives the defaults, so an empty folder is a valid (empty) store. A file that
exists but does not parse is an error: publishing a store without its settings would silently
drop categories, devices and policies.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from builder.errors import SettingsError
from builder.model import (
    Category,
    DevicePlatform,
    OtaDevice,
    OtaVariant,
    StoreSettings,
    Vendor,
)

SETTINGS_FILE = "depot.toml"

# shipper's default SHIPPER_FILE_NAME_FORMAT (2.43.0), applied with re.search, for names like
# Bliss-v14-bullhead-OFFICIAL-gapps-20200608.zip (the unescaped "." before zip is shipper's).
DEFAULT_OTA_PATTERN = (
    r"[A-Za-z]+-(?P<version>[a-z0-9.]+)-(?P<codename>[A-Za-z0-9_]+)-OFFICIAL-(?P<variant>[a-z]+)"
    r"-(?P<date>[0-9]{8}).zip"
)


def load_settings(repo: Path) -> StoreSettings:
    path = repo / SETTINGS_FILE
    if not path.exists():
        return StoreSettings(ota_filename_pattern=DEFAULT_OTA_PATTERN)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    except OSError as exc:  # a folder, or a file we may not read: say so, not a traceback
        raise SettingsError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return parse_settings(raw)
    except KeyError as exc:
        raise SettingsError(f"{path}: an entry lacks the required key {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise TypeError(f"[{key}] must be a table")
    return value


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    """A TOML boolean; a string such as "false" is an error, not a truthy value."""
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false, not {value!r}")
    return value


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise TypeError(f"{key} must be a list")
    return value


def parse_settings(raw: dict[str, Any]) -> StoreSettings:
    store = _table(raw, "store")
    qt = _table(raw, "qt")
    ota = _table(raw, "ota")
    categories = tuple(
        Category(id=i, name=str(c["name"]), icon=str(c.get("icon", "")))
        for i, c in enumerate(_list(qt, "categories"), start=1)
    )
    vendors = tuple(Vendor(id=str(v["id"]), name=str(v.get("name", v["id"]))) for v in _list(qt, "vendors"))
    devices = tuple(
        OtaDevice(
            codename=str(d["codename"]),
            name=str(d.get("name", d["codename"])),
            manufacturer=str(d.get("manufacturer", "")),
            maintained=_bool(d, "maintained", True),
            note=str(d.get("note", "")),
            visible=_bool(d, "visible", True),
            romtype=str(d.get("romtype", "")),
        )
        for d in _list(ota, "devices")
    )
    variants = tuple(
        OtaVariant(codename=str(v["codename"]), description=str(v.get("description", "")))
        for v in _list(ota, "variants")
    )
    platforms = tuple(
        DevicePlatform(name=str(p["name"]), description=str(p.get("description", "")))
        for p in _list(_table(raw, "device"), "platforms")
    )
    allowed = tuple(str(v) for v in ota.get("allowed_versions", ["*"]))
    x86_types = tuple(
        OtaVariant(codename=str(v["codename"]), description=str(v.get("description", "")))
        for v in _list(ota, "x86_types")
    )
    return StoreSettings(
        name=str(store.get("name", "Depot")),
        description=str(store.get("description", "")),
        qt_platform=str(qt.get("platform", "NEPTUNE3")),
        qt_api_version=int(qt.get("api_version", 2)),
        maintenance=_bool(qt, "maintenance", False),
        download_expiry=int(qt.get("download_expiry", 600)),
        purchase_requires_device_id=_bool(qt, "purchase_requires_device_id", True),
        categories=categories,
        vendors=vendors,
        ota_devices=devices,
        ota_variants=variants,
        ota_filename_pattern=str(ota.get("filename_pattern", DEFAULT_OTA_PATTERN)),
        ota_allowed_versions=allowed,
        ota_x86_types=x86_types,
        ota_base_url=str(ota.get("base_url", "")).rstrip("/"),
        platforms=platforms,
        raw=raw,
    )

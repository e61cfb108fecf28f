"""Read ``repo/depot.toml`` into :class:`StoreSettings`.

A missing file gives the defaults, so an empty folder is a valid (empty) store. A file that
exists but does not parse is an error: publishing a store without its settings would silently
drop categories, devices and policies.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from depot.builder.model import (
    Category,
    DevicePlatform,
    OtaDevice,
    OtaVariant,
    StoreSettings,
    Vendor,
)

SETTINGS_FILE = "depot.toml"

# shipper's default: lineage-17.1-20200402-UNOFFICIAL-bullhead.zip style names
DEFAULT_OTA_PATTERN = (
    r"^lineage-(?P<version>[0-9.]+)-(?P<date>\d{8})-UNOFFICIAL-(?P<codename>[\w]+)"
    r"(?:-(?P<variant>[\w]+))?\.zip$"
)


class SettingsError(ValueError):
    """depot.toml exists but cannot be used; the message names the problem."""


def load_settings(repo: Path) -> StoreSettings:
    path = repo / SETTINGS_FILE
    if not path.exists():
        return StoreSettings(ota_filename_pattern=DEFAULT_OTA_PATTERN)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    try:
        return parse_settings(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise TypeError(f"[{key}] must be a table")
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
            maintained=bool(d.get("maintained", True)),
            note=str(d.get("note", "")),
            visible=bool(d.get("visible", True)),
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
    return StoreSettings(
        name=str(store.get("name", "Depot")),
        description=str(store.get("description", "")),
        qt_platform=str(qt.get("platform", "NEPTUNE3")),
        qt_api_version=int(qt.get("api_version", 2)),
        maintenance=bool(qt.get("maintenance", False)),
        download_expiry=int(qt.get("download_expiry", 600)),
        purchase_requires_device_id=bool(qt.get("purchase_requires_device_id", True)),
        categories=categories,
        vendors=vendors,
        ota_devices=devices,
        ota_variants=variants,
        ota_filename_pattern=str(ota.get("filename_pattern", DEFAULT_OTA_PATTERN)),
        ota_allowed_versions=allowed,
        platforms=platforms,
        raw=raw,
    )

"""The device index: what a robot on a given platform can install.

Layout (schema in docs/device-index.md)::

    device/index.json               entry: store name and every platform's index, with its
                                    size and SHA-256 so a device can verify what it fetched
    device/<platform>/index.json    every module and firmware of the platform, newest first

Download URLs are relative to the index that names them, so the same tree works from any host,
mirror, sub-path or CDN.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable
from functools import cache
from typing import Any

from depot.builder.model import Catalog, Firmware, Module
from depot.builder.publish import INDEX, PAGE, Output
from depot.builder.renderers import RenderContext, fingerprint, json_bytes

SCHEMA = 1
JSON = "application/json"


def relative_url(from_file: str, to_file: str) -> str:
    return posixpath.relpath(to_file, posixpath.dirname(from_file) or ".")


def _version_entry(index_path: str, item: Module | Firmware) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "version": item.version,
        "filename": item.blob.filename,
        "url": relative_url(index_path, item.blob.site_path),
        "size": item.blob.size,
        "sha256": item.blob.sha256,
    }
    if isinstance(item, Module):
        entry["unpacked_size"] = item.unpacked_size
    return entry


def _package_entries(index_path: str, by_name: dict[str, list[Any]]) -> list[dict[str, Any]]:
    entries = []
    for name, versions in by_name.items():
        newest = versions[0]
        entry: dict[str, Any] = {
            "name": name,
            "latest_version": newest.version,
            "description": newest.description,
            "versions": [_version_entry(index_path, v) for v in versions],
        }
        if isinstance(newest, Module):
            entry["optional"] = newest.optional
        entries.append(entry)
    return entries


def platform_index_path(platform: str) -> str:
    return f"device/{platform}/index.json"


def render(catalog: Catalog, ctx: RenderContext) -> Iterable[Output]:
    modules = catalog.modules_by_platform()
    firmware = catalog.firmware_by_platform()
    descriptions = {p.name: p.description for p in catalog.settings.platforms}
    platforms: list[tuple[str, str, Any]] = []  # (platform, fingerprint, body)
    for platform in catalog.platforms():
        path = platform_index_path(platform)
        mods = modules.get(platform, {})
        fws = firmware.get(platform, {})
        digests = [r.digest for versions in (*mods.values(), *fws.values()) for r in versions]
        fp = fingerprint("device-platform", platform, descriptions.get(platform, ""), *digests)
        body = cache(
            lambda path=path, platform=platform, mods=mods, fws=fws: json_bytes(
                {
                    "schema": SCHEMA,
                    "platform": platform,
                    "description": descriptions.get(platform, ""),
                    "modules": _package_entries(path, mods),
                    "firmware": _package_entries(path, fws),
                }
            )
        )
        platforms.append((platform, fp, body))
        yield Output(path=path, fingerprint=fp, media_type=JSON, tier=PAGE, render=body)

    def entry() -> bytes:
        return json_bytes(
            {
                "schema": SCHEMA,
                "store": catalog.settings.name,
                "platforms": [
                    {
                        "name": p,
                        "description": descriptions.get(p, ""),
                        "url": relative_url("device/index.json", platform_index_path(p)),
                        "size": len(body()),
                        "sha256": hashlib.sha256(body()).hexdigest(),
                    }
                    for p, _fp, body in platforms
                ],
            }
        )

    # The entry's bytes follow from the platform files' bytes, so their fingerprints cover it.
    entry_fp = fingerprint(
        "device-entry",
        catalog.settings.name,
        *(f"{p}:{descriptions.get(p, '')}:{fp}" for p, fp, _ in platforms),
    )
    yield Output(path="device/index.json", fingerprint=entry_fp, media_type=JSON, tier=INDEX, render=entry)

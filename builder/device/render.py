"""The device index: what a robot on a given platform can install.

Layout (schema in docs/device-index.md)::

    device/index.json                    entry: store name and every platform's index, with its
                                         size and SHA-256 so a device can verify what it fetched
    device/<platform>/index.<fp>.json    every module and firmware of the platform, newest first;
                                         the file the entry names, never rewritten in place
    device/<platform>/index.json         the same bytes under a stable name, for people and tools
                                         that do not start from the entry

The entry names the platform index by a name derived from its inputs' fingerprint, so a reader
that holds an entry (old or new) always finds the very bytes the entry states: the new platform
file is published before the entry that names it, and the old one stays (``retain``) for three
newer generations and an hour after the new entry replaced the old (builder.publish.RETAIN_*),
so a reader that fetched the previous entry just before a build still finds what it names.
Rewriting one mutable file that the entry checks by SHA-256 would leave, between the two
renames (or after a build killed there), an entry whose stated SHA-256 does not match the file
it names.

Download URLs are relative to the index that names them, so the same tree works from any host,
mirror, sub-path or CDN.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache
from typing import Any

from builder.model import Catalog, Firmware, Module
from builder.publish import INDEX, PAGE, Output
from builder.render import RenderContext, fingerprint, json_bytes, site_relpath

SCHEMA = 1
JSON = "application/json"


def relative_url(from_file: str, to_file: str) -> str:
    return site_relpath(from_file, to_file)


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
    if item.rollout.staged:
        # Only a staged version states its rule: an index without rollouts keeps its bytes.
        rollout = item.rollout
        entry["rollout"] = {"share": rollout.share, "groups": list(rollout.groups), "paused": rollout.paused}
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
    """The platform index's stable name (what people and the web catalog link to)."""
    return f"device/{platform}/index.json"


def pinned_index_path(platform: str, fp: str) -> str:
    """The immutable name of one version of a platform index: the one the entry names."""
    return f"device/{platform}/index.{fp[:16]}.json"


def render(catalog: Catalog, ctx: RenderContext) -> Iterable[Output]:
    modules = catalog.modules_by_platform()
    firmware = catalog.firmware_by_platform()
    descriptions = {p.name: p.description for p in catalog.settings.platforms}
    platforms: list[tuple[str, str, Any]] = []  # (platform, fingerprint, body)
    # Both files of a platform have the same bytes: their URLs are relative to the same folder.
    for platform in catalog.platforms():
        path = platform_index_path(platform)
        mods = modules.get(platform, {})
        fws = firmware.get(platform, {})
        digests = [r.digest for vs in mods.values() for r in vs]
        digests += [r.digest for vs in fws.values() for r in vs]
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
        pinned = pinned_index_path(platform, fp)
        yield Output(path=pinned, fingerprint=fp, media_type=JSON, tier=PAGE, render=body, retain=True)
        yield Output(path=path, fingerprint=fp, media_type=JSON, tier=PAGE, render=body)

    published = ctx.extras.get("published")

    def size_sha(platform: str, fp: str, body: Any) -> tuple[int, str]:
        # A platform index the last build published from the same fingerprint has the same
        # bytes: take its size and SHA-256 from the manifest instead of rendering it again.
        known = published(pinned_index_path(platform, fp), fp) if published else None
        return known or (len(body()), hashlib.sha256(body()).hexdigest())

    def entry() -> bytes:
        rows = []
        for p, fp, body in platforms:
            size, sha = size_sha(p, fp, body)
            rows.append(
                {
                    "name": p,
                    "description": descriptions.get(p, ""),
                    "url": relative_url("device/index.json", pinned_index_path(p, fp)),
                    "size": size,
                    "sha256": sha,
                }
            )
        return json_bytes({"schema": SCHEMA, "store": catalog.settings.name, "platforms": rows})

    # The entry's bytes follow from the platform files' bytes, so their fingerprints cover it.
    entry_fp = fingerprint(
        "device-entry",
        catalog.settings.name,
        *(f"{p}:{descriptions.get(p, '')}:{fp}" for p, fp, _ in platforms),
    )
    yield Output(path="device/index.json", fingerprint=entry_fp, media_type=JSON, tier=INDEX, render=entry)

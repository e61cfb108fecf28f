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
import json
from typing import Any

from builder.model import Firmware, Module, Record, StoreSettings
from builder.publish import INDEX, PAGE, Output
from builder.render import (
    Fragment,
    Part,
    RenderContext,
    Renderer,
    fingerprint,
    json_bytes,
    json_fragment,
    json_with_lists,
    site_relpath,
)
from builder.versions import version_key

SCHEMA = 1
JSON = "application/json"
ENTRY = "entry"
MODULE, FIRMWARE = "module", "firmware"


def relative_url(from_file: str, to_file: str) -> str:
    return site_relpath(from_file, to_file)


def platform_index_path(platform: str) -> str:
    """The platform index's stable name (what people and the web catalog link to)."""
    return f"device/{platform}/index.json"


def pinned_index_path(platform: str, fp: str) -> str:
    """The immutable name of one version of a platform index: the one the entry names."""
    return f"device/{platform}/index.{fp[:16]}.json"


def newest_first(versions: list[Any]) -> list[Any]:
    """A package's versions as every index lists them: newest first, then by file."""
    return sorted(versions, key=lambda r: (version_key(r.version), r.blob.path), reverse=True)


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


def _package_entry(index_path: str, name: str, versions: list[Any]) -> dict[str, Any]:
    newest = versions[0]
    entry: dict[str, Any] = {
        "name": name,
        "latest_version": newest.version,
        "description": newest.description,
        "versions": [_version_entry(index_path, v) for v in versions],
    }
    if isinstance(newest, Module):
        entry["optional"] = newest.optional
    return entry


def _target(platform: str) -> str:
    return "platform:" + platform


class DeviceIndex(Renderer):
    """Parts: one per (platform, module or firmware, name), each the package's entry in its
    platform index. Targets: one per platform (its two files) and the entry (level 2)."""

    name = "device"

    def parts(self, record: Record, settings: StoreSettings) -> list[str]:
        if isinstance(record, Module | Firmware):
            kind = MODULE if isinstance(record, Module) else FIRMWARE
            return [json.dumps([record.platform, kind, record.name])]
        return []

    def render_part(self, part: str, records: list[Record], ctx: RenderContext) -> Part:
        platform, kind, name = json.loads(part)
        entry = _package_entry(platform_index_path(platform), name, newest_first(records))
        return Part(fragments=[Fragment(_target(platform), f"{kind}\n{name}", json_fragment(entry))])

    def fixed_targets(self, settings: StoreSettings) -> list[str]:
        return [ENTRY, *(_target(p.name) for p in settings.platforms)]

    def level(self, target: str) -> int:
        return 2 if target == ENTRY else 1

    def assemble(self, target: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        settings = ctx.settings
        descriptions = {p.name: p.description for p in settings.platforms}
        if target == ENTRY:
            rows = [json.loads(f.data) for f in fragments]
            body = json_bytes({"schema": SCHEMA, "store": settings.name, "platforms": rows})
            fp = fingerprint("device-entry", hashlib.sha256(body).hexdigest())
            return Part(
                outputs=[
                    Output(
                        path="device/index.json",
                        fingerprint=fp,
                        media_type=JSON,
                        tier=INDEX,
                        render=lambda: body,
                    )
                ]
            )
        platform = target.removeprefix("platform:")
        lists: dict[str, list[str]] = {MODULE + "s": [], FIRMWARE: []}
        for f in fragments:
            kind = f.order.split("\n", 1)[0]
            lists[MODULE + "s" if kind == MODULE else FIRMWARE].append(f.data)
        description = descriptions.get(platform, "")
        body = json_with_lists({"schema": SCHEMA, "platform": platform, "description": description}, lists)
        sha = hashlib.sha256(body).hexdigest()
        fp = fingerprint("device-platform", sha)
        pinned = pinned_index_path(platform, fp)
        # Both files of a platform have the same bytes: their URLs are relative to one folder.
        # The pinned one is named by its content and kept a while after the entry stops naming
        # it (retain), for readers of an older entry.
        outputs = [
            Output(
                path=pinned,
                fingerprint=fp,
                media_type=JSON,
                tier=PAGE,
                render=lambda: body,
                retain=True,
                sha256=sha,
            ),
            Output(
                path=platform_index_path(platform),
                fingerprint=fp,
                media_type=JSON,
                tier=PAGE,
                render=lambda: body,
                sha256=sha,
            ),
        ]
        declared = [p.name for p in settings.platforms]
        order = f"0{declared.index(platform):06d}" if platform in declared else "1" + platform
        row = {
            "name": platform,
            "description": description,
            "url": relative_url("device/index.json", pinned),
            "size": len(body),
            "sha256": sha,
        }
        return Part(outputs=outputs, fragments=[Fragment(ENTRY, order, json.dumps(row, sort_keys=True))])

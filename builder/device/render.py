"""The device index: what a robot on a given platform can install.

Layout (schema 2, docs/device-index.md)::

    device/index.json                    entry: the store's name and, per platform, its shards,
                                         each with its URL, size and SHA-256 so a device can
                                         verify what it fetched
    device/<platform>/<b>.<fp>.json      the modules and firmware of one platform whose names
                                         fall in bucket <b> (a hex digit of their SHA-256), each
                                         with its versions, newest first; named by its content,
                                         never rewritten in place

Why shards: at 100,000 modules one platform index is megabytes that every added module would
rewrite, hash and send to every device again. Split by a hash of the name into ``SHARDS``
files, an added module rewrites one sixteenth of its platform and the entry, and a device
that keeps its shards needs to refetch only those whose SHA-256 changed. A module's bucket is
a function of its name alone, so a device that wants one module can fetch its shard only.

The entry names each shard by a name derived from its content, so a reader that holds an entry
(old or new) always finds the very bytes the entry states: a new shard is published before the
entry that names it, and the old one stays (``retain``) for three newer generations and an hour
after the entry stopped naming it (builder.publish.RETAIN_*), so a reader that fetched the
previous entry just before a build still finds what it names.

Download URLs are relative to the shard that names them, so the same tree works from any host,
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

SCHEMA = 2
SHARDS = 16  # buckets per platform: a hex digit; see bucket_of
JSON = "application/json"
ENTRY = "entry"
MODULE, FIRMWARE = "module", "firmware"
SHARD = "shard:"


def relative_url(from_file: str, to_file: str) -> str:
    return site_relpath(from_file, to_file)


def bucket_of(name: str) -> str:
    """A module's or firmware's shard: the first hex digit of the SHA-256 of its name (what a
    device computes to fetch one package's shard only; docs/device-index.md)."""
    return f"{hashlib.sha256(name.encode()).digest()[0] >> 4:x}"


def shard_path(platform: str, bucket: str, fp: str) -> str:
    """The immutable name of one version of a platform's shard: the one the entry names."""
    return f"device/{platform}/{bucket}.{fp[:16]}.json"


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


def _target(platform: str, bucket: str) -> str:
    return f"{SHARD}{platform}/{bucket}"


def _platform_order(settings: StoreSettings, platform: str) -> str:
    """Declared platforms first, in their order, then the others by name."""
    declared = [p.name for p in settings.platforms]
    return f"0{declared.index(platform):06d}" if platform in declared else "1" + platform


class DeviceIndex(Renderer):
    """Parts: one per (platform, module or firmware, name), each the package's entry in its
    platform's shard. Targets: one per (platform, bucket), the shard, and the entry (level 2),
    which lists every platform's shards."""

    name = "device"

    def parts(self, record: Record, settings: StoreSettings) -> list[str]:
        if isinstance(record, Module | Firmware):
            kind = MODULE if isinstance(record, Module) else FIRMWARE
            return [json.dumps([record.platform, kind, record.name])]
        return []

    def render_part(self, part: str, records: list[Record], ctx: RenderContext) -> Part:
        platform, kind, name = json.loads(part)
        # every shard of a platform is in device/<platform>/: the links are the same from each
        entry = _package_entry(f"device/{platform}/shard.json", name, newest_first(records))
        target = _target(platform, bucket_of(name))
        return Part(fragments=[Fragment(target, f"{kind}\n{name}", json_fragment(entry))])

    def fixed_targets(self, settings: StoreSettings) -> list[str]:
        return [ENTRY]  # a declared platform without packages is in the entry with no shards

    def level(self, target: str) -> int:
        return 2 if target == ENTRY else 1

    def assemble(self, target: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        if target == ENTRY:
            return self._entry(fragments, ctx.settings)
        platform, bucket = target.removeprefix(SHARD).split("/")
        lists: dict[str, list[str]] = {MODULE + "s": [], FIRMWARE: []}
        for f in fragments:
            kind = f.order.split("\n", 1)[0]
            lists[MODULE + "s" if kind == MODULE else FIRMWARE].append(f.data)
        body = json_with_lists({"schema": SCHEMA, "platform": platform, "shard": bucket}, lists)
        sha = hashlib.sha256(body).hexdigest()
        fp = fingerprint("device-shard", sha)
        path = shard_path(platform, bucket, fp)
        # Named by its content and kept a while after the entry stops naming it (retain), for
        # readers of an older entry.
        out = Output(
            path=path,
            fingerprint=fp,
            media_type=JSON,
            tier=PAGE,
            render=lambda: body,
            retain=True,
            sha256=sha,
        )
        row = {
            "platform": platform,
            "shard": bucket,
            "url": relative_url("device/index.json", path),
            "size": len(body),
            "sha256": sha,
        }
        order = f"{_platform_order(ctx.settings, platform)}\n{bucket}"
        return Part(outputs=[out], fragments=[Fragment(ENTRY, order, json.dumps(row, sort_keys=True))])

    def _entry(self, fragments: list[Fragment], settings: StoreSettings) -> Part:
        descriptions = {p.name: p.description for p in settings.platforms}
        shards: dict[str, list[dict[str, Any]]] = {p.name: [] for p in settings.platforms}
        for f in fragments:  # in platform order, then by bucket
            row = json.loads(f.data)
            shards.setdefault(row.pop("platform"), []).append(row)
        names = sorted(shards, key=lambda name: _platform_order(settings, name))
        platforms = [
            {"name": name, "description": descriptions.get(name, ""), "shards": shards[name]}
            for name in names
        ]
        body = json_bytes({"schema": SCHEMA, "store": settings.name, "platforms": platforms})
        fp = fingerprint("device-entry", hashlib.sha256(body).hexdigest())
        out = Output(
            path="device/index.json", fingerprint=fp, media_type=JSON, tier=INDEX, render=lambda: body
        )
        return Part(outputs=[out])

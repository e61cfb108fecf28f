"""The device index (schema 2, docs/device-index.md) read the way a device reads it.

A device fetches the entry ``device/index.json``, finds its platform, fetches every shard the
entry lists for it (checking each one's size and SHA-256) and merges their modules and
firmware. These helpers do that from a site folder on disk or over HTTP, so a test that wants
"what a platform offers" does not repeat it. The merged dict has the shape of a shard without
its bucket, ``{"platform": P, "modules": [...], "firmware": [...]}``, each list sorted by name;
its version URLs are relative to the shards, which are all in ``device/<platform>/``.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin

ENTRY = "device/index.json"
ENTRY_URL = "/" + ENTRY


class Getter(Protocol):
    """Anything with ``get(url)`` answering an httpx-like response: httpx, httpx.Client, a
    Starlette TestClient."""

    def get(self, url: str, **kwargs: Any) -> Any: ...


def device_bucket(name: str) -> str:
    """A package's shard by the documented rule (docs/device-index.md, "Buckets"): the first hex
    digit of the SHA-256 of its name. Computed here, not taken from the builder, so the tests
    check the builder's shards against what a device computes."""
    return hashlib.sha256(name.encode()).hexdigest()[0]


def read_entry(site: Path) -> dict[str, Any]:
    return json.loads((site / ENTRY).read_bytes())


def platform_line(entry: dict[str, Any], platform: str) -> dict[str, Any]:
    """The entry's line of ``platform`` (KeyError when the entry does not list it)."""
    for line in entry["platforms"]:
        if line["name"] == platform:
            return line
    raise KeyError(f"the entry lists no platform {platform!r}")


def shard_file(row: dict[str, Any]) -> str:
    """The site-relative path of a shard the entry lists (its URL is relative to the entry)."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(ENTRY), row["url"]))


def shard_files(site: Path, platform: str, entry: dict[str, Any] | None = None) -> list[str]:
    """The site-relative paths of the shards the entry (by default the one on disk) lists for
    ``platform``, in the entry's order."""
    entry = entry if entry is not None else read_entry(site)
    return [shard_file(row) for row in platform_line(entry, platform)["shards"]]


def current_shards(site: Path, entry: dict[str, Any] | None = None) -> set[str]:
    """Every shard file the entry lists, of every platform."""
    entry = entry if entry is not None else read_entry(site)
    return {shard_file(row) for line in entry["platforms"] for row in line["shards"]}


def check_shard(platform: str, row: dict[str, Any], data: bytes) -> dict[str, Any]:
    """``data`` parsed, after checking it is the shard ``row`` of the entry states: its size,
    SHA-256, platform and bucket, and that every package in it belongs to that bucket."""
    assert (len(data), hashlib.sha256(data).hexdigest()) == (row["size"], row["sha256"]), (
        f"shard {row['url']} does not have the size and SHA-256 the entry states"
    )
    shard = json.loads(data)
    assert shard["schema"] == 2, row["url"]
    assert (shard["platform"], shard["shard"]) == (platform, row["shard"]), row["url"]
    for package in shard["modules"] + shard["firmware"]:
        assert device_bucket(package["name"]) == row["shard"], f"{package['name']} is in the wrong shard"
    return shard


def merge(platform: str, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """The modules and firmware of a platform's shards in one dict, each list sorted by name."""
    modules = sorted((m for s in shards for m in s["modules"]), key=lambda m: m["name"])
    firmware = sorted((f for s in shards for f in s["firmware"]), key=lambda f: f["name"])
    return {"platform": platform, "modules": modules, "firmware": firmware}


def platform_packages(site: Path, platform: str, entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``platform`` offers, read from the entry (by default the one on disk) and the shards
    it names in ``site``, each verified against the entry."""
    entry = entry if entry is not None else read_entry(site)
    rows = platform_line(entry, platform)["shards"]
    shards = [check_shard(platform, row, (site / shard_file(row)).read_bytes()) for row in rows]
    return merge(platform, shards)


def fetch_platform(
    client: Getter, platform: str, entry_url: str = ENTRY_URL
) -> tuple[dict[str, Any], list[str]]:
    """What ``platform`` offers, fetched over HTTP as a device does: the entry at ``entry_url``,
    then each shard it lists, verified against the entry. Returns the merged packages and the
    shards' URLs (a version's ``url`` is relative to any of them: see :func:`download_url`)."""
    entry_response = client.get(entry_url)
    assert entry_response.status_code == 200, (entry_url, entry_response.status_code)
    rows = platform_line(entry_response.json(), platform)["shards"]
    urls = [urljoin(entry_url, row["url"]) for row in rows]
    shards = []
    for row, url in zip(rows, urls, strict=True):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        shards.append(check_shard(platform, row, response.content))
    return merge(platform, shards), urls


def download_url(shard_url: str, version: dict[str, Any]) -> str:
    """The absolute (or host-relative) URL of a version named by the shard at ``shard_url``."""
    return urljoin(shard_url, version["url"])


def package(packages: dict[str, Any], name: str, kind: str = "modules") -> dict[str, Any]:
    """One module (or firmware, ``kind="firmware"``) of a merged platform by name."""
    return next(p for p in packages[kind] if p["name"] == name)

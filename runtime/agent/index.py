"""The store's device index, fetched over HTTP like any device would, verified, cached on disk.

The entry ``device/index.json`` names each platform's index with its size and SHA-256; the
platform index names every module and firmware version with its download URL (relative to the
index), size and SHA-256. Entries whose name or version could not safely become a path on the
device, or whose URL is on another origin than the store's (and its mirrors'), are dropped with
a warning instead of being trusted. Both documents are read with caps on the bytes received
and inflated (``max_entry_index``, ``max_platform_index``), and the platform index never past
the size the entry states.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx

from builder.atomic import atomic_write
from builder.versions import version_key
from runtime.agent.config import AgentConfig, valid_name, valid_version
from runtime.agent.net import ForeignOriginError, Origins, TooLargeError, open_get, read_capped
from runtime.agent.rollout import Rule
from runtime.agent.trust import TargetMismatchError, TrustedStore, TrustError, target_path

if TYPE_CHECKING:
    from tuf.ngclient import Updater

log = logging.getLogger("runtime.agent")
ENTRY = "device/index.json"


class StoreIndexError(Exception):
    """The store's index could not be fetched or does not verify."""


@dataclass(frozen=True)
class Release:
    """One downloadable version of a module or firmware image."""

    name: str
    version: str
    url: str  # absolute
    size: int
    sha256: str
    unpacked_size: int | None = None
    rule: Rule | None = None  # the staged rollout it is in, if any (runtime.agent.rollout)


@dataclass(frozen=True)
class Package:
    name: str
    latest_version: str
    optional: bool | None  # firmware has no such flag
    description: str
    releases: tuple[Release, ...]  # newest first

    def release(self, version: str) -> Release | None:
        return next((r for r in self.releases if r.version == version), None)


@dataclass
class StoreIndex:
    platform: str
    modules: dict[str, Package]
    firmware: dict[str, Package]

    @classmethod
    def empty(cls, platform: str = "") -> StoreIndex:
        return cls(platform, {}, {})


def _packages(entries: Any, base: str, origins: Origins | None) -> dict[str, Package]:
    packages: dict[str, Package] = {}
    for entry in entries if isinstance(entries, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not valid_name(name):
            log.warning("index: skipping a package with an unusable name %r", name)
            continue
        releases = []
        for v in entry.get("versions") or []:
            try:
                release = Release(
                    name=name,
                    version=v["version"],
                    url=urljoin(base, v["url"]),
                    size=int(v["size"]),
                    sha256=str(v["sha256"]).lower(),
                    unpacked_size=int(v["unpacked_size"]) if v.get("unpacked_size") is not None else None,
                    rule=Rule.parse(v.get("rollout")),
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("index: skipping a malformed version of %s", name)
                continue
            if not valid_version(release.version) or len(release.sha256) != 64 or release.size < 0:
                log.warning(
                    "index: skipping %s version %r: unusable version or checksum", name, release.version
                )
                continue
            if origins is not None and not origins.allows(release.url):
                log.warning(
                    "index: skipping %s version %s: its URL %s is not on the store's origin",
                    name,
                    release.version,
                    release.url[:300],
                )
                continue
            releases.append(release)
        if not releases:
            continue
        releases.sort(key=lambda r: version_key(r.version), reverse=True)
        packages[name] = Package(
            name=name,
            latest_version=releases[0].version,
            optional=bool(entry["optional"]) if "optional" in entry else None,
            description=str(entry.get("description", "")),
            releases=tuple(releases),
        )
    return packages


def parse_platform_index(data: Any, url: str, platform: str, origins: Origins | None = None) -> StoreIndex:
    """The index's packages; with ``origins``, versions whose URL is elsewhere are dropped."""
    if not isinstance(data, dict):
        raise StoreIndexError(f"{url} is not a JSON object")
    return StoreIndex(
        platform,
        _packages(data.get("modules"), url, origins),
        _packages(data.get("firmware"), url, origins),
    )


def _get(client: httpx.Client, config: AgentConfig, url: str, limits: tuple[int, int], what: str) -> bytes:
    """One index document: only from an allowed origin, at most ``limits`` (bytes received,
    bytes inflated), gzip decoded here."""
    deadline = time.monotonic() + max(4 * config.timeout, 60.0)
    with open_get(client, url, config.origins, {"Accept-Encoding": "gzip"}, what) as response:
        if response.status_code != 200:
            raise StoreIndexError(f"{url} answered {response.status_code}")
        received, inflated = limits
        return read_capped(response, inflated, f"{what} {url}", deadline, received_limit=received)


def _choose(entry: Any, config: AgentConfig) -> tuple[str, dict[str, Any], int]:
    """The platform this agent follows, its line of the entry, and the size the line states."""
    platforms = entry.get("platforms") or []
    wanted = config.platform or (platforms[0].get("name") if platforms else None)
    if not isinstance(wanted, str):
        raise StoreIndexError("the store's device index names no platform")
    chosen = next((p for p in platforms if p.get("name") == wanted), None)
    if chosen is None:
        raise StoreIndexError(f"the store publishes no index for platform {wanted!r}")
    size = chosen.get("size")
    if not isinstance(size, int) or size < 0:
        raise StoreIndexError(f"{ENTRY} states no size for the {wanted} index")
    if size > config.max_platform_index:
        raise StoreIndexError(
            f"{ENTRY} says the {wanted} index is {size} bytes, more than the limit of "
            f"{config.max_platform_index}"
        )
    return wanted, chosen, size


def trusted_store(config: AgentConfig) -> TrustedStore | None:
    """The store's TUF metadata, when this agent was given a trusted root."""
    if config.trusted_root is None:
        return None
    return TrustedStore(config.store, config.tuf, config.trusted_root, config.origins, config.timeout)


def fetch_index(config: AgentConfig) -> StoreIndex:
    """Fetch the entry, pick the platform, fetch and verify its index, cache it; raises
    StoreIndexError. With a trusted root, through the store's signed metadata only."""
    entry_url = urljoin(config.store, ENTRY)
    store = trusted_store(config)
    if store is not None:
        url, wanted, data, updater = _fetch_signed(config, store, entry_url)
        index = _signed_releases(parse_platform_index(data, url, wanted, config.origins), config, updater)
    else:
        url, wanted, data = _fetch_unsigned(config, entry_url)
        index = parse_platform_index(data, url, wanted, config.origins)
    atomic_write(config.index_cache, json.dumps({"url": url, "platform": wanted, "index": data}).encode())
    return index


def _fetch_unsigned(config: AgentConfig, entry_url: str) -> tuple[str, str, Any]:
    try:
        with httpx.Client(timeout=config.timeout, follow_redirects=False) as client:
            cap = config.max_entry_index
            entry = json.loads(_get(client, config, entry_url, (cap, cap), "the device index"))
            wanted, chosen, size = _choose(entry, config)
            url = urljoin(entry_url, chosen["url"])
            # never inflated past what the entry says: a bigger answer cannot match anyway
            body = _get(client, config, url, (config.max_platform_index, size), "the platform index")
    except (ForeignOriginError, TooLargeError) as exc:
        raise StoreIndexError(str(exc)) from exc
    except httpx.HTTPError as exc:
        raise StoreIndexError(f"cannot reach the store: {exc}") from exc
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise StoreIndexError(f"the store's device index is malformed: {exc}") from exc
    if len(body) != size or hashlib.sha256(body).hexdigest() != chosen.get("sha256"):
        raise StoreIndexError(f"{url} does not match the size and SHA-256 that {ENTRY} states")
    try:
        return url, wanted, json.loads(body)
    except ValueError as exc:
        raise StoreIndexError(f"{url} is not JSON: {exc}") from exc


def _fetch_signed(config: AgentConfig, store: TrustedStore, entry_url: str) -> tuple[str, str, Any, Updater]:
    """The entry and the platform index as targets of the verified TUF metadata. The entry has
    a stable name that every build rewrites: a build published between the metadata and the
    entry makes their hashes disagree, so that one case is tried once more with fresh metadata."""
    for attempt in (1, 2):
        try:
            updater = store.refresh()
            entry = json.loads(store.fetch(updater, ENTRY, config.max_entry_index))
            wanted, chosen, _size = _choose(entry, config)
            url = urljoin(entry_url, chosen["url"])
            path = target_path((config.store,), url)
            if path is None:
                raise StoreIndexError(f"{ENTRY} names the {wanted} index outside the store: {url[:300]}")
            data = json.loads(store.fetch(updater, path, config.max_platform_index))
            return url, wanted, data, updater
        except TargetMismatchError as exc:
            if attempt == 2:
                raise StoreIndexError(str(exc)) from exc
            log.info("index: %s; the store published meanwhile, trying once more", exc)
        except TrustError as exc:
            raise StoreIndexError(str(exc)) from exc
        except (ValueError, AttributeError, KeyError, TypeError) as exc:
            raise StoreIndexError(f"the store's device index is malformed: {exc}") from exc
    raise AssertionError("unreachable")


def _signed_releases(index: StoreIndex, config: AgentConfig, updater: Updater) -> StoreIndex:
    """Only the releases the verified targets metadata names with the same length and SHA-256
    (the platform index it vouched for says so too, unless the store is broken)."""

    def signed(packages: dict[str, Package]) -> dict[str, Package]:
        kept: dict[str, Package] = {}
        for name, package in packages.items():
            releases = []
            for release in package.releases:
                path = target_path((config.store, *config.mirrors), release.url)
                try:
                    if path is None:
                        raise TrustError(f"{release.url[:300]} is not below the store's URL")
                    expected = TrustedStore.expected(updater, path)
                except TrustError as exc:
                    log.warning("index: skipping %s %s: %s", name, release.version, exc)
                    continue
                if (expected.length, expected.sha256) != (release.size, release.sha256):
                    log.warning(
                        "index: skipping %s %s: the signed metadata states another length or SHA-256",
                        name,
                        release.version,
                    )
                    continue
                releases.append(release)
            if releases:
                kept[name] = Package(
                    name, releases[0].version, package.optional, package.description, tuple(releases)
                )
        return kept

    return StoreIndex(index.platform, signed(index.modules), signed(index.firmware))


def cached_index(config: AgentConfig) -> StoreIndex | None:
    """The last index that verified, so the device works offline after a restart."""
    try:
        cached = json.loads(Path(config.index_cache).read_bytes())
        return parse_platform_index(cached["index"], cached["url"], cached["platform"], config.origins)
    except (OSError, ValueError, KeyError, TypeError, StoreIndexError):
        return None

"""The store's device index, fetched over HTTP like any device would, verified, cached on disk.

The entry ``device/index.json`` (schema 2, docs/device-index.md) lists, per platform, the
platform's shards: each with its URL (relative to the entry), size and SHA-256. A shard holds
the modules and firmware of the platform whose names fall in its bucket, each version with its
download URL (relative to the shard), size and SHA-256. The agent fetches the entry, chooses
its platform, fetches every shard the entry lists for it (over one HTTP client, so one
keep-alive connection), verifies each one's size and SHA-256 before parsing it, and merges
them. A schema 1 entry (an older Depot: one platform index per platform, named by the
platform's line with its URL, size and SHA-256) is read as one shard; an entry of a schema
above ``MAX_SCHEMA`` is refused, since what it means is unknown to this agent.

Entries whose name or version could not safely become a path on the device, or whose URL is
on another origin than the store's (and its mirrors'), are dropped with a warning instead of
being trusted. Everything is read with caps: the entry on the bytes received and inflated
(``max_entry_index``); a platform's shards on their number (``max_shards``), on the sizes the
entry states for them together (``max_platform_index``, checked before any shard is fetched),
and each one on the bytes received (what is left of ``max_platform_index`` across the
platform's shards) and inflated (never past the size the entry states for it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
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
MAX_SCHEMA = 2  # the newest device index schema this agent reads
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class StoreIndexError(Exception):
    """The store's index could not be fetched or does not verify."""


class ShardMismatchError(StoreIndexError):
    """A shard's bytes disagree with the size or SHA-256 the entry states for it: the store
    published meanwhile (or is broken); the whole fetch is tried once more."""


@dataclass(frozen=True)
class Shard:
    """One document the entry names for the chosen platform: a shard (schema 2) or the whole
    platform index (schema 1)."""

    url: str  # absolute
    size: int
    sha256: str  # lower case
    what: str  # for messages: "shard 5 of the pi64 index", "the pi64 index"


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


def _packages(entries: Any, base: str, origins: Origins | None, taken: set[str]) -> dict[str, Package]:
    """The usable packages of one list; ``taken``: the names already listed (by this list or an
    earlier shard's), which are skipped (see merge_shards), and to which this list's are added."""
    packages: dict[str, Package] = {}
    for entry in entries if isinstance(entries, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not valid_name(name):
            log.warning("index: skipping a package with an unusable name %r", name)
            continue
        if name in taken:
            log.warning(
                "index: %s is listed more than once (again in %s); the first is kept", name, base[:300]
            )
            continue
        taken.add(name)
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
    """The packages of one shard (or schema 1 platform index) at ``url``, their URLs resolved
    against it; with ``origins``, versions whose URL is elsewhere are dropped."""
    return merge_shards([(url, data)], platform, origins)


def merge_shards(docs: list[tuple[str, Any]], platform: str, origins: Origins | None = None) -> StoreIndex:
    """One platform's packages from its shards, ``(url, parsed JSON)`` in the entry's order (by
    bucket); each version's URL is resolved against the shard that names it.

    A name listed twice (in two shards, or twice in one) is a malformed store: a name's bucket
    is a function of the name alone. The first one, in bucket order, is kept and a warning
    logged, rather than the whole index refused: as with every other malformed package line,
    a fault in one package must not take the whole store away from the device (a refused
    index keeps the device on its last one, hiding every later fix too). The first rather than
    either, so that every device reads the same store the same way; the first line counts even
    when none of its versions is usable, so a later shard cannot take a name over that way.
    With signed metadata both copies are vouched for by the store's keys: neither is forged."""
    modules: dict[str, Package] = {}
    firmware: dict[str, Package] = {}
    taken_modules: set[str] = set()
    taken_firmware: set[str] = set()
    for url, data in docs:
        if not isinstance(data, dict):
            raise StoreIndexError(f"{url} is not a JSON object")
        named = data.get("platform", platform)
        if named != platform:
            raise StoreIndexError(f"{url} is an index of platform {str(named)[:100]!r}, not of {platform}")
        modules.update(_packages(data.get("modules"), url, origins, taken_modules))
        firmware.update(_packages(data.get("firmware"), url, origins, taken_firmware))
    return StoreIndex(platform, modules, firmware)


def _get(
    client: httpx.Client, config: AgentConfig, url: str, limits: tuple[int, int], what: str
) -> tuple[bytes, int]:
    """One index document and the bytes received for it: only from an allowed origin, at most
    ``limits`` (bytes received, bytes inflated), gzip decoded here."""
    deadline = time.monotonic() + max(4 * config.timeout, 60.0)
    with open_get(client, url, config.origins, {"Accept-Encoding": "gzip"}, what) as response:
        if response.status_code != 200:
            raise StoreIndexError(f"{url} answered {response.status_code}")
        received, inflated = limits
        body = read_capped(response, inflated, f"{what} {url}", deadline, received_limit=received)
        return body, response.num_bytes_downloaded


def _schema(entry: Any) -> int:
    """The entry's schema; StoreIndexError for one this agent cannot read."""
    if not isinstance(entry, dict):
        raise StoreIndexError(f"{ENTRY} is not a JSON object")
    schema = entry.get("schema", 1)  # a schema 1 entry without the field is read as before
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise StoreIndexError(f"{ENTRY} states no usable schema: {str(schema)[:40]!r}")
    if schema > MAX_SCHEMA:
        # A newer format may mean other rules for what the device must check: never guessed.
        raise StoreIndexError(
            f"the store's device index is schema {schema}; this agent reads up to {MAX_SCHEMA}"
        )
    return schema


def _choose(entry: dict[str, Any], config: AgentConfig) -> tuple[str, dict[str, Any]]:
    """The platform this agent follows and its line of the entry."""
    platforms = entry.get("platforms") or []
    wanted = config.platform or (platforms[0].get("name") if platforms else None)
    if not isinstance(wanted, str):
        raise StoreIndexError("the store's device index names no platform")
    chosen = next((p for p in platforms if p.get("name") == wanted), None)
    if chosen is None:
        raise StoreIndexError(f"the store publishes no index for platform {wanted!r}")
    return wanted, chosen


def _shard_label(wanted: str, row: Any, number: int) -> str:
    bucket = row.get("shard") if isinstance(row, dict) else None
    if isinstance(bucket, str) and re.fullmatch(r"[0-9A-Za-z]{1,8}", bucket):
        return f"shard {bucket} of the {wanted} index"
    return f"shard #{number} of the {wanted} index"


def _plan(entry: Any, entry_url: str, config: AgentConfig) -> tuple[str, list[Shard]]:
    """The platform this agent follows and the documents the entry names for it, each checked
    before anything is fetched: a usable URL on an allowed origin, a size and a SHA-256, at
    most ``max_shards`` of them, their sizes together at most ``max_platform_index``. Raises
    StoreIndexError (or ForeignOriginError)."""
    schema = _schema(entry)
    wanted, chosen = _choose(entry, config)
    if schema == 1:  # an older Depot: the platform's line names its one platform index
        rows: list[Any] = [chosen]
        labels = [f"the {wanted} index"]
    else:
        shards = chosen.get("shards")
        if not isinstance(shards, list):
            raise StoreIndexError(f"{ENTRY} lists no shards for the {wanted} index")
        if len(shards) > config.max_shards:
            raise StoreIndexError(
                f"{ENTRY} lists {len(shards)} shards for the {wanted} index, more than the limit "
                f"of {config.max_shards}"
            )
        rows = shards
        labels = [_shard_label(wanted, row, n) for n, row in enumerate(rows, 1)]
    planned = []
    for row, what in zip(rows, labels, strict=True):
        if not isinstance(row, dict):
            raise StoreIndexError(f"{ENTRY} has a malformed line for {what}")
        size, sha256, url = row.get("size"), row.get("sha256"), row.get("url")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise StoreIndexError(f"{ENTRY} states no size for {what}")
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            raise StoreIndexError(f"{ENTRY} states no SHA-256 for {what}")
        if not isinstance(url, str) or not url:
            raise StoreIndexError(f"{ENTRY} states no URL for {what}")
        planned.append(Shard(urljoin(entry_url, url), size, sha256.lower(), what))
    total = sum(shard.size for shard in planned)
    if total > config.max_platform_index:
        parts = f" in {len(planned)} shards" if schema > 1 else ""
        raise StoreIndexError(
            f"{ENTRY} says the {wanted} index is {total} bytes{parts}, more than the limit of "
            f"{config.max_platform_index}"
        )
    for shard in planned:  # all of them before any is fetched
        config.origins.check(shard.url, shard.what)
    return wanted, planned


def _verified(shard: Shard, body: bytes) -> Any:
    """The shard's JSON, once its bytes are the ones the entry states."""
    if len(body) != shard.size or hashlib.sha256(body).hexdigest() != shard.sha256:
        raise ShardMismatchError(
            f"{shard.url} ({shard.what}) does not match the size and SHA-256 that {ENTRY} states"
        )
    return _json(shard, body)


def _json(shard: Shard, body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise StoreIndexError(f"{shard.url} is not JSON: {exc}") from exc


def trusted_store(config: AgentConfig) -> TrustedStore | None:
    """The store's TUF metadata, when this agent was given a trusted root."""
    if config.trusted_root is None:
        return None
    return TrustedStore(config.store, config.tuf, config.trusted_root, config.origins, config.timeout)


def fetch_index(config: AgentConfig) -> StoreIndex:
    """Fetch the entry, pick the platform, fetch and verify its shards, merge and cache them;
    raises StoreIndexError. With a trusted root, through the store's signed metadata only."""
    entry_url = urljoin(config.store, ENTRY)
    store = trusted_store(config)
    if store is not None:
        wanted, docs, index = _fetch_signed(config, store, entry_url)
    else:
        wanted, docs = _fetch_unsigned(config, entry_url)
        index = merge_shards(docs, wanted, config.origins)
    # The cache's own format (whatever the entry's schema was): what re-parsing needs offline.
    cache = {"schema": 2, "platform": wanted, "shards": [{"url": url, "index": data} for url, data in docs]}
    atomic_write(config.index_cache, json.dumps(cache).encode())
    return index


def _fetch_unsigned(config: AgentConfig, entry_url: str) -> tuple[str, list[tuple[str, Any]]]:
    """The platform and its shards' ``(url, JSON)``. Shards are named by their content, so one
    that does not match the entry was most likely replaced by a build published between the
    entry and it (or the store is broken): the whole fetch is tried once more, from the entry."""
    for attempt in (1, 2):
        try:
            return _fetch_unsigned_once(config, entry_url)
        except ShardMismatchError as exc:
            if attempt == 2:
                raise
            log.info("index: %s; the store published meanwhile, trying once more", exc)
    raise AssertionError("unreachable")


def _fetch_unsigned_once(config: AgentConfig, entry_url: str) -> tuple[str, list[tuple[str, Any]]]:
    try:
        # one client for the entry and every shard: one keep-alive connection
        with httpx.Client(timeout=config.timeout, follow_redirects=False) as client:
            cap = config.max_entry_index
            body, _received = _get(client, config, entry_url, (cap, cap), "the device index")
            wanted, shards = _plan(json.loads(body), entry_url, config)
            budget = config.max_platform_index  # bytes received, across the platform's shards
            docs = []
            for shard in shards:
                # never inflated past what the entry says: a bigger answer cannot match anyway
                data, received = _get(client, config, shard.url, (budget, shard.size), shard.what)
                budget -= received
                docs.append((shard.url, _verified(shard, data)))
            return wanted, docs
    except (ForeignOriginError, TooLargeError) as exc:
        raise StoreIndexError(str(exc)) from exc
    except httpx.HTTPError as exc:
        raise StoreIndexError(f"cannot reach the store: {exc}") from exc
    except (ValueError, AttributeError, KeyError, TypeError, httpx.InvalidURL) as exc:
        raise StoreIndexError(f"the store's device index is malformed: {exc}") from exc


def _fetch_signed(
    config: AgentConfig, store: TrustedStore, entry_url: str
) -> tuple[str, list[tuple[str, Any]], StoreIndex]:
    """The entry and every shard as targets of the verified TUF metadata, and the index of the
    releases it vouches for. The entry has a stable name that every build rewrites: a build
    published between the metadata and the entry makes their hashes disagree, so that one case
    (any target that disagrees with the metadata) is tried once more with fresh metadata."""
    for attempt in (1, 2):
        try:
            # one client for the metadata, the entry and every shard: one keep-alive connection
            with httpx.Client(timeout=config.timeout, follow_redirects=False) as client:
                updater = store.refresh(client)
                entry = json.loads(store.fetch(updater, ENTRY, config.max_entry_index))
                wanted, shards = _plan(entry, entry_url, config)
                docs = []
                for shard in shards:
                    path = target_path((config.store,), shard.url)
                    if path is None:
                        raise StoreIndexError(
                            f"{ENTRY} names {shard.what} outside the store: {shard.url[:300]}"
                        )
                    expected = TrustedStore.expected(updater, path)
                    if (expected.length, expected.sha256) != (shard.size, shard.sha256):
                        # both are vouched for by the same metadata: a broken store, not a race
                        raise StoreIndexError(
                            f"{ENTRY} states another size or SHA-256 for {path} than the store's "
                            "signed metadata; not trusted"
                        )
                    # at most the size both state: ngclient checks length and SHA-256 again
                    docs.append((shard.url, _json(shard, store.fetch(updater, path, shard.size))))
                index = _signed_releases(merge_shards(docs, wanted, config.origins), config, updater)
                return wanted, docs, index
        except TargetMismatchError as exc:
            if attempt == 2:
                raise StoreIndexError(str(exc)) from exc
            log.info("index: %s; the store published meanwhile, trying once more", exc)
        except (TrustError, ForeignOriginError) as exc:
            raise StoreIndexError(str(exc)) from exc
        except (ValueError, AttributeError, KeyError, TypeError) as exc:
            raise StoreIndexError(f"the store's device index is malformed: {exc}") from exc
    raise AssertionError("unreachable")


def _signed_releases(index: StoreIndex, config: AgentConfig, updater: Updater) -> StoreIndex:
    """Only the releases the verified targets metadata names with the same length and SHA-256
    (the shard it vouched for says so too, unless the store is broken)."""

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
    """The last index that verified, so the device works offline after a restart; None for
    anything unreadable, and for a cache of another platform than ``--platform``."""
    try:
        cached = json.loads(Path(config.index_cache).read_bytes())
        platform = cached["platform"]
        if not isinstance(platform, str) or (config.platform and platform != config.platform):
            return None
        if "shards" in cached:
            docs = [(shard["url"], shard["index"]) for shard in cached["shards"]]
        else:  # written by an agent before schema 2: one platform index
            docs = [(cached["url"], cached["index"])]
        if not all(isinstance(url, str) for url, _data in docs):
            return None
        return merge_shards(docs, platform, config.origins)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StoreIndexError):
        return None

"""The route table, sharded: every static URL → its file, media type, query and status.

DESIGN section 2: the runtime's static mount and the generated nginx configuration both read
one table. At a hundred thousand packages one file of every route is megabytes that a build
would rewrite for each added package, so the table is split by a hash of the URL into
``SHARDS`` files, and a small entry names them::

    routes.json          {"schema": 2, "shards": [{"file": "routes/07.json", "sha256": "…"}, …]}
    routes/<bb>.json     {"routes": [{"url", "file", "type"[, "query"][, "status"]}, …],
                          "schema": 2}

A change rewrites the shards of the URLs it adds or drops and the entry; shards come before the
entry (the publisher's tiers), so an entry never names a shard that is not there. A reader that
keeps the table in memory reloads only the shards whose SHA-256 the entry changed
(:class:`ShardedTable`). Rows are sorted by URL and query inside a shard; an empty shard is no
file. Neither the entry nor the shards are routes themselves: nothing serves them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

ROUTES_FILE = "routes.json"
SHARD_FOLDER = "routes"
SCHEMA = 2
SHARDS = 256  # ~540 rows each at 100,000 packages: a shard costs a millisecond or two to rewrite


# The content address in a file's URL: a package file's folders (files/<2 hex>/<14 hex>/) and a
# content-named file's infix (device/pi64/5.a859f9cf8e7ccc33.json, assets/style.<16 hex>.css).
_CONTENT_ADDRESS = re.compile(r"(?<=^/files/)[0-9a-f]{2}/[0-9a-f]{14}/|\.[0-9a-f]{16}(?=\.[A-Za-z0-9]+$)")


def route_group(url: str) -> str:
    """A URL without its content address: the old and the new bytes of one file share it (a
    replaced package keeps its file name, a platform's shard its bucket), so their rows share a
    shard and a change rewrites one shard of the table, not one for each name."""
    return _CONTENT_ADDRESS.sub("", url)


def bucket_of(url: str) -> str:
    """The shard of a URL: two hex digits, 00 to ff, from its :func:`route_group`. Readers load
    every shard the entry names, so the rule is the builder's alone and may change with it."""
    return f"{hashlib.sha256(route_group(url).encode()).digest()[0] * SHARDS // 256:02x}"


def shard_path(bucket: str) -> str:
    return f"{SHARD_FOLDER}/{bucket}.json"


def route_row(
    url: str, file: str, media_type: str, query: dict[str, str] | None = None, status: int | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {"url": url, "file": file, "type": media_type}
    if query:
        row["query"] = query
    if status and status != 200:
        row["status"] = status
    return row


def _sort_key(row: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    return row["url"], sorted(row["query"].items()) if "query" in row else []


def shard_bytes(rows: list[dict[str, Any]]) -> bytes:
    """A shard's bytes: compact JSON (the C encoder), rows in URL order."""
    rows = sorted(rows, key=_sort_key)
    table = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f'{{"routes":{table},"schema":{SCHEMA}}}\n'.encode()


def entry_bytes(shards: list[tuple[str, str]]) -> bytes:
    """The entry's bytes from (bucket, SHA-256 of the shard) of every shard."""
    rows = [{"file": shard_path(bucket), "sha256": sha} for bucket, sha in sorted(shards)]
    return (
        json.dumps({"schema": SCHEMA, "shards": rows}, sort_keys=True, separators=(",", ":")) + "\n"
    ).encode()


def load_routes(site: Path) -> list[dict[str, Any]]:
    """Every route of ``site`` (what ``depot nginx`` and the benchmarks read). Raises
    FileNotFoundError when the site has no route table."""
    entry = json.loads((site / ROUTES_FILE).read_text(encoding="utf-8"))
    if "routes" in entry:  # a site published before the table was sharded (schema 1)
        return list(entry["routes"])
    rows: list[dict[str, Any]] = []
    for shard in entry["shards"]:
        rows.extend(json.loads((site / shard["file"]).read_text(encoding="utf-8"))["routes"])
    return rows


class ShardedTable:
    """A reader's copy of the table that follows the builder: :meth:`refresh` re-reads the entry
    when its size or mtime changed, and then only the shards whose SHA-256 changed. Returns
    whether anything changed. Not thread-safe: the caller holds its own lock."""

    def __init__(self, site: Path) -> None:
        self.site = site
        self._stamp: tuple[int, int] | None = None
        self._shards: dict[str, tuple[str, list[dict[str, Any]]]] = {}  # file → (sha256, rows)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for _sha, rows in self._shards.values() for row in rows]

    def refresh(self) -> bool:
        path = self.site / ROUTES_FILE
        try:
            st = os.stat(path)
        except FileNotFoundError:
            changed = self._stamp is not None
            self._stamp, self._shards = None, {}
            return changed
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        entry = json.loads(path.read_bytes())
        if "routes" in entry:  # schema 1: one file
            self._shards = {ROUTES_FILE: ("", list(entry["routes"]))}
        else:
            shards: dict[str, tuple[str, list[dict[str, Any]]]] = {}
            settled = True
            for shard in entry["shards"]:
                known = self._shards.get(shard["file"])
                if known is not None and known[0] == shard["sha256"]:
                    shards[shard["file"]] = known
                    continue
                try:
                    data = (self.site / shard["file"]).read_bytes()
                except FileNotFoundError:  # emptied by a newer build: its entry will say so
                    settled = False
                    continue
                sha = hashlib.sha256(data).hexdigest()
                # A newer build replaced the shard after we read the entry: its rows are newer
                # still, so use them, and read the entry again on the next refresh.
                settled = settled and sha == shard["sha256"]
                shards[shard["file"]] = (sha, json.loads(data)["routes"])
            self._shards = shards
            if not settled:
                return True
        self._stamp = stamp
        return True

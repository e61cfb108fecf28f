"""A site folder whose route table is written by hand in builder.routes' format, the way the
builder publishes it: the shards a change touched are renamed into place first, then the entry
(with an mtime no file had before), then the shards it no longer names are deleted; or the
schema-1 single file of sites published before the table was sharded."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from builder.routes import (
    ROUTES_FILE,
    SHARD_FOLDER,
    bucket_of,
    entry_bytes,
    route_row,
    shard_bytes,
    shard_path,
)

# A device index shard (schema 2; a made-up fingerprint in its name) and the entry that names
# it by its size and SHA-256.
DEVICE_SHARD_FILE = "device/pi64/5.0f3c2a4b5d6e7f80.json"
DEVICE_SHARD = b'{"firmware":[],"modules":[{"name":"ax"}],"platform":"pi64","schema":2,"shard":"5"}\n'
_SHARD_ROW = {
    "shard": "5",
    "url": DEVICE_SHARD_FILE.removeprefix("device/"),
    "size": len(DEVICE_SHARD),
    "sha256": hashlib.sha256(DEVICE_SHARD).hexdigest(),
}
_ENTRY = {"platforms": [{"name": "pi64", "shards": [_SHARD_ROW]}], "schema": 2}
DEVICE_ENTRY = json.dumps(_ENTRY, sort_keys=True, separators=(",", ":")).encode() + b"\n"

# A few files of every kind the table serves: pages (one under a folder URL), JSON indexes, a
# content-addressed package file, a query-string variant and a static error body (404).
FILES: dict[str, bytes] = {
    "index.html": b"<!doctype html><title>home</title>\n",
    "search.json": b'{"modules":[]}\n',
    "device/index.json": DEVICE_ENTRY,
    DEVICE_SHARD_FILE: DEVICE_SHARD,
    "modules/pi64/index.html": b"<!doctype html><title>pi64</title>\n",
    "category/list.json": b'[{"id":1,"name":"All"}]\n',
    "category/list.2.json": b'[{"id":2,"name":"Tools"}]\n',
    "errors/no-builds.json": b'{"message":"No builds exist for the specified variant yet!"}\n',
    "files/3f/3f2a.bin": bytes(range(256)) * 8,
}
ROWS: list[dict[str, Any]] = [
    route_row("/index.html", "index.html", "text/html"),
    route_row("/search.json", "search.json", "application/json"),
    route_row("/device/index.json", "device/index.json", "application/json"),
    route_row("/" + DEVICE_SHARD_FILE, DEVICE_SHARD_FILE, "application/json"),
    route_row("/modules/pi64/index.html", "modules/pi64/index.html", "text/html"),
    route_row("/category/list", "category/list.json", "application/json"),
    route_row("/category/list", "category/list.2.json", "application/json", query={"category_id": "2"}),
    route_row("/api/v1/updater/los/angler/vanilla", "errors/no-builds.json", "application/json", status=404),
    route_row("/files/3f/3f2a.bin", "files/3f/3f2a.bin", "application/octet-stream"),
]


_last_mtime_ns = 0


def bump_mtime(path: Path) -> None:
    """An mtime later than any this module gave before (a coarse filesystem clock could give
    two writes of one second the same one; tests.support.repos.bump_mtime does the same)."""
    global _last_mtime_ns
    st = path.stat()
    _last_mtime_ns = max(_last_mtime_ns, st.st_mtime_ns) + 1_000_003
    os.utime(path, ns=(st.st_atime_ns, _last_mtime_ns))


def write_atomic(path: Path, data: bytes, new_mtime: bool = False) -> None:
    """``data`` renamed over ``path`` (a temp file first: a reader sees the old or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    if new_mtime:
        bump_mtime(temp)
    os.replace(temp, path)


def write_files(site: Path, files: dict[str, bytes] = FILES) -> None:
    for rel, data in files.items():
        write_atomic(site / rel, data)


def buckets_of(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    buckets: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        buckets.setdefault(bucket_of(row["url"]), []).append(row)
    return buckets


def publish_table(site: Path, rows: list[dict[str, Any]]) -> set[str]:
    """The sharded table of ``rows``, published over whatever table ``site`` has; returns the
    shard files it wrote (those whose bytes changed) and deleted."""
    buckets = buckets_of(rows)
    shards = {shard_path(bucket): shard_bytes(part) for bucket, part in buckets.items()}
    touched = set()
    for rel, data in shards.items():
        path = site / rel
        if not path.exists() or path.read_bytes() != data:
            write_atomic(path, data)
            touched.add(rel)
    entry = [(bucket, sha256(shards[shard_path(bucket)])) for bucket in buckets]
    write_atomic(site / ROUTES_FILE, entry_bytes(entry), new_mtime=True)
    folder = site / SHARD_FOLDER
    for stale in sorted(folder.glob("*.json")):
        rel = f"{SHARD_FOLDER}/{stale.name}"
        if rel not in shards:  # emptied: deleted once the entry no longer names it
            stale.unlink()
            touched.add(rel)
    return touched


def publish_schema_1(site: Path, rows: list[dict[str, Any]]) -> None:
    """The single-file table of schema 1 (and no shards)."""
    table = sorted(rows, key=lambda r: (r["url"], sorted((r.get("query") or {}).items())))
    data = json.dumps({"routes": table, "schema": 1}, sort_keys=True, separators=(",", ":")) + "\n"
    write_atomic(site / ROUTES_FILE, data.encode(), new_mtime=True)
    for shard in (site / SHARD_FOLDER).glob("*.json"):
        shard.unlink()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_site(site: Path) -> Path:
    """``site`` with FILES and the sharded table of ROWS."""
    write_files(site)
    publish_table(site, ROWS)
    return site

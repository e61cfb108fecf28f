"""Helpers for the builder's tests: real repos, real tarballs, real `depot` processes.

Plain functions, nothing mocked. The pytest fixtures that use them (``scratch``, ``big_repo``,
``big_clean``) are in ``tests/conftest.py``; the runtime's server helpers are in
``tests/support/serving.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from builder.build import build, retained_history, state_dir_for
from builder.device.module import pack_module
from builder.routes import ROUTES_FILE, entry_bytes, load_routes, shard_bytes
from tests.support.device_index import check_shard, platform_packages, read_entry, shard_file
from tests.support.paths import DEMO_REPO, PROJECT

DEMO = DEMO_REPO
TEMP_PREFIX = ".tmp-"


# -- repos --------------------------------------------------------------------------------------


def add_module(
    repo: Path,
    name: str,
    version: str,
    platform: str,
    payload: bytes | None = None,
    manifest: bool = True,
    **manifest_extra: Any,
) -> Path:
    """A valid module ``repo/modules/<name>.<version>.<platform>.tar.gz``; returns its path."""
    payload = payload if payload is not None else f"{name} {version} {platform}\n".encode()
    meta = {"name": name, "version": version, "platform": platform, **manifest_extra} if manifest else None
    return pack_module(
        repo / "modules" / f"{name}.{version}.{platform}.tar.gz",
        {f"bin/{name}": b"#!/bin/sh\necho " + payload, "README": payload},
        meta,
    )


def add_firmware(repo: Path, name: str, version: str, platform: str, payload: bytes | None = None) -> Path:
    path = repo / "firmware" / f"{name}.{version}.{platform}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload if payload is not None else f"FIRMWARE {name} {version}\n".encode() * 8)
    return path


def write_settings(repo: Path, platforms: list[str] | None = None, name: str = "Test Store") -> None:
    lines = ["[store]", f'name = "{name}"', "", "[device]", "platforms = ["]
    lines += [f'  {{ name = "{p}", description = "{p} boards" }},' for p in platforms or []]
    lines += ["]", ""]
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "depot.toml").write_text("\n".join(lines), encoding="utf-8")


def copy_demo(dest: Path) -> Path:
    shutil.copytree(DEMO, dest)
    return dest


_last_mtime_ns = 0


def bump_mtime(path: Path) -> None:
    """Give ``path`` an mtime no file has had before in this session, later than its own.

    The scan cache is keyed by (size, mtime_ns), and a filesystem stamps mtimes from a coarse
    clock: two same-size writes a few milliseconds apart can get the same mtime. Tests that
    rewrite a file call this so that the rewrite is visible whatever the clock's granularity."""
    global _last_mtime_ns
    st = path.stat()
    _last_mtime_ns = max(_last_mtime_ns, st.st_mtime_ns) + 1_000_003
    os.utime(path, ns=(st.st_atime_ns, _last_mtime_ns))


# -- sites --------------------------------------------------------------------------------------


def site_tree(site: Path, history: bool = False) -> dict[str, bytes]:
    """Every file of ``site`` (relative POSIX path → bytes); folders appear as ``"dir/"`` keys so
    that an empty folder left behind is a difference too.

    Without ``history``, the retained history is left out: the old device index shards the
    build keeps for readers of older entries (``builder.build.retained_history``), their rows
    of routes.json and folders that hold nothing else. A clean build has none, so what remains is
    what "incremental equals clean" compares."""
    tree: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(site):
        rel = os.path.relpath(dirpath, site).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        for d in dirnames:
            tree[prefix + d + "/"] = b""
        for f in filenames:
            tree[prefix + f] = (Path(dirpath) / f).read_bytes()
    return tree if history else without_history(tree, retained_history(site))


def without_history(tree: dict[str, bytes], retained: set[str]) -> dict[str, bytes]:
    """``tree`` less the retained files, their routes and the folders only they filled."""
    if not retained:
        return tree
    out = {k: v for k, v in tree.items() if k not in retained}
    files = [k for k in out if not k.endswith("/")]
    for rel in retained:
        parts = rel.split("/")[:-1]
        for i in range(len(parts), 0, -1):
            folder = "/".join(parts[:i]) + "/"
            if folder in out and not any(f.startswith(folder) for f in files):
                del out[folder]
    if "routes.json" in out:
        # The route table without the retained files' rows: its shards as a clean build writes
        # them (an emptied shard is no file), and the entry naming those shards.
        entry = json.loads(out["routes.json"])
        shards: list[tuple[str, str]] = []
        for shard in entry["shards"]:
            rows = [r for r in json.loads(out[shard["file"]])["routes"] if r["file"] not in retained]
            bucket = shard["file"].removeprefix("routes/").removesuffix(".json")
            if rows:
                out[shard["file"]] = shard_bytes(rows)
                shards.append((bucket, sha256(out[shard["file"]])))
            else:
                del out[shard["file"]]
        out["routes.json"] = entry_bytes(shards)
    return out


def site_stats(site: Path) -> dict[str, tuple[bytes, int, int]]:
    """relpath → (bytes, mtime_ns, inode) for every file of ``site``."""
    out = {}
    for rel in site_tree(site):
        if not rel.endswith("/"):
            st = (site / rel).stat()
            out[rel] = ((site / rel).read_bytes(), st.st_mtime_ns, st.st_ino)
    return out


def assert_same_tree(actual: dict[str, bytes], expected: dict[str, bytes]) -> None:
    """Equal trees, with a readable list of the differences when they are not."""
    if actual == expected:
        return
    only_actual = sorted(set(actual) - set(expected))
    only_expected = sorted(set(expected) - set(actual))
    differ = sorted(k for k in set(actual) & set(expected) if actual[k] != expected[k])
    raise AssertionError(
        f"site trees differ:\n  only in incremental/actual: {only_actual}\n"
        f"  only in clean/expected: {only_expected}\n  different bytes: {differ}"
    )


def clean_build(repo: Path, site: Path) -> dict[str, bytes]:
    """Build ``repo`` into a fresh ``site`` (no state) and return the tree."""
    assert not site.exists()
    build(repo, site)
    return site_tree(site)


def temp_leftovers(site: Path) -> list[str]:
    """Temporary files a writer left in site/ or in the build state beside it."""
    found = []
    for root in (site, state_dir_for(site)):
        for dirpath, _dirs, files in os.walk(root):
            found += [os.path.join(dirpath, f) for f in files if f.startswith(TEMP_PREFIX)]
    return found


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def device_entries(site: Path) -> dict[str, dict[str, list[str]]]:
    """platform → module name → published versions, read the way a device reads them (the
    entry, then each shard it lists for the platform)."""
    entry = read_entry(site)
    out: dict[str, dict[str, list[str]]] = {}
    for p in entry["platforms"]:
        index = platform_packages(site, p["name"], entry)
        out[p["name"]] = {m["name"]: [v["version"] for v in m["versions"]] for m in index["modules"]}
        for fw in index["firmware"]:
            out[p["name"]]["firmware:" + fw["name"]] = [v["version"] for v in fw["versions"]]
    return out


def assert_site_usable(site: Path) -> set[str]:
    """What a client of site/ relies on, checked the way a client would:

    - every JSON file parses (nothing truncated);
    - every shard named by device/index.json exists with the size and SHA-256 stated, is the
      shard of the platform and bucket the entry files it under and holds only that bucket's
      packages, and no package is in two shards of a platform;
    - every module and firmware version named by a shard exists with its size and SHA-256;
    - every file named in routes.json exists, and every relative link of index.html resolves.

    Returns the set of referenced files. A site that has no device/index.json yet (a first
    build killed before its indexes) is "nothing published" and passes trivially.
    """
    referenced: set[str] = set()
    for dirpath, _dirs, files in os.walk(site):
        for f in files:
            if f.endswith(".json") and not f.startswith(TEMP_PREFIX):
                p = Path(dirpath) / f
                try:
                    json.loads(p.read_bytes())
                except ValueError as exc:
                    raise AssertionError(f"{p} is not valid JSON (truncated?): {exc}") from exc
    entry_file = site / "device" / "index.json"
    if not entry_file.exists():
        return referenced
    entry = json.loads(entry_file.read_bytes())
    assert entry["schema"] == 2, "device/index.json is not schema 2"
    for platform in entry["platforms"]:
        buckets = [row["shard"] for row in platform["shards"]]
        assert buckets == sorted(set(buckets)), f"{platform['name']}: shards not one per bucket, in order"
        names: set[tuple[str, str]] = set()
        for row in platform["shards"]:
            rel = shard_file(row)
            assert (site / rel).is_file(), f"device/index.json names {rel}, which is missing"
            shard = check_shard(platform["name"], row, (site / rel).read_bytes())
            referenced.add(rel)
            for kind in ("modules", "firmware"):
                for package in shard[kind]:
                    assert (kind, package["name"]) not in names, f"{package['name']} is in two shards"
                    names.add((kind, package["name"]))
                    for v in package["versions"]:
                        blob = posixpath.normpath(posixpath.join(posixpath.dirname(rel), v["url"]))
                        blob_bytes = (site / blob).read_bytes()
                        assert len(blob_bytes) == v["size"], f"{blob}: size differs from {rel}"
                        assert sha256(blob_bytes) == v["sha256"], f"{blob}: SHA-256 differs from {rel}"
                        referenced.add(blob)
    if (site / ROUTES_FILE).exists():
        for route in load_routes(site):
            assert (site / route["file"]).is_file(), f"routes.json names {route['file']}, which is missing"
            referenced.add(route["file"])
    home = site / "index.html"
    if home.exists():
        for link in re.findall(r'(?:href|src)="([^"#?]+)', home.read_text(encoding="utf-8")):
            if ":" in link or link.startswith("/"):
                continue
            target = site / posixpath.normpath(link)
            if link.endswith("/") or target.is_dir():
                target = target / "index.html"
            assert target.is_file(), f"index.html links to missing {link}"
    return referenced


# -- the command line ---------------------------------------------------------------------------


def depot_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime.cli", *args]


def run_depot(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    env.pop("CI", None)
    return subprocess.run(
        depot_argv(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT)}


# -- a store of a few hundred modules -----------------------------------------------------------

BIG_PLATFORMS = ["pi64", "opi64", "x86", "arm32", "rk3588"]


def make_big_repo(repo: Path, modules: int = 300, seed: int = 7) -> Path:
    """A store of ``modules`` modules over five platforms (some with several versions), firmware
    per platform, sidecars, and payloads of a few KiB to a few dozen KiB that gzip cannot shrink."""
    rng = random.Random(seed)
    write_settings(repo, BIG_PLATFORMS[:3], name="Big Store")
    for i in range(modules):
        platform = BIG_PLATFORMS[i % len(BIG_PLATFORMS)]
        name = f"mod{i // 3:03d}"
        version = f"1.{i % 3}.{rng.randrange(20)}"
        payload = rng.randbytes(rng.choice([2_000, 8_000, 30_000]))
        path = add_module(repo, name, version, platform, payload, manifest=bool(i % 2))
        if i % 10 == 0:
            Path(str(path) + ".toml").write_text(f'description = "module number {i}"\n')
    for platform in BIG_PLATFORMS:
        add_firmware(repo, "boot", "2.0.1", platform, rng.randbytes(20_000))
    return repo

"""Incremental equals clean over every dialect: a seeded random history of a synthetic store
with Qt packages, OTA builds, APKs and modules (benchmarks/synth.py), built after every step
three ways: walking repo/, told only the paths the step touched (the change feed), and clean
into a fresh folder. The first two must equal the third byte for byte.

The operations are what the store's writers do: a package removed and put back (the same bytes,
a new mtime), a Qt app moved to another category, an OTA build disabled and enabled, an APK's
release countries changed or the APK withdrawn, a package file rewritten in place with its own
bytes, the store renamed in depot.toml. They reach every renderer: the Qt lists and
variants, the shipper feeds and device list, the Android catalog and its countries, the web
catalog's category, device, Android and search pages, the device index.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from benchmarks.synth import generate
from builder.build import build
from builder.sidecars import read_sidecar, write_sidecar
from tests.support.repos import assert_same_tree, bump_mtime, site_tree

STEPS = 36


def packages(repo: Path) -> list[Path]:
    return sorted(
        p
        for folder in ("apps", "builds", "android", "modules")
        for p in (repo / folder).rglob("*")
        if p.is_file() and p.suffix in (".appkg", ".zip", ".apk", ".gz")
    )


def step(repo: Path, rng: random.Random, shelf: Path) -> list[str]:
    """One random operation; returns the paths it touched, relative to repo/."""
    files = packages(repo)
    shelved = sorted(shelf.rglob("*.*"))
    kind = rng.choice(["remove", "restore", "category", "enabled", "countries", "rewrite", "rename-store"])
    if kind == "restore" and shelved:
        source = rng.choice(shelved)
        target = repo / source.relative_to(shelf)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
        bump_mtime(target)
        return [target.relative_to(repo).as_posix()]
    if kind == "rename-store":
        settings = repo / "depot.toml"
        text = settings.read_text()
        settings.write_text(text.replace('name = "', 'name = "Renamed ', 1) if rng.random() < 0.5 else text)
        bump_mtime(settings)
        return ["depot.toml"]
    target = rng.choice(files)
    rel = target.relative_to(repo).as_posix()
    if kind in ("remove", "restore"):  # a package goes to the shelf, its sidecars stay
        (shelf / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(target, shelf / rel)
        return [rel]
    if kind == "category" and target.suffix == ".appkg":
        meta = read_sidecar(target, "qt-app", defaults=False)
        meta["category"] = rng.choice(["Productivity", "Entertainment", "Navigation", "Nowhere"])
        write_sidecar(target, meta, kind="qt-app")
        return [rel + ".toml"]
    if kind == "enabled" and target.suffix == ".zip":
        meta = read_sidecar(target, "ota-build", defaults=False)
        meta["enabled"] = not meta.get("enabled", True)
        write_sidecar(target, meta, kind="ota-build")
        return [rel + ".toml"]
    if kind == "countries" and target.suffix == ".apk":
        meta = read_sidecar(target, "apk", defaults=False)
        if rng.random() < 0.3:
            meta["status"] = "approved"  # withdrawn: no longer live
        else:
            meta["status"] = "live"
            meta["countries"] = sorted(rng.sample(["AT", "DE", "NL", "US", "JP"], rng.randint(1, 3)))
        write_sidecar(target, meta, kind="apk")
        return [rel + ".toml"]
    # rewrite in place with its own bytes: a new mtime, nothing else
    target.write_bytes(target.read_bytes())
    bump_mtime(target)
    return [rel]


@pytest.mark.parametrize("seed", [3, 8])
def test_every_dialect_builds_incrementally_as_it_builds_clean(scratch: Path, seed: int) -> None:
    root = scratch / f"dialects-{seed}"
    shutil.rmtree(root, ignore_errors=True)
    repo, shelf = root / "repo", root / "shelf"
    generate(repo, 200, seed=seed, kinds=("modules", "qt", "ota", "apk"))
    shelf.mkdir(parents=True)
    walked, fed, clean = root / "walked", root / "fed", root / "clean"
    build(repo, walked)
    build(repo, fed)
    rng = random.Random(seed)
    written = 0
    for n in range(STEPS):
        touched = step(repo, rng, shelf)
        a = build(repo, walked)
        b = build(repo, fed, changed=touched)
        shutil.rmtree(clean, ignore_errors=True)
        shutil.rmtree(root / ".clean.depot", ignore_errors=True)
        c = build(repo, clean)
        assert a.skipped == b.skipped == c.skipped, f"step {n}: {touched}"
        written += len(b.written)
        expected = site_tree(clean)
        for site in (walked, fed):
            try:
                assert_same_tree(site_tree(site), expected)
            except AssertionError as exc:
                raise AssertionError(f"step {n} ({touched}), {site.name}: {exc}") from exc
    assert written > STEPS  # the history changed the site, again and again

"""Hostile tests of builder/trust/: operator mistakes with the key folder and rotations, judged
by python-tuf's own client. Tests named ``test_bug_*`` expose a fault; the others document what
held."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.build import build
from builder.errors import TrustError
from builder.routes import ROUTES_FILE, SHARD_FOLDER
from builder.trust.keys import init_keys, rotate
from builder.trust.resign import sign_timestamp
from tests.support.repos import add_module, assert_same_tree, copy_demo, site_tree
from tests.support.trust import fetch, serve_site, updater


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo, site, keys = copy_demo(tmp_path / "repo"), tmp_path / "site", tmp_path / "keys"
    init_keys(keys)
    return repo, site, keys


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_others_may_read_is_refused_by_the_build(store: tuple[Path, Path, Path], mode: int) -> None:
    repo, site, keys = store
    pem = next((keys / "snapshot").glob("*.pem"))
    pem.chmod(mode)
    with pytest.raises(TrustError, match="chmod 600"):
        build(repo, site, keys=keys)
    assert not (site / "tuf").exists()


def test_a_key_folder_reached_through_a_symlink_into_site_or_repo_is_refused(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    for inside in (site / "k", repo / "k"):
        os.rename(keys, inside)
        link = tmp_path / "keys-link"
        link.symlink_to(inside)
        try:
            with pytest.raises(TrustError, match="inside the"):
                build(repo, site, keys=link)
            with pytest.raises(TrustError, match="inside the"):
                sign_timestamp(repo, site, link)
        finally:
            link.unlink()
            os.rename(inside, keys)


def is_table(key: str) -> bool:
    """A file of the route table (routes.json, or a shard of it): it lists the TUF history
    this test leaves out, so it is not compared."""
    return key == ROUTES_FILE or key.startswith(SHARD_FOLDER + "/")


def test_rotating_snapshot_then_building_is_followed_and_incremental_equals_clean(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    first_root = (site / "tuf" / "1.root.json").read_bytes()
    with serve_site(site) as url:
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=first_root)
        assert rotate(keys, "snapshot") == 2
        build(repo, site, keys=keys)
        updater(url, tmp_path / "device", tmp_path / "dl").refresh()  # the device follows
        add_module(repo, "ax", "2.7.0", "pi64")
        build(repo, site, keys=keys)
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json")
        fetch(url, tmp_path / "fresh", tmp_path / "dl2", "device/index.json", trusted_root=first_root)
    clean = tmp_path / "clean"
    build(repo, clean, keys=keys)
    ours, theirs = site_tree(site), site_tree(clean)
    ours.pop("tuf/timestamp.json"), theirs.pop("tuf/timestamp.json")
    for old in ("tuf/1.targets.json", "tuf/1.snapshot.json", "tuf/2.snapshot.json"):
        ours.pop(old, None)  # retained history a clean build does not have
    assert_same_tree(
        {k: v for k, v in ours.items() if not is_table(k)},
        {k: v for k, v in theirs.items() if not is_table(k)},
    )


@pytest.mark.parametrize("role", ["timestamp", "root"])
def test_sign_timestamp_waits_for_a_build_to_publish_a_rotated_root(
    store: tuple[Path, Path, Path], tmp_path: Path, role: str
) -> None:
    """After ``depot keys rotate``, the key folder's root is newer than the one site/ publishes.
    A timestamp signed with the new keys would be refused by every device until a build
    published that root, so ``depot sign-timestamp`` (cron) and serve's re-signing refuse to
    sign until then; devices go on with the timestamp they have, and after the build all is
    well."""
    repo, site, keys = store
    build(repo, site, keys=keys)
    root = (site / "tuf" / "1.root.json").read_bytes()
    with serve_site(site) as url:
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)
        rotate(keys, role)
        with pytest.raises(TrustError, match="run depot build"):
            sign_timestamp(repo, site, keys)  # cron, before anybody ran depot build
        updater(url, tmp_path / "device", tmp_path / "dl").refresh()  # nothing broke
        build(repo, site, keys=keys)
        sign_timestamp(repo, site, keys)
        updater(url, tmp_path / "device", tmp_path / "dl").refresh()
        fetch(url, tmp_path / "fresh", tmp_path / "dl2", "device/index.json", trusted_root=root)

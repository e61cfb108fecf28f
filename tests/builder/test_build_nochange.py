"""A build follows the change: a rebuild whose inputs did not change plans, renders and writes
nothing, yet reports what it skipped, never trusts a site left by a killed build, and with
``full`` repairs a damaged site/; a build given the changed paths (the change feed) sees
exactly what a walk of repo/ sees."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from builder.build import build, state_dir_for
from tests.support.device_index import package, platform_packages
from tests.support.repos import (
    add_module,
    assert_same_tree,
    bump_mtime,
    clean_build,
    copy_demo,
    site_stats,
    site_tree,
)


def report(site: Path) -> dict:
    return json.loads((state_dir_for(site) / "report.json").read_bytes())


def test_a_no_change_rebuild_keeps_reporting_the_skipped_files(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    (repo / "modules" / "junk.tar.gz").write_bytes(b"not a tarball")
    first = build(repo, site)
    assert "modules/junk.tar.gz" in first.skipped
    before = site_stats(site)
    (state_dir_for(site) / "report.json").unlink()

    again = build(repo, site)

    assert again.skipped == first.skipped
    assert again.written == [] and again.bytes_written == 0 and again.files_read == 0
    assert again.unchanged == again.outputs == len(before)
    assert site_stats(site) == before
    assert report(site)["files_written"] == 0 and report(site)["skipped"] == first.skipped


@pytest.mark.parametrize("damage", ["delete", "rewrite", "same-size"])
def test_a_full_build_repairs_a_damaged_site_file(tmp_path: Path, damage: str) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    expected = site_tree(site)
    victim = site / "device" / "index.json"
    if damage == "delete":
        victim.unlink()
    elif damage == "rewrite":
        victim.write_bytes(b"{}")
    else:
        victim.write_bytes(b"x" * len(expected["device/index.json"]))
        bump_mtime(victim)

    again = build(repo, site, full=True)

    assert again.written == ["device/index.json"]
    assert_same_tree(site_tree(site), expected)


def test_a_deleted_or_replaced_site_folder_is_published_again(tmp_path: Path) -> None:
    """The one stat a plain build spends on site/ (its route table) tells a site/ that is gone
    or is another folder's copy from the site the state describes."""
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    expected = site_tree(site)
    shutil.rmtree(site)
    assert build(repo, site).written
    assert_same_tree(site_tree(site), expected)


def test_a_killed_build_turns_the_fast_path_off(tmp_path: Path) -> None:
    """What a build killed midway leaves: its marker and a file no manifest knows (here the
    package the user then took back out of repo/, so the inputs are the last good build's)."""
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    orphan = site / "files" / "orphan" / "left-by-a-killed-build.tar.gz"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a package")
    (state_dir_for(site) / "build-in-progress").write_bytes(b"killed\n")

    again = build(repo, site)

    assert again.recovered
    assert not orphan.exists() and not orphan.parent.exists()
    assert not (state_dir_for(site) / "build-in-progress").exists()
    assert_same_tree(site_tree(site), clean_build(repo, tmp_path / "clean"))


def test_any_change_to_the_inputs_takes_the_full_build(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    add_module(repo, "fresh", "1.0", "pi64")
    assert "files/" in "".join(build(repo, site).written)

    settings = repo / "depot.toml"
    settings.write_text(settings.read_text().replace('name = "', 'name = "Renamed ', 1))
    bump_mtime(settings)
    assert "device/index.json" in build(repo, site).written

    (repo / "modules" / "fresh.1.0.pi64.tar.gz").unlink()
    assert build(repo, site).deleted
    assert_same_tree(site_tree(site), clean_build(repo, tmp_path / "clean"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_package_is_read_again_once_it_can_be(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    package = add_module(repo, "locked", "1.0", "pi64")
    package.chmod(0)
    try:
        assert "cannot read" in build(repo, site).skipped[f"modules/{package.name}"]
    finally:
        package.chmod(0o644)  # a chmod leaves size and mtime as they were

    again = build(repo, site)

    assert again.skipped == {} and again.files_read == 1


def test_the_change_feed_sees_what_the_walk_sees(tmp_path: Path) -> None:
    """Changes named to the build (a file, a sidecar, a folder, a removal) publish the same site
    as a walk of repo/ would, and a change nobody named waits for the next walk."""
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    added = add_module(repo, "fresh", "1.0", "pi64")
    first = build(repo, site, changed=[f"modules/{added.name}"])
    assert any(p.endswith(added.name) for p in first.written)
    assert first.files_read == 1

    sidecar = Path(str(added) + ".toml")
    sidecar.write_text('description = "named by the feed"\n')
    bump_mtime(sidecar)
    assert build(repo, site, changed=[f"modules/{sidecar.name}"]).written
    assert package(platform_packages(site, "pi64"), "fresh")["description"] == "named by the feed"

    # Nobody names this one: the feed does not see it, the next walk does.
    unnamed = add_module(repo, "unnamed", "1.0", "pi64")
    assert build(repo, site, changed=[]).written == []
    assert any(p.endswith(unnamed.name) for p in build(repo, site).written)

    added.unlink()
    build(repo, site, changed=["modules"])  # a folder: everything in it, gone files too
    assert "fresh" not in {m["name"] for m in platform_packages(site, "pi64")["modules"]}
    assert_same_tree(site_tree(site), clean_build(repo, tmp_path / "clean"))


def test_a_no_change_build_with_a_feed_reads_nothing_of_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an empty change feed the build stats depot.toml and nothing else of repo/."""
    import builder.scan

    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    walks: list[Path] = []
    real = builder.scan.walk_repo_stats
    monkeypatch.setattr(builder.scan, "walk_repo_stats", lambda root: walks.append(root) or real(root))
    again = build(repo, site, changed=[])
    assert again.written == [] and again.files_read == 0 and walks == []


def test_a_folder_in_the_feed_is_its_files_not_a_file(tmp_path: Path) -> None:
    """A feed that names a folder publishes what a walk would: the folder is never read as a
    package (the property test once found `modules/sub` reported as a bad file name)."""
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    (repo / "modules" / "sub").mkdir()
    add_module(repo, "deep", "1.0", "pi64").rename(repo / "modules" / "sub" / "deep.1.0.pi64.tar.gz")
    fed = build(repo, site, changed=["modules/sub"])
    walked = build(repo, tmp_path / "walked")
    assert fed.skipped == walked.skipped
    assert "modules/sub" not in fed.skipped
    assert_same_tree(site_tree(site), site_tree(tmp_path / "walked"))

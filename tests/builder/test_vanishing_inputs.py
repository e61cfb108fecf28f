"""A package file that vanishes or changes while a build publishes it is held, never a crash.

The deterministic tests delete or rewrite a file at the exact moment the publisher copies it
(or reads an icon out of it), then check what a client of site/ relies on: the build returns and
reports the file, every index names only files that are there with the size and SHA-256 it
states, and the next build publishes repo/ as it is then, exactly as a clean build does. The
experiment at the end runs builds while another thread deletes and re-adds modules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import builder.publish
from builder.build import build, state_dir_for
from builder.device.module import pack_module
from builder.routes import load_routes
from tests.support.device_index import platform_packages
from tests.support.repos import (
    add_firmware,
    add_module,
    assert_same_tree,
    assert_site_usable,
    bump_mtime,
    copy_demo,
    device_entries,
    site_tree,
    subprocess_env,
    temp_leftovers,
    write_settings,
)


def small_repo(repo: Path) -> Path:
    write_settings(repo, ["pi64"], name="Vanishing Store")
    add_module(repo, "ax", "1.0", "pi64", b"ax one\n")
    add_module(repo, "nav", "1.0", "pi64", b"nav one\n")
    add_firmware(repo, "boot", "1.0", "pi64")
    return repo


def clean_tree(repo: Path, where: Path) -> dict[str, bytes]:
    shutil.rmtree(where, ignore_errors=True)
    build(repo, where)
    return site_tree(where)


def assert_consistent(site: Path) -> None:
    """Every URL of device/index.json and of its shards resolves to a file with the size and
    SHA-256 stated; every platform of the entry has its shards, each the file it names (its
    platform, its bucket); nothing half written is left."""
    assert_site_usable(site)
    entry = json.loads((site / "device" / "index.json").read_bytes())
    for platform in entry["platforms"]:
        platform_packages(site, platform["name"], entry)
    assert temp_leftovers(site) == []


def on_copy(monkeypatch: pytest.MonkeyPatch, name: str, action: Callable[[Path], None]) -> list[Path]:
    """Run ``action`` on the package file called ``name`` just before the publisher copies it
    into site/ (after the scan read it): the exact moment a maintainer's rm or cp would hurt."""
    real = builder.publish.copy_temp
    hit: list[Path] = []

    def copy_temp(target: Path, source: Path, *args: Any, **kwargs: Any) -> Path:
        if source.name == name and not hit:
            hit.append(source)
            action(source)
        return real(target, source, *args, **kwargs)

    monkeypatch.setattr(builder.publish, "copy_temp", copy_temp)
    return hit


# -- a file deleted between the scan and the publish --------------------------------------------


def test_a_new_module_deleted_before_its_copy_is_left_out_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo, site = small_repo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    new = add_module(repo, "iot", "2.0", "pi64", b"iot two\n")
    hit = on_copy(monkeypatch, new.name, lambda p: p.unlink())

    with caplog.at_level(logging.WARNING, logger="builder.build"):
        result = build(repo, site)

    assert hit, "the hook never ran: the module was not copied"
    relpath = "modules/iot.2.0.pi64.tar.gz"
    assert result.changed == {relpath: "vanished during the build; not published until the next build"}
    assert relpath not in result.skipped  # not a bad file: a Qt upload must not read it as one
    assert f"warning: {relpath} vanished during the build" in caplog.text
    assert "iot" not in device_entries(site)["pi64"]
    assert device_entries(site)["pi64"]["ax"] == ["1.0"]
    assert_consistent(site)
    assert not (state_dir_for(site) / "build-in-progress").exists()
    report = json.loads((state_dir_for(site) / "report.json").read_bytes())
    assert report["changed_during_build"] == result.changed

    monkeypatch.undo()
    again = build(repo, site)  # the file is gone: the site is the clean build of repo/ now
    assert again.changed == {}
    assert_same_tree(site_tree(site), clean_tree(repo, tmp_path / "clean"))


def test_a_module_deleted_and_put_back_unchanged_is_published_by_the_next_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Put back with its old size and mtime (a move out and back): the no-change fast path must
    not take the held build's site for the state of repo/."""
    repo, site = small_repo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    new = add_module(repo, "iot", "2.0", "pi64", b"iot two\n")
    aside = tmp_path / "aside.tar.gz"
    on_copy(monkeypatch, new.name, lambda p: p.rename(aside))
    assert build(repo, site).changed
    monkeypatch.undo()
    aside.rename(new)  # same inode, same size, same mtime as the scan saw

    again = build(repo, site)

    assert again.changed == {} and again.files_read >= 1  # read again, not taken from the cache
    assert device_entries(site)["pi64"]["iot"] == ["2.0"]
    assert_consistent(site)
    assert_same_tree(site_tree(site), clean_tree(repo, tmp_path / "clean"))
    assert build(repo, site).written == []  # and then it is a normal site again


def test_a_vanished_module_from_the_command_line_exits_0_with_a_warning(tmp_path: Path) -> None:
    repo, site = small_repo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    add_module(repo, "iot", "2.0", "pi64", b"iot two\n")
    # `depot build` in its own process, with the same hook: the real CLI, exit status and stderr.
    script = f"""
import sys
from pathlib import Path
import builder.publish
real = builder.publish.copy_temp
def copy_temp(target, source, *args, **kwargs):
    if source.name == "iot.2.0.pi64.tar.gz" and source.exists():
        source.unlink()
    return real(target, source, *args, **kwargs)
builder.publish.copy_temp = copy_temp
from runtime.cli import main
sys.argv = ["depot", "build", "--repo", {str(repo)!r}, "--site", {str(site)!r}, "--report"]
main()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "warning: modules/iot.2.0.pi64.tar.gz vanished during the build" in done.stderr
    report = json.loads(done.stdout)
    assert list(report["changed_during_build"]) == ["modules/iot.2.0.pi64.tar.gz"]
    assert_consistent(site)


# -- a file rewritten between the scan and the publish ------------------------------------------


def test_a_module_rewritten_before_its_copy_keeps_the_version_last_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, site = small_repo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    published = platform_packages(site, "pi64")
    ax = repo / "modules" / "ax.1.0.pi64.tar.gz"
    add_module(repo, "ax", "1.0", "pi64", b"ax one, rebuilt\n")  # what the scan will read
    bump_mtime(ax)
    hit = on_copy(monkeypatch, ax.name, lambda p: add_module(repo, "ax", "1.0", "pi64", b"ax, third bytes\n"))

    result = build(repo, site)

    assert hit
    assert result.changed == {
        "modules/ax.1.0.pi64.tar.gz": (
            "changed during the build; the version the last build published stays until the next build"
        )
    }
    assert platform_packages(site, "pi64") == published
    assert_consistent(site)

    monkeypatch.undo()
    again = build(repo, site)  # the third bytes are what repo/ holds now
    assert again.changed == {}
    modules = platform_packages(site, "pi64")["modules"]
    entry = next(m for m in modules if m["name"] == "ax")
    assert entry["versions"][0]["sha256"] == hashlib.sha256(ax.read_bytes()).hexdigest()
    assert_consistent(site)
    assert_same_tree(site_tree(site), clean_tree(repo, tmp_path / "clean"))


def test_a_module_rewritten_before_its_first_copy_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing published before and other bytes now: there is no version to keep."""
    repo, site = small_repo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    new = add_module(repo, "iot", "2.0", "pi64", b"iot two\n")
    on_copy(monkeypatch, new.name, lambda p: p.write_bytes(p.read_bytes()[::-1]))

    result = build(repo, site)

    assert result.changed == {
        "modules/iot.2.0.pi64.tar.gz": "changed during the build; not published until the next build"
    }
    assert "iot" not in device_entries(site)["pi64"]
    assert_consistent(site)
    monkeypatch.undo()
    again = build(repo, site)  # now it is a broken archive: skipped as such, the usual way
    assert "modules/iot.2.0.pi64.tar.gz" in again.skipped and again.changed == {}
    assert_same_tree(site_tree(site), clean_tree(repo, tmp_path / "clean"))


def test_a_kept_version_whose_copy_fails_again_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version kept from the last build must be intact in site/; when its copy is needed
    (someone deleted it from site/) and the package changed meanwhile, it is left out."""
    repo, site = small_repo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    ax = repo / "modules" / "ax.1.0.pi64.tar.gz"
    for blob in (site / "files").rglob("ax.1.0.pi64.tar.gz"):
        blob.unlink()  # the published copy is damaged: the next build must copy it again
    on_copy(monkeypatch, ax.name, lambda p: p.unlink())

    result = build(repo, site, full=True)  # the full check of site/ finds the copy missing

    assert result.changed == {
        "modules/ax.1.0.pi64.tar.gz": "vanished during the build; not published until the next build"
    }
    assert "ax" not in device_entries(site)["pi64"]
    assert_consistent(site)


# -- outputs that read a package while they are published ---------------------------------------


def test_a_qt_package_deleted_while_its_icon_is_extracted_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builder.qt.render

    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    package = repo / "apps" / "com.example.plain.appkg"
    real = builder.qt.render.extract_icon

    def extract_icon(path: Path) -> bytes:
        if path == package and path.exists():
            path.unlink()
        return real(path)

    monkeypatch.setattr(builder.qt.render, "extract_icon", extract_icon)

    result = build(repo, site)

    assert "apps/com.example.plain.appkg" in result.changed
    assert "vanished during the build" in result.changed["apps/com.example.plain.appkg"]
    assert_consistent(site)
    table = json.dumps(load_routes(site))
    assert "com.example.plain" not in table  # no icon, no page
    assert "com.example.tagged" in table
    monkeypatch.undo()
    build(repo, site)
    assert_same_tree(site_tree(site), clean_tree(repo, tmp_path / "clean"))


def test_a_renderer_bug_is_still_raised_when_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Holding is for inputs that changed; a renderer that fails on an unchanged repo/ is a bug
    and keeps its exception (and its traceback)."""
    import builder.qt.render

    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"

    def extract_icon(path: Path) -> bytes:
        raise ZeroDivisionError("a bug in a renderer")

    monkeypatch.setattr(builder.qt.render, "extract_icon", extract_icon)
    with pytest.raises(ZeroDivisionError, match="a bug in a renderer"):
        build(repo, site)
    assert not (site / "device" / "index.json").exists()  # stopped before any index


# -- the runtime answers an upload it stored ----------------------------------------------------


def test_the_rebuilder_never_raises_for_a_failed_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The upload is in repo/ already: a build that fails for any reason (an OSError, a bug) is
    logged, and rebuild() returns None so the endpoint answers success."""
    import asyncio

    import runtime.rebuild

    repo, site = small_repo(tmp_path / "repo"), tmp_path / "site"
    rebuilder = runtime.rebuild.Rebuilder(repo, site)
    for error in (FileNotFoundError(2, "No such file or directory", "x"), RuntimeError("a bug")):

        def failing(*args: Any, error: Exception = error, **kwargs: Any) -> Any:
            raise error

        monkeypatch.setattr(runtime.rebuild, "build", failing)
        with caplog.at_level(logging.ERROR, logger="runtime.rebuild"):
            assert asyncio.run(rebuilder.rebuild()) is None
        assert "the catalog was not rebuilt" in caplog.text
        caplog.clear()
    monkeypatch.undo()

    # And with the real build, a module vanishing under it: a result, the file reported.
    build(repo, site)
    new = add_module(repo, "iot", "2.0", "pi64")
    on_copy(monkeypatch, new.name, lambda p: p.unlink())
    result = asyncio.run(runtime.rebuild.Rebuilder(repo, site).rebuild())
    assert result is not None and list(result.changed) == ["modules/iot.2.0.pi64.tar.gz"]


# -- the experiment: builds while modules come and go -------------------------------------------

EXPERIMENT_BUILDS = 60
EXPERIMENT_SECONDS = 60.0


def test_builds_while_modules_are_deleted_and_added_never_fail(scratch: Path) -> None:
    """A thread deletes and re-adds modules (new bytes each time, some written in place, some
    renamed into place) while builds run one after another. No build raises, each leaves a
    consistent site, and once the churn stops one more build gives exactly a clean build."""
    repo, site = scratch / "repo", scratch / "site"
    write_settings(repo, ["pi64", "opi64"], name="Churn Store")
    rng = random.Random(13)
    for i in range(30):
        add_module(repo, f"m{i:02d}", "1.0", ["pi64", "opi64"][i % 2], rng.randbytes(20_000))
    build(repo, site)
    stop = threading.Event()
    churn_errors: list[BaseException] = []

    def churn() -> None:
        r = random.Random(99)
        try:
            while not stop.is_set():
                i = r.randrange(30)
                name, platform = f"m{i:02d}", ["pi64", "opi64"][i % 2]
                action = r.random()
                if action < 0.4:
                    (repo / "modules" / f"{name}.1.0.{platform}.tar.gz").unlink(missing_ok=True)
                elif action < 0.7:  # in place: a reader may see it half written
                    add_module(repo, name, "1.0", platform, r.randbytes(20_000))
                else:  # written under a hidden name, renamed into place
                    tmp = pack_module(repo / "modules" / f".new-{i}", {"README": r.randbytes(20_000)})
                    os.replace(tmp, repo / "modules" / f"{name}.1.0.{platform}.tar.gz")
                time.sleep(r.uniform(0, 0.004))
        except BaseException as exc:  # pragma: no cover - reported below
            churn_errors.append(exc)

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    held = 0
    builds = 0
    deadline = time.monotonic() + EXPERIMENT_SECONDS
    try:
        while builds < EXPERIMENT_BUILDS and time.monotonic() < deadline:
            result = build(repo, site)  # raises nothing
            builds += 1
            held += len(result.changed)
            assert_consistent(site)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not churn_errors
    assert builds >= 50, f"only {builds} builds in {EXPERIMENT_SECONDS}s"

    build(repo, site)
    assert_same_tree(site_tree(site), clean_tree(repo, scratch / "clean"))
    print(f"{builds} builds, {held} files held")

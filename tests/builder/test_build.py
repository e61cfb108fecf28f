"""The incremental builder: what it writes, what it leaves alone, what it removes."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from builder.build import BuildBusyError, build, build_lock, retained_history, state_dir_for
from builder.routes import load_routes
from tests.support.device_index import device_bucket, platform_packages, shard_files
from tests.support.repos import (
    add_firmware,
    add_module,
    assert_same_tree,
    assert_site_usable,
    bump_mtime,
    copy_demo,
    device_entries,
    run_depot,
    sha256,
    site_stats,
    site_tree,
    write_settings,
)


def blobs(site: Path) -> dict[str, bytes]:
    """The package files published under site/files/, by file name."""
    return {Path(p).name: b for p, b in site_tree(site / "files").items() if not p.endswith("/")}


# -- nothing changed, nothing written -----------------------------------------------------------


def test_a_no_change_rebuild_writes_nothing(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    first = build(repo, site)
    assert first.written and not first.skipped
    before = site_stats(site)

    again = build(repo, site)

    assert again.written == [] and again.deleted == [] and again.bytes_written == 0
    assert again.unchanged == len(before)
    assert site_stats(site) == before  # same bytes, same mtime_ns, same inode: not even rewritten
    assert again.files_read == 0 and again.files_cached == first.files_read  # nothing re-read


def test_a_no_change_rebuild_from_the_command_line_reports_zero_written(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    assert run_depot("build", "--repo", str(repo), "--site", str(site)).returncode == 0
    before = site_stats(site)
    done = run_depot("build", "--repo", str(repo), "--site", str(site), "--report")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["files_written"] == 0 and report["written"] == []
    assert report["files_deleted"] == 0 and report["bytes_written"] == 0
    assert report["files_unchanged"] == len(before)
    assert site_stats(site) == before
    plain = run_depot("build", "--repo", str(repo), "--site", str(site))
    assert plain.stdout.startswith("published: 0 written, ")


def test_touching_a_package_without_changing_it_rewrites_nothing(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    before = site_stats(site)
    module = repo / "modules" / "ax.2.6.4.pi64.tar.gz"
    bump_mtime(module)
    module.write_bytes(module.read_bytes())  # same bytes, new mtime: it is re-read
    result = build(repo, site)
    assert result.files_read == 1
    assert result.written == []
    assert site_stats(site) == before


# -- reproducible -------------------------------------------------------------------------------


def test_two_builds_of_one_repo_are_byte_identical(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    build(repo, tmp_path / "one")
    build(repo, tmp_path / "two")
    assert_same_tree(site_tree(tmp_path / "two"), site_tree(tmp_path / "one"))


def test_a_copy_of_the_repo_elsewhere_builds_the_same_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = copy_demo(tmp_path / "repo")
    add_module(repo, "nav", "0.1", "riscv")
    build(repo, tmp_path / "site")
    copy = tmp_path / "elsewhere" / "deeper" / "store"
    shutil.copytree(repo, copy, copy_function=shutil.copy)  # new mtimes, new inodes, new path
    for path in copy.rglob("*"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")  # no clock, and no epoch, leaks into the output
    monkeypatch.chdir(copy.parent)
    build(Path("store"), Path("site-copy"))
    assert_same_tree(site_tree(copy.parent / "site-copy"), site_tree(tmp_path / "site"))


def test_the_demo_store_publishes_without_warnings(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    result = build(repo, site)
    assert result.skipped == {}
    assert_site_usable(site)
    entries = device_entries(site)
    assert entries["pi64"]["ax"] == ["2.6.4", "2.6.3"]
    assert entries["pi64"]["firmware:bottom-sensor"] == ["1.4.3"]
    assert entries["opi64"]["py_axbot"] == ["1.1.6-opi64"]


# -- the device index ---------------------------------------------------------------------------


def test_the_device_index_names_every_file_with_relative_urls_sizes_and_hashes(tmp_path: Path) -> None:
    repo, site = tmp_path / "repo", tmp_path / "site"
    write_settings(repo, ["pi64"], name="Index Store")
    module = add_module(repo, "ax", "2.6.4", "pi64", description="Motion", optional=True)
    firmware = add_firmware(repo, "sensor", "1.4.3", "pi64")
    build(repo, site)

    entry = json.loads((site / "device" / "index.json").read_bytes())
    assert entry["schema"] == 2 and entry["store"] == "Index Store"
    [platform] = entry["platforms"]
    assert platform["name"] == "pi64" and platform["description"] == "pi64 boards"
    assert set(platform) == {"name", "description", "shards"}  # no url/size/sha256 of its own
    rows = platform["shards"]
    assert [r["shard"] for r in rows] == sorted({device_bucket("ax"), device_bucket("sensor")})
    for row in rows:
        assert not row["url"].startswith(("/", "http")) and "://" not in row["url"]
        assert re.fullmatch(r"pi64/[0-9a-f]\.[0-9a-f]{16}\.json", row["url"]), row["url"]
        assert row["url"].startswith(f"pi64/{row['shard']}.")
    assert not (site / "device" / "pi64" / "index.json").exists()  # schema 1's platform index is gone
    assert sorted(p.name for p in (site / "device" / "pi64").iterdir()) == sorted(
        Path(r["url"]).name for r in rows
    )
    index = platform_packages(site, "pi64")  # each shard checked against its size and SHA-256
    [ax] = index["modules"]
    assert (ax["name"], ax["latest_version"], ax["description"], ax["optional"]) == (
        "ax",
        "2.6.4",
        "Motion",
        True,
    )
    [version] = ax["versions"]
    assert version["filename"] == module.name
    assert version["size"] == module.stat().st_size and version["sha256"] == sha256(module.read_bytes())
    assert version["url"].startswith("../../files/")
    [fw] = index["firmware"]
    assert fw["versions"][0]["sha256"] == sha256(firmware.read_bytes())
    assert_site_usable(site)


def test_the_route_table_maps_every_published_file(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    routes = load_routes(site)
    files = {p for p in site_tree(site) if not p.endswith("/")}
    table = {p for p in files if p == "routes.json" or p.startswith("routes/")}
    assert {r["file"] for r in routes} | table == files
    by_file = {r["file"]: r for r in routes}
    assert by_file["device/index.json"]["url"] == "/device/index.json"
    assert by_file["device/index.json"]["type"] == "application/json"
    blob = next(p for p in files if p.endswith("ax.2.6.4.pi64.tar.gz"))
    assert by_file[blob]["type"] == "application/gzip"
    assert all((site / r["file"]).is_file() for r in routes)


def test_build_state_is_kept_beside_the_site_not_inside_it(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    state = state_dir_for(site)
    assert state == tmp_path / ".site.depot"
    assert (state / "report.json").is_file()
    assert json.loads((state / "report.json").read_bytes())["files_written"] > 0
    assert not any(p.endswith(("report.json", "state.db", "lock")) for p in site_tree(site))


# -- changes ------------------------------------------------------------------------------------


def test_removing_a_module_deletes_its_blob_and_its_entry(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    assert "ax.2.6.3.pi64.tar.gz" in blobs(site)
    (repo / "modules" / "ax.2.6.3.pi64.tar.gz").unlink()

    result = build(repo, site)

    assert "ax.2.6.3.pi64.tar.gz" not in blobs(site)
    assert any(p.endswith("/ax.2.6.3.pi64.tar.gz") for p in result.deleted)
    assert device_entries(site)["pi64"]["ax"] == ["2.6.4"]
    assert not any(
        p.startswith("files/") and p.endswith("/") and not os.listdir(site / p) for p in site_tree(site)
    )
    assert_same_tree(site_tree(site), site_tree(_clean(repo, tmp_path)))


def test_removing_the_last_module_of_a_platform_removes_its_index(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    only = add_module(repo, "nav", "0.1", "riscv")  # riscv is not declared in depot.toml
    build(repo, site)
    assert "riscv" in device_entries(site)
    shards = shard_files(site, "riscv")
    assert len(shards) == 1 and (site / shards[0]).is_file()
    only.unlink()

    build(repo, site)

    assert "riscv" not in device_entries(site)
    # Only the old shard stays, for readers of the previous entry (retained history).
    left = {p.relative_to(site).as_posix() for p in (site / "device" / "riscv").iterdir()}
    assert left == retained_history(site) == set(shards)
    assert_site_usable(site)
    assert_same_tree(site_tree(site), site_tree(_clean(repo, tmp_path)))


def test_a_declared_platform_keeps_an_empty_index_when_its_last_module_goes(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    (repo / "modules" / "py_axbot.1.1.6-opi64.opi64.tar.gz").unlink()  # opi64 is declared
    build(repo, site)
    assert device_entries(site)["opi64"] == {}
    assert_same_tree(site_tree(site), site_tree(_clean(repo, tmp_path)))


def test_adding_one_module_writes_only_a_handful_of_files(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    first = build(repo, site)
    add_module(repo, "nav", "0.1", "pi64")

    result = build(repo, site)

    written = set(result.written)
    new_blob = [p for p in written if p.startswith("files/")]
    assert len(new_blob) == 1 and new_blob[0].endswith("/nav.0.1.pi64.tar.gz")
    # the entry and the one shard of pi64 that nav falls in: a new file beside the old one
    nav = f"device/pi64/{device_bucket('nav')}."
    nav_shard = next(p for p in shard_files(site, "pi64") if p.startswith(nav))
    assert {"device/index.json", nav_shard, "routes.json"} <= written
    assert {p for p in written if p.startswith("device/")} == {"device/index.json", nav_shard}
    assert not any(p.startswith("device/opi64/") for p in written)  # other platforms untouched
    assert len(written) <= 12, sorted(written)
    assert len(written) < len(first.written) / 2
    assert result.files_read == 1
    assert device_entries(site)["pi64"]["nav"] == ["0.1"]
    assert_same_tree(site_tree(site), site_tree(_clean(repo, tmp_path)))


def test_replacing_a_module_publishes_the_new_bytes_under_a_new_url(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    old = blobs(site)["iot.1.0.5.pi64.tar.gz"]
    path = add_module(repo, "iot", "1.0.5", "pi64", b"a fixed build\n")
    bump_mtime(path)
    result = build(repo, site)
    assert blobs(site)["iot.1.0.5.pi64.tar.gz"] == path.read_bytes() != old
    assert any(p.endswith("/iot.1.0.5.pi64.tar.gz") for p in result.deleted)  # the old URL is gone
    assert_site_usable(site)


def test_editing_a_sidecar_updates_the_description(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    sidecar = repo / "modules" / "iot.1.0.5.pi64.tar.gz.toml"
    sidecar.write_text('description = "Now with lifts"\n')
    result = build(repo, site)
    assert result.files_read == 1
    index = platform_packages(site, "pi64")
    assert next(m for m in index["modules"] if m["name"] == "iot")["description"] == "Now with lifts"
    # the entry and iot's shard only: the other shards keep their bytes and their names
    assert {p for p in result.written if p.startswith("device/")} == {
        "device/index.json",
        *(p for p in shard_files(site, "pi64") if p.startswith(f"device/pi64/{device_bucket('iot')}.")),
    }
    assert not any(p.startswith("files/") for p in result.written)  # the package bytes did not change


def test_damaged_or_deleted_site_files_are_repaired(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    clean = site_tree(site)
    blob = next(p for p in clean if p.endswith("ax.2.6.4.pi64.tar.gz"))
    (site / blob).unlink()
    (site / "device" / "index.json").write_text("{ truncated")
    # A plain build trusts site/ (one stat of its route table, so a no-change build of a big
    # store costs nothing); --full checks every file against the manifest.
    assert build(repo, site).written == []
    result = build(repo, site, full=True)
    assert set(result.written) == {blob, "device/index.json"}
    assert_same_tree(site_tree(site), clean)


def test_renaming_the_store_rewrites_the_entry(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    settings = repo / "depot.toml"
    settings.write_text(settings.read_text().replace("Depot Demo Store", "Robot Parts"))
    result = build(repo, site)
    assert "device/index.json" in result.written
    assert json.loads((site / "device" / "index.json").read_bytes())["store"] == "Robot Parts"
    assert not any(p.startswith("files/") for p in result.written)
    assert_same_tree(site_tree(site), site_tree(_clean(repo, tmp_path)))


# -- one writer at a time -----------------------------------------------------------------------


def test_a_second_build_is_refused_or_waits_while_one_holds_the_lock(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    waited = threading.Event()
    finished: list[object] = []
    with build_lock(site):
        with pytest.raises(BuildBusyError, match="another build"):
            build(repo, site, wait=False)
        worker = threading.Thread(target=lambda: finished.append(build(repo, site, on_wait=waited.set)))
        worker.start()
        assert waited.wait(timeout=30)
        assert finished == [] and not (site / "device" / "index.json").exists()
    worker.join(timeout=60)
    assert len(finished) == 1 and (site / "device" / "index.json").is_file()


def _clean(repo: Path, tmp_path: Path) -> Path:
    """A clean build of ``repo`` into a fresh folder, to compare an incremental site with."""
    n = len(list(tmp_path.glob("clean-*")))
    site = tmp_path / f"clean-{n}"
    build(repo, site)
    return site


def test_a_package_changed_between_scan_and_copy_is_not_published_under_its_old_hash(tmp_path: Path) -> None:
    """The copy into site/files/<sha>/ is hashed on the way: other bytes never land there."""
    import hashlib

    from builder.publish import LEAF, InputChangedError, Output, Publisher
    from builder.state import BuildState

    package = tmp_path / "ax.1.0.pi64.tar.gz"
    package.write_bytes(b"the bytes the scan saw")
    scanned = hashlib.sha256(package.read_bytes()).hexdigest()
    package.write_bytes(b"a maintainer's cp over it!")  # same size, other bytes
    site = tmp_path / "site"
    output = Output(
        path=f"files/{scanned[:2]}/{scanned[2:16]}/ax.1.0.pi64.tar.gz",
        fingerprint=f"{package.stat().st_size}:{scanned}",
        media_type="application/gzip",
        tier=LEAF,
        source=package,
    )
    with pytest.raises(InputChangedError, match="changed during the build"):
        Publisher(site, BuildState(tmp_path / "state", {"site": str(site)})).publish({"test": [output]})
    assert [p for p in site.rglob("*") if p.is_file()] == []  # neither the file nor a temporary

"""The OTA reader and the shipper renderer: repo/builds/ → the static feeds, as files on disk
and as the route table that the runtime and nginx serve them from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder.build import build
from builder.errors import FormatError
from builder.formats import Source
from builder.nginx import nginx_config
from builder.routes import load_routes
from builder.settings import DEFAULT_OTA_PATTERN, load_settings, parse_settings
from builder.shipper.ota import OtaReader, derived_build_id, parse_build_name, read_build
from tests.support.paths import PROJECT
from tests.support.repos import bump_mtime, clean_build, site_tree
from tests.support.shipper import ANGLER, BULLHEAD, DREAM, SETTINGS, add_build, make_repo, ota_zip, sha256

FEED = "api/v1/updater/los/{}/{}/index.json"


def read_json(site: Path, rel: str):
    return json.loads((site / rel).read_bytes())


def routes(site: Path) -> dict[str, dict]:
    return {r["url"]: r for r in load_routes(site)}


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def test_default_pattern_is_shippers() -> None:
    settings = parse_settings({})
    assert settings.ota_filename_pattern == DEFAULT_OTA_PATTERN
    name = parse_build_name(f"{BULLHEAD}.zip", settings)
    assert (name.version, name.codename, name.variant, name.date) == (
        "v14",
        "bullhead",
        "gapps",
        "2020-06-08",
    )
    assert name.stem == BULLHEAD


def test_feed_has_shippers_fields_exactly_newest_first(repo: Path, tmp_path: Path) -> None:
    newer = add_build(repo, "Bliss-v14.1-bullhead-OFFICIAL-gapps-20200701")
    site = tmp_path / "site"
    build(repo, site)
    feed = read_json(site, FEED.format("bullhead", "gapps"))["response"]
    data = (repo / "builds/bullhead" / f"{BULLHEAD}.zip").read_bytes()
    assert [e["filename"] for e in feed] == [
        "Bliss-v14.1-bullhead-OFFICIAL-gapps-20200701.zip",
        f"{BULLHEAD}.zip",
    ]
    assert feed[1] == {
        "datetime": 1591574400,
        "filename": f"{BULLHEAD}.zip",
        "id": sha256(data),
        "size": len(data),
        "version": "v14",
        "variant": "gapps",
        "url": f"https://store.example/download_check/bullhead/{BULLHEAD}/",
        "romtype": "OFFICIAL",  # no device setting, no [ota] romtype: shipper's default naming
    }
    assert feed[0]["datetime"] == 1593561600 and feed[0]["id"] == sha256(newer)
    # romtype only where the device declares one, so stock LineageOS updaters accept the entries
    assert read_json(site, FEED.format("dream2lte", "gapps"))["response"][0]["romtype"] == "OFFICIAL"


def test_error_answers_are_static_files_with_their_status(repo: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    build(repo, site)
    table = routes(site)
    vanilla = table["/api/v1/updater/los/bullhead/vanilla/"]
    assert vanilla["status"] == 404
    assert read_json(site, vanilla["file"]) == {"message": "No builds exist for the specified variant yet!"}
    x86 = table["/api/v1/updater/los/x86/gapps/"]
    assert x86["status"] == 400
    assert read_json(site, x86["file"]) == {"message": "This endpoint is for arm devices only."}
    assert table["/api/v1/general/build/latest/nobuild/gapps/"]["status"] == 404
    assert "status" not in table["/api/v1/updater/los/bullhead/gapps/"]
    config = nginx_config(site, "127.0.0.1:8000")
    assert 'location = "/api/v1/updater/los/bullhead/vanilla/" {' in config
    assert "error_page 404 /_depot_site/api/v1/updater/los/bullhead/vanilla/index.json;" in config
    assert "return 404;" in config


def test_device_list_latest_and_system_info(repo: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    build(repo, site)
    devices = read_json(site, "api/v1/general/device/all/index.json")
    assert devices["bullhead"] == {"status": True, "variants": ["gapps"], "note": ""}
    assert devices["angler"] == {"status": False, "variants": ["vanilla"], "note": ""}
    assert devices["nobuild"] == {"status": False, "variants": [], "note": ""}
    latest = read_json(site, "api/v1/general/build/latest/bullhead/gapps/index.json")
    assert set(latest) == {
        "datetime",
        "filename",
        "sha256",
        "size",
        "version",
        "variant",
        "mirror_url",
        "metadata",
    }
    assert latest["mirror_url"] == (
        f"https://store.example/api/v1/general/build/magic_download/bullhead/{BULLHEAD}/"
    )
    info = read_json(site, "api/v2/system/info/index.json")
    assert info["shippy_upload_checksum_type"] == "sha256"
    assert info["shippy_upload_variants"]["vanilla"] == "Vanilla (no GApps)"
    assert info["shippy_allowed_versions"] == "v14*\nv15"


def test_base_url_makes_download_urls_absolute(repo: Path, tmp_path: Path) -> None:
    text = (repo / "depot.toml").read_text().replace("[ota]\n", '[ota]\nbase_url = "https://ota.example/"\n')
    (repo / "depot.toml").write_text(text)
    site = tmp_path / "site"
    build(repo, site)
    entry = read_json(site, FEED.format("angler", "vanilla"))["response"][0]
    assert entry["url"] == f"https://ota.example/download_check/angler/{ANGLER}/"


def test_sidecars_disable_and_set_the_build_id(repo: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    build(repo, site)
    zip_path = repo / "builds/bullhead" / f"{BULLHEAD}.zip"
    settings = load_settings(repo)
    assert read_build(Source(repo, f"builds/bullhead/{BULLHEAD}.zip", settings)).build_id == derived_build_id(
        "bullhead", f"{BULLHEAD}.zip"
    )
    zip_path.with_name(zip_path.name + ".toml").write_text("enabled = false\nbuild_id = 7\n")
    build(repo, site)
    assert routes(site)["/api/v1/updater/los/bullhead/gapps/"]["status"] == 404
    assert read_json(site, "api/v1/general/device/all/index.json")["bullhead"]["variants"] == []
    assert read_build(Source(repo, f"builds/bullhead/{BULLHEAD}.zip", settings)).build_id == 7
    # incremental equals clean
    assert site_tree(site) == clean_build(repo, tmp_path / "clean")


def test_extra_named_groups_become_metadata(repo: Path, tmp_path: Path) -> None:
    text = (
        (repo / "depot.toml")
        .read_text()
        .replace(
            "[ota]\n",
            "[ota]\nfilename_pattern = '[A-Za-z]+-(?P<version>[a-z0-9.]+)-(?P<codename>[A-Za-z0-9_]+)-"
            "(?P<buildtype>[A-Z]+)-(?P<variant>[a-z]+)-(?P<date>[0-9]{8}).zip'\n",
        )
    )
    (repo / "depot.toml").write_text(text)
    site = tmp_path / "site"
    build(repo, site)
    latest = read_json(site, "api/v1/general/build/latest/bullhead/gapps/index.json")
    assert latest["metadata"] == {"buildtype": "OFFICIAL"}


@pytest.mark.parametrize(
    ("name", "folder", "reason"),
    [
        ("whatever.zip", "bullhead", "malformed"),
        (f"{BULLHEAD}.zip", "angler", "says device 'bullhead'"),
        ("Bliss-v14-zzz-OFFICIAL-gapps-20200608.zip", "zzz", "not declared in [ota] devices"),
        ("Bliss-v14-bullhead-OFFICIAL-milkshake-20200608.zip", "bullhead", "variant 'milkshake'"),
        ("Bliss-v13-bullhead-OFFICIAL-gapps-20200608.zip", "bullhead", "allowed_versions"),
        ("Bliss-v14-bullhead-OFFICIAL-gapps-20201340.zip", "bullhead", "not a real YYYYMMDD date"),
    ],
)
def test_bad_builds_are_skipped_with_a_reason(
    repo: Path, tmp_path: Path, name: str, folder: str, reason: str
) -> None:
    ota_zip(repo / "builds" / folder / name)
    result = build(repo, tmp_path / "site")
    assert reason in result.skipped[f"builds/{folder}/{name}"]
    assert len(read_json(tmp_path / "site", FEED.format("bullhead", "gapps"))["response"]) == 1


def test_damaged_zip_and_wrong_checksum_are_refused(repo: Path, tmp_path: Path) -> None:
    zip_path = repo / "builds/bullhead" / f"{BULLHEAD}.zip"
    reader, settings = OtaReader(), load_settings(repo)
    source = Source(repo, f"builds/bullhead/{BULLHEAD}.zip", settings)
    zip_path.with_name(zip_path.name + ".sha256").write_text("0" * 64 + f"  {zip_path.name}\n")
    with pytest.raises(FormatError, match="hashes to"):
        reader.read(source)
    zip_path.with_name(zip_path.name + ".sha256").unlink()
    assert reader.read(source)  # no sidecar: the reader hashes the file itself
    zip_path.write_bytes(zip_path.read_bytes()[:-30])  # truncated: no central directory
    with pytest.raises(FormatError, match="not a readable zip"):
        reader.read(source)
    zip_path.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        reader.read(source)


def test_builder_never_writes_into_repo(repo: Path, tmp_path: Path) -> None:
    zip_path = repo / "builds/bullhead" / f"{BULLHEAD}.zip"
    zip_path.with_name(zip_path.name + ".sha256").unlink()
    before = sorted(p.name for p in repo.rglob("*"))
    build(repo, tmp_path / "site")
    assert sorted(p.name for p in repo.rglob("*")) == before
    assert read_json(tmp_path / "site", FEED.format("bullhead", "gapps"))["response"][0]["id"] == sha256(
        zip_path.read_bytes()
    )


def test_settings_change_rereads_builds(repo: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    build(repo, site)
    settings_file = repo / "depot.toml"
    settings_file.write_text(settings_file.read_text().replace('["v14*", "v15"]', '["v15"]'))
    bump_mtime(settings_file)
    result = build(repo, site)
    assert f"builds/bullhead/{BULLHEAD}.zip" in result.skipped
    assert routes(site)["/api/v1/updater/los/bullhead/gapps/"]["status"] == 404


def test_demo_builds_are_reproducible(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(PROJECT / "scripts/demo/ota.py"), str(tmp_path)], check=True, capture_output=True
    )
    for made in (tmp_path / "builds").rglob("*"):
        if made.is_file():
            assert made.read_bytes() == (PROJECT / "repo" / made.relative_to(tmp_path)).read_bytes(), made


def test_settings_fixture_parses() -> None:
    import tomllib

    settings = parse_settings(tomllib.loads(SETTINGS))
    assert [t.codename for t in settings.ota_x86_types] == ["go"]
    assert DREAM.startswith("Bliss")


def test_without_a_base_url_no_build_is_published_and_the_build_says_what_to_set(tmp_path: Path) -> None:
    """LineageOS Updater and BlissUpdater open feed URLs with `new URL(url)`: a root-relative
    URL throws "no protocol", so a feed with one would be useless to every updater."""
    repo = make_repo(tmp_path / "repo")
    toml = repo / "depot.toml"
    toml.write_text(toml.read_text().replace('base_url = "https://store.example"\n', ""))
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "build", "--repo", str(repo), "--site", str(tmp_path / "site")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        f"warning: skipped builds/bullhead/{BULLHEAD}.zip: OTA feeds need absolute download URLs"
        in done.stderr
    )
    assert "set [store] base_url in depot.toml" in done.stderr
    answer = read_json(tmp_path / "site", FEED.format("bullhead", "gapps"))
    assert "response" not in answer  # the static "no builds" answer, not a feed of broken URLs


@pytest.mark.parametrize(
    ("device_romtype", "store_romtype", "pattern_group", "expected"),
    [
        ("Nightly", "RELEASE", "SNAPSHOT", "Nightly"),  # the device's setting first
        ("", "RELEASE", "SNAPSHOT", "RELEASE"),  # then the store's [ota] romtype
        ("", "", "SNAPSHOT", "SNAPSHOT"),  # then the file name's romtype group
        ("", "", None, "OFFICIAL"),  # then shipper's default naming
    ],
)
def test_every_feed_entry_carries_a_romtype(
    tmp_path: Path, device_romtype: str, store_romtype: str, pattern_group: str | None, expected: str
) -> None:
    kind = pattern_group or "OFFICIAL"
    group = "(?P<romtype>[A-Z]+)" if pattern_group else "OFFICIAL"
    pattern = (
        rf"[A-Za-z]+-(?P<version>[a-z0-9.]+)-(?P<codename>[A-Za-z0-9_]+)-{group}-(?P<variant>[a-z]+)"
        r"-(?P<date>[0-9]{8})\.zip"
    )
    repo = tmp_path / "repo"
    (repo / "builds" / "bullhead").mkdir(parents=True)
    (repo / "depot.toml").write_text(
        f'[store]\nbase_url = "https://store.example"\n[ota]\nromtype = "{store_romtype}"\n'
        f"filename_pattern = '{pattern}'\n"
        f'devices = [{{ codename = "bullhead", romtype = "{device_romtype}" }}]\n'
        'variants = [{ codename = "gapps" }]\n'
    )
    name = f"Bliss-v14-bullhead-{kind}-gapps-20200608.zip"
    ota_zip(repo / "builds" / "bullhead" / name)
    result = build(repo, tmp_path / "site")
    assert result.skipped == {}
    (entry,) = read_json(tmp_path / "site", FEED.format("bullhead", "gapps"))["response"]
    assert entry["romtype"] == expected

"""Signed TUF metadata (builder/trust/): python-tuf's own client is the judge.

Each test makes a key folder, builds the demo store with it, serves site/ over real HTTP and
lets ``tuf.ngclient.Updater`` (trusting the published ``1.root.json``) refresh and download, as
a device would (docs/device-index.md, "Signed metadata (TUF)").
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata

import builder.trust.metadata
import builder.trust.timestamp
from builder.build import build, retained_history, state_dir_for
from builder.errors import TrustError
from builder.routes import load_routes
from builder.trust.keys import describe, init_keys, open_keys, renew_root, rotate
from builder.trust.resign import sign_timestamp
from tests.support.device_index import current_shards, shard_files
from tests.support.paths import PROJECT
from tests.support.repos import add_module, assert_same_tree, bump_mtime, copy_demo, run_depot, site_tree
from tests.support.trust import fetch, serve_site, updater

MODULE = "modules/ax.2.6.4.pi64.tar.gz"


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(repo, site, keys): the demo store and a fresh key folder, not built yet."""
    repo, site, keys = copy_demo(tmp_path / "repo"), tmp_path / "site", tmp_path / "keys"
    init_keys(keys)
    return repo, site, keys


def signed(site: Path, name: str) -> dict:
    return json.loads((site / "tuf" / name).read_bytes())["signed"]


def timestamp_version(site: Path) -> int:
    return signed(site, "timestamp.json")["version"]


def module_target(site: Path) -> str:
    """The site path of ax 2.6.4's package file, as its shard of the device index names it."""
    targets = signed(site, "1.targets.json")["targets"]
    return next(p for p in targets if p.startswith("files/") and p.endswith("ax.2.6.4.pi64.tar.gz"))


def test_a_device_verifies_the_built_site(store: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    assert sorted(os.listdir(site / "tuf")) == [
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "root.json",
        "timestamp.json",
    ]
    targets = signed(site, "1.targets.json")["targets"]
    # What a client reads: the device index (the entry and every shard it names), the Android
    # catalog and the public package files; not the web catalog, Qt or OTA files.
    shards = current_shards(site)
    assert {p for p in targets if p.startswith("device/")} == {"device/index.json"} | shards
    assert shard_files(site, "pi64") and shard_files(site, "opi64")
    assert "android/index.json" in targets and any(p.startswith("android/packages/") for p in targets)
    assert any(p.endswith(".apk") for p in targets)
    assert not [p for p in targets if not p.startswith(("device/", "android/", "files/"))]
    for path, info in targets.items():
        data = (site / path).read_bytes()
        assert info == {"length": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()}}
    routes = {r["url"] for r in load_routes(site)}
    assert {"/tuf/1.root.json", "/tuf/root.json", "/tuf/1.targets.json", "/tuf/timestamp.json"} <= routes

    root = (site / "tuf" / "1.root.json").read_bytes()
    assert (
        root == (keys / "metadata" / "1.root.json").read_bytes() == (site / "tuf" / "root.json").read_bytes()
    )
    with serve_site(site) as url:
        entry = fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)
        assert entry == (site / "device" / "index.json").read_bytes()
        package = fetch(url, tmp_path / "device", tmp_path / "dl", module_target(site))
        assert package == (repo / MODULE).read_bytes()


def test_an_update_gets_new_versions_that_a_device_accepts(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    root = (site / "tuf" / "1.root.json").read_bytes()
    with serve_site(site) as url:
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)
        first_shards = current_shards(site)
        add_module(repo, "ax", "2.7.0", "pi64")
        build(repo, site, keys=keys)
        retired = first_shards - current_shards(site)  # ax's old shard, kept for older entries
        assert len(retired) == 1 and retired == retained_history(site) & first_shards
        assert signed(site, "timestamp.json")["meta"]["snapshot.json"]["version"] == 2
        assert signed(site, "2.snapshot.json")["meta"]["targets.json"]["version"] == 2
        # The old versions stay (retained), for a device that fetched the older timestamp.
        assert (site / "tuf" / "1.targets.json").exists() and (site / "tuf" / "1.snapshot.json").exists()
        client = updater(url, tmp_path / "device", tmp_path / "dl")  # the metadata it kept
        client.refresh()
        new = next(p for p in signed(site, "2.targets.json")["targets"] if p.endswith("ax.2.7.0.pi64.tar.gz"))
        info = client.get_targetinfo(new)
        assert info is not None
        assert (
            Path(client.download_target(info)).read_bytes()
            == (repo / "modules/ax.2.7.0.pi64.tar.gz").read_bytes()
        )
        for shard in shard_files(site, "pi64"):  # every current shard, the new one included
            shard_info = client.get_targetinfo(shard)
            assert shard_info is not None, shard
            assert Path(client.download_target(shard_info)).read_bytes() == (site / shard).read_bytes()
        [old_shard] = retired
        assert (site / old_shard).is_file() and client.get_targetinfo(old_shard) is None  # not a target
    # Incremental equals clean with the same key folder: all but the retained history (the old
    # targets and snapshot) and the timestamp, the one file signed with the clock.
    clean = tmp_path / "clean"
    build(repo, clean, keys=keys)
    ours, theirs = site_tree(site), site_tree(clean)
    ours.pop("tuf/timestamp.json"), theirs.pop("tuf/timestamp.json")
    assert_same_tree(ours, theirs)


def test_no_change_writes_nothing_and_a_clean_build_reproduces_the_metadata(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    again = build(repo, site, keys=keys)
    assert again.written == [] and again.deleted == []
    # A full rebuild (every file of site/ checked, the trust step run) reuses every signed file too.
    assert build(repo, site, keys=keys, full=True).written == []
    clean = tmp_path / "clean"
    build(repo, clean, keys=keys)
    # timestamp.json is the one file signed with the clock; here it is even reused, because the
    # key folder remembers it and it names the same snapshot, but only the rest is promised.
    ours, theirs = site_tree(site), site_tree(clean)
    assert {k: v for k, v in ours.items() if k != "tuf/timestamp.json"} == {
        k: v for k, v in theirs.items() if k != "tuf/timestamp.json"
    }


def test_a_wiped_site_goes_on_with_higher_versions(store: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    add_module(repo, "ax", "2.7.0", "pi64")
    other = tmp_path / "other"
    build(repo, other, keys=keys)  # a new site from the same key folder
    assert (other / "tuf" / "2.targets.json").exists() and not (other / "tuf" / "1.targets.json").exists()
    assert timestamp_version(other) == 2


def test_expiry_follows_the_newest_input_not_the_clock(store: tuple[Path, Path, Path]) -> None:
    repo, site, keys = store
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC).timestamp()
    for path in repo.rglob("*"):
        os.utime(path, (old, old))
    newest = datetime.datetime(2020, 3, 1, 12, 30, 5, tzinfo=datetime.UTC).timestamp()
    os.utime(repo / MODULE, (newest + 0.7, newest + 0.7))
    result = build(repo, site, keys=keys)
    # 365 days later (2020 is a leap year)
    assert signed(site, "1.targets.json")["expires"] == "2021-03-01T12:30:05Z"
    assert signed(site, "1.snapshot.json")["expires"] == "2021-03-01T12:30:05Z"
    assert any("targets metadata (version 1) expired" in w for w in result.warnings)
    report = json.loads((state_dir_for(site) / "report.json").read_bytes())
    assert report["warnings"] == result.warnings
    # A touched file extends the expiry: a new version, though the content is the same.
    later = newest + 86400
    os.utime(repo / MODULE, (later, later))
    build(repo, site, keys=keys)
    assert signed(site, "2.targets.json")["expires"] == "2021-03-02T12:30:05Z"
    assert signed(site, "2.targets.json")["targets"] == signed(site, "1.targets.json")["targets"]


def test_trust_settings_set_the_validity(store: tuple[Path, Path, Path]) -> None:
    repo, site, keys = store
    with (repo / "depot.toml").open("a", encoding="utf-8") as f:
        f.write("\n[trust]\ntargets_days = 30\nsnapshot_days = 10\ntimestamp_hours = 2\n")
    build(repo, site, keys=keys)
    newest = max(p.stat().st_mtime for p in repo.rglob("*") if p.is_file() and not p.name.startswith("."))
    base = datetime.datetime.fromtimestamp(int(newest), datetime.UTC)
    assert signed(site, "1.targets.json")["expires"] == (base + datetime.timedelta(days=30)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert signed(site, "1.snapshot.json")["expires"] == (base + datetime.timedelta(days=10)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    stamp = datetime.datetime.strptime(signed(site, "timestamp.json")["expires"], "%Y-%m-%dT%H:%M:%SZ")
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert datetime.timedelta(hours=1, minutes=58) < stamp - now <= datetime.timedelta(hours=2)


def test_the_timestamp_is_signed_again_when_half_its_validity_is_gone(
    store: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    assert build(repo, site, keys=keys).written == []  # the fast path
    later = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(hours=13)
    monkeypatch.setattr(builder.trust.timestamp, "utc_now", lambda: later)
    monkeypatch.setattr(builder.trust.metadata, "utc_now", lambda: later)
    result = build(repo, site, keys=keys)
    assert result.written == ["tuf/timestamp.json"]
    assert timestamp_version(site) == 2
    with serve_site(site) as url:
        root = (site / "tuf" / "1.root.json").read_bytes()
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)


def test_rotated_keys_and_roots_are_accepted_by_a_device_that_trusts_the_old_root(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    first_root = (site / "tuf" / "1.root.json").read_bytes()
    old_targets_key = next((keys / "targets").iterdir()).name
    with serve_site(site) as url:
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=first_root)

        assert rotate(keys, "targets") == 2
        assert (keys / "retired" / "targets" / old_targets_key).exists()
        build(repo, site, keys=keys)
        assert (site / "tuf" / "2.root.json").exists()
        assert json.loads((site / "tuf" / "2.targets.json").read_bytes())["signatures"][0]["keyid"] != (
            old_targets_key.removesuffix(".pem")
        )
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json")  # it kept root 1

        assert rotate(keys, "root") == 3
        assert rotate(keys, "timestamp") == 4
        build(repo, site, keys=keys)
        assert len(json.loads((site / "tuf" / "3.root.json").read_bytes())["signatures"]) == 2  # old, new
        device = updater(url, tmp_path / "device", tmp_path / "dl")  # trusts root 2
        device.refresh()
        assert Metadata.from_file(str(tmp_path / "device" / "root.json")).signed.version == 4
        # A new device bootstrapped with 1.root.json walks the whole chain.
        fetch(url, tmp_path / "fresh", tmp_path / "dl2", "device/index.json", trusted_root=first_root)
        assert renew_root(keys) == 5


def test_offline_root_keys(store: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo, site, keys = store
    for key in (keys / "root").iterdir():
        key.unlink()  # moved to offline storage
    build(repo, site, keys=keys)
    add_module(repo, "ax", "2.7.0", "pi64")
    build(repo, site, keys=keys)
    with serve_site(site) as url:
        root = (site / "tuf" / "1.root.json").read_bytes()
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)
    with pytest.raises(TrustError, match="the root role needs 1 of its keys"):
        rotate(keys, "targets")


def test_a_targets_threshold_of_two(tmp_path: Path) -> None:
    repo, site, keys = copy_demo(tmp_path / "repo"), tmp_path / "site", tmp_path / "keys"
    init_keys(keys, targets_keys=3, targets_threshold=2, root_keys=2, root_threshold=2)
    build(repo, site, keys=keys)
    assert len(json.loads((site / "tuf" / "1.targets.json").read_bytes())["signatures"]) == 3
    assert len(json.loads((site / "tuf" / "1.root.json").read_bytes())["signatures"]) == 2
    with serve_site(site) as url:
        root = (site / "tuf" / "1.root.json").read_bytes()
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)
    held = sorted((keys / "targets").iterdir())
    held[0].unlink()
    add_module(repo, "ax", "2.7.0", "pi64")
    build(repo, site, keys=keys)  # two of three still sign
    assert len(json.loads((site / "tuf" / "2.targets.json").read_bytes())["signatures"]) == 2
    held[1].unlink()
    add_module(repo, "ax", "2.8.0", "pi64")
    with pytest.raises(TrustError, match=r"the targets role needs 2 of its keys to sign, but .* holds 1"):
        build(repo, site, keys=keys)
    assert not (site / "tuf" / "3.targets.json").exists()


def test_sign_timestamp_bumps_the_version_and_the_next_build_goes_above_it(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    assert sign_timestamp(repo, site, keys, force=False) is None  # not due
    version, _expires = sign_timestamp(repo, site, keys) or (0, "")
    assert version == timestamp_version(site) == 2
    assert build(repo, site, keys=keys).written == []  # the manifest knows the new file
    with serve_site(site) as url:
        root = (site / "tuf" / "1.root.json").read_bytes()
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)
        # keys/ forgot (a restored backup): the version on disk still counts.
        (keys / "metadata" / "timestamp.json").unlink()
        add_module(repo, "ax", "2.7.0", "pi64")
        build(repo, site, keys=keys)
        assert timestamp_version(site) == 3
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json")


def test_the_key_folder_is_private(store: tuple[Path, Path, Path]) -> None:
    _repo, _site, keys = store
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    pems = list(keys.rglob("*.pem"))
    assert len(pems) == 4
    assert {stat.S_IMODE(p.stat().st_mode) for p in pems} == {0o600}
    assert {stat.S_IMODE(p.parent.stat().st_mode) for p in pems} == {0o700}
    pems[0].chmod(0o644)
    with pytest.raises(TrustError, match="chmod 600"):
        open_keys(keys).signers(pems[0].parent.name)


def test_key_folders_inside_repo_or_site_are_refused(store: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo, site, _keys = store
    init_keys(repo / "keys")
    with pytest.raises(TrustError, match="inside the repo folder"):
        build(repo, site, keys=repo / "keys")
    site.mkdir()
    result = run_depot("keys", "init", "--repo", str(repo), "--site", str(site), "--keys", str(site / "k"))
    assert result.returncode == 1 and "inside the site folder" in result.stderr
    assert not (site / "k").exists()


def test_init_refuses_an_existing_folder_and_bad_thresholds(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _repo, _site, keys = store
    with pytest.raises(TrustError, match="already exists"):
        init_keys(keys)
    with pytest.raises(TrustError, match="threshold"):
        init_keys(tmp_path / "k2", targets_keys=1, targets_threshold=2)
    assert not (tmp_path / "k2").exists()


def test_the_commands(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    init = run_depot("keys", "init", "--root-keys", "2", "--root-threshold", "2", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    digest = init.stdout.split("1.root.json): ")[1].split()[0]
    missing = run_depot("build", "--keys", "nowhere", cwd=tmp_path)
    assert missing.returncode != 0 and "key folder nowhere does not exist" in missing.stderr
    built = run_depot("build", cwd=tmp_path)  # ./keys by default
    assert built.returncode == 0, built.stderr
    assert hashlib.sha256((tmp_path / "site/tuf/1.root.json").read_bytes()).hexdigest() == digest
    show = run_depot("keys", "show", cwd=tmp_path)
    assert show.returncode == 0 and digest in show.stdout and "root: threshold 2 of 2" in show.stdout
    assert "targets: threshold 1 of 1, version 1" in show.stdout
    resign = run_depot("sign-timestamp", cwd=tmp_path)
    assert resign.returncode == 0 and "timestamp version 2 signed" in resign.stdout, resign.stderr
    rotated = run_depot("keys", "rotate", "snapshot", cwd=tmp_path)
    assert rotated.returncode == 0 and "root version 2" in rotated.stdout, rotated.stderr
    assert describe(tmp_path / "keys")["root_version"] == 2
    assert run_depot("build", cwd=tmp_path).returncode == 0
    assert (tmp_path / "site/tuf/2.snapshot.json").exists()
    del repo


def test_a_build_without_keys_neither_signs_nor_imports_tuf(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    code = (
        "import sys; from pathlib import Path; from builder.cli import run_build, Store;"
        f"run_build(Store(Path({str(repo)!r}), Path({str(tmp_path / 'site')!r}), Path('var')), quiet=True);"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tuf', 'securesystemslib')];"
        "assert not bad, bad"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "site" / "tuf").exists()


def test_a_tampered_target_is_refused_by_the_device(store: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    entry = site / "device" / "index.json"
    entry.write_bytes(entry.read_bytes().replace(b"Depot", b"Evil!"))
    bump_mtime(entry)
    with serve_site(site) as url, pytest.raises(RepositoryError):
        root = (site / "tuf" / "1.root.json").read_bytes()
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)


def test_a_tampered_shard_is_refused_by_the_device(store: tuple[Path, Path, Path], tmp_path: Path) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    shard = site / shard_files(site, "pi64")[0]
    shard.write_bytes(shard.read_bytes().replace(b'"schema"', b'"scheme"'))
    bump_mtime(shard)
    with serve_site(site) as url, pytest.raises(RepositoryError):
        root = (site / "tuf" / "1.root.json").read_bytes()
        fetch(url, tmp_path / "device", tmp_path / "dl", shard_files(site, "pi64")[0], trusted_root=root)


def test_nginx_serves_the_metadata_and_revalidates_it(store: tuple[Path, Path, Path]) -> None:
    from builder.nginx import nginx_config

    repo, site, keys = store
    build(repo, site, keys=keys)
    config = nginx_config(site, upstream="127.0.0.1:8000")
    for url in ("/tuf/timestamp.json", "/tuf/root.json", "/tuf/1.targets.json"):
        block = config.split(f'location = "{url}" {{', 1)[1].split("\n    }", 1)[0]
        assert 'add_header Cache-Control "no-cache";' in block
        assert f"try_files {url} @depot;" in block


def test_a_key_folder_restored_from_an_older_backup_never_goes_back(
    store: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    backup = {role: (keys / "metadata" / f"{role}.json").read_bytes() for role in ("targets", "snapshot")}
    add_module(repo, "ax", "2.7.0", "pi64")
    build(repo, site, keys=keys)
    for role, data in backup.items():
        (keys / "metadata" / f"{role}.json").write_bytes(data)  # version 1 again
    build(repo, site, keys=keys, full=True)  # same content as version 2, signed again
    assert (site / "tuf" / "3.targets.json").exists() and (site / "tuf" / "3.snapshot.json").exists()
    with serve_site(site) as url:
        root = (site / "tuf" / "1.root.json").read_bytes()
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=root)


def test_a_signed_site_is_never_published_unsigned_by_accident(store: tuple[Path, Path, Path]) -> None:
    repo, site, keys = store
    build(repo, site, keys=keys)
    before = site_tree(site)
    with pytest.raises(TrustError, match="is signed"):
        build(repo, site)  # e.g. `depot rollout pause` run without --keys
    assert site_tree(site) == before
    # Dropping the signatures is a decision: delete tuf/ first.
    for path in sorted((site / "tuf").iterdir()):
        path.unlink()
    build(repo, site)
    assert not (site / "tuf").exists()


def test_a_root_threshold_of_two_rotates_with_two_of_three_keys(tmp_path: Path) -> None:
    repo, site, keys = copy_demo(tmp_path / "repo"), tmp_path / "site", tmp_path / "keys"
    init_keys(keys, root_keys=3, root_threshold=2)
    build(repo, site, keys=keys)
    first_root = (site / "tuf" / "1.root.json").read_bytes()
    root_keys = sorted((keys / "root").iterdir())
    root_keys[0].unlink()  # one root key holder is away: two of three still rotate
    assert rotate(keys, "targets") == 2
    build(repo, site, keys=keys)
    second = json.loads((site / "tuf" / "2.root.json").read_bytes())
    assert second["signed"]["roles"]["root"]["threshold"] == 2
    assert len(second["signatures"]) >= 2
    with serve_site(site) as url:
        fetch(url, tmp_path / "device", tmp_path / "dl", "device/index.json", trusted_root=first_root)
    root_keys[1].unlink()  # one of three left: below the threshold, nothing is signed
    with pytest.raises(TrustError, match="the root role needs 2 of its keys"):
        rotate(keys, "targets")
    assert not (keys / "metadata" / "3.root.json").exists()

"""`depot device ...` and `depot rollout ...` with click's CliRunner, on a built store."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from builder.build import build
from runtime.cli import main
from runtime.storage import open_database
from tests.runtime.device.conftest import make_repo
from tests.support.database import dump_database
from tests.support.device_index import package as find_package
from tests.support.device_index import platform_packages


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo, site, data = make_repo(tmp_path / "repo"), tmp_path / "site", tmp_path / "var"
    build(repo, site)
    return repo, site, data


def depot(folders: tuple[Path, Path, Path], *args: str) -> Result:
    repo, site, data = folders
    where = ["--repo", str(repo), "--site", str(site), "--data", str(data)]
    return CliRunner().invoke(main, [*args, *where])


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def entry(site: Path, platform: str, name: str = "ax", version: str = "2.6.4", kind: str = "modules") -> dict:
    package = find_package(platform_packages(site, platform), name, kind)
    return next(v for v in package["versions"] if v["version"] == version)


def sidecar(repo: Path, relpath: str) -> dict:
    path = repo / (relpath + ".toml")
    return tomllib.loads(path.read_text()) if path.exists() else {}


def test_device_add_prints_the_token_once_and_keeps_only_its_hash(folders) -> None:
    result = depot(folders, "device", "add", "robot-1", "--groups", "lab,beta")
    raw = ok(result).strip()
    assert raw.startswith("depot_device_") and "\n" not in raw
    assert "not shown again" in result.stderr
    db = open_database(folders[2])
    try:
        dump = dump_database(db)
        [(stored_hash, purpose, owner)] = db.execute(
            "SELECT t.token_hash, t.purpose, u.name FROM tokens t JOIN users u ON u.id = t.user_id"
        ).fetchall()
    finally:
        db.close()
    assert raw not in dump
    assert stored_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert (purpose, owner) == ("device", "@devices")
    listing = ok(depot(folders, "device", "list"))
    assert listing.splitlines()[0] == "name\tgroups\tcreated\tlast_report\tagent_version\tinstalled"
    assert listing.splitlines()[1].startswith("robot-1\tbeta,lab\t")
    assert raw not in listing
    again = depot(folders, "device", "add", "robot-1")
    assert again.exit_code != 0 and "already enrolled" in again.output


def test_the_devices_account_cannot_log_in_or_be_taken_over(folders) -> None:
    from runtime.accounts import AccountError, Accounts
    from runtime.storage import open_database

    ok(depot(folders, "device", "add", "robot-1"))
    db = open_database(folders[2])
    try:
        assert Accounts(db).authenticate("@devices", "!") is None
        with pytest.raises(AccountError):
            Accounts(db).add("@devices", "a-new-password")
        assert Accounts(db).get("@devices").staff is False  # type: ignore[union-attr]
    finally:
        db.close()


@pytest.mark.parametrize(
    "args",
    [("device", "add", "bad/name"), ("device", "add", "x" * 65), ("device", "add", "ok", "--groups", "a b")],
)
def test_bad_names_and_groups_are_refused(folders, args: tuple[str, ...]) -> None:
    result = depot(folders, *args)
    assert result.exit_code == 1 and result.output.startswith("Error: invalid")


def test_device_groups_and_remove(folders) -> None:
    ok(depot(folders, "device", "add", "robot-1"))
    assert "beta, lab" in ok(depot(folders, "device", "groups", "robot-1", "--set", "lab,beta,lab"))
    assert "\tbeta,lab\t" in ok(depot(folders, "device", "list"))
    assert "none" in ok(depot(folders, "device", "groups", "robot-1", "--set", ""))
    ok(depot(folders, "device", "remove", "robot-1"))
    assert len(ok(depot(folders, "device", "list")).splitlines()) == 1
    db = open_database(folders[2])
    assert [tuple(r) for r in db.execute("SELECT revoked FROM tokens").fetchall()] == [(1,)]
    db.close()
    missing = depot(folders, "device", "remove", "robot-1")
    assert missing.exit_code == 1 and "no device" in missing.output
    assert depot(folders, "device", "groups", "ghost", "--set", "a").exit_code == 1


def test_rollout_set_pause_resume_write_the_sidecars_and_rebuild(folders) -> None:
    repo, site, _data = folders
    (repo / "modules" / "ax.2.6.4.pi64.tar.gz.toml").write_text('description = "Motion"\n')
    out = ok(
        depot(
            folders,
            "rollout",
            "set",
            "ax",
            "2.6.4",
            "--share",
            "0.25",
            "--groups",
            "beta",
            "--max-failure-rate",
            "0.2",
            "--min-devices",
            "5",
        )
    )
    assert "published:" in out
    for platform in ("pi64", "opi64"):
        assert entry(site, platform)["rollout"] == {"share": 0.25, "groups": ["beta"], "paused": False}
    assert sidecar(repo, "modules/ax.2.6.4.pi64.tar.gz") == {
        "description": "Motion",
        "rollout": 0.25,
        "groups": ["beta"],
        "max_failure_rate": 0.2,
        "min_devices": 5,
    }
    assert "rollout" not in entry(site, "pi64", version="2.6.3")  # another version is untouched

    ok(depot(folders, "rollout", "pause", "ax", "2.6.4"))
    assert entry(site, "pi64")["rollout"]["paused"] is True
    assert (
        sidecar(repo, "modules/ax.2.6.4.opi64.tar.gz")["paused_reason"]
        == "paused by hand (depot rollout pause)"
    )

    ok(depot(folders, "rollout", "resume", "ax", "2.6.4"))
    written = sidecar(repo, "modules/ax.2.6.4.pi64.tar.gz")
    assert "paused" not in written and "paused_reason" not in written and written["description"] == "Motion"
    assert entry(site, "pi64")["rollout"]["paused"] is False

    ok(
        depot(
            folders,
            "rollout",
            "set",
            "ax",
            "2.6.4",
            "--share",
            "1",
            "--groups",
            "",
            "--max-failure-rate",
            "off",
        )
    )
    assert "rollout" not in entry(site, "pi64")  # every device, now: the index states no rule
    assert sidecar(repo, "modules/ax.2.6.4.pi64.tar.gz") == {
        "description": "Motion",
        "rollout": 1.0,
        "min_devices": 5,
    }
    assert "unchanged" in ok(depot(folders, "rollout", "set", "ax", "2.6.4", "--share", "1"))


def test_rollout_of_one_platform_and_of_firmware(folders) -> None:
    repo, site, _data = folders
    ok(depot(folders, "rollout", "set", "ax", "2.6.4", "--share", "0.1", "--platform", "opi64"))
    assert entry(site, "opi64")["rollout"]["share"] == 0.1
    assert "rollout" not in entry(site, "pi64")
    ok(depot(folders, "rollout", "pause", "bottom-sensor", "1.4.3", "--firmware"))
    assert entry(site, "pi64", "bottom-sensor", "1.4.3", "firmware")["rollout"]["paused"] is True
    assert sidecar(repo, "firmware/bottom-sensor.1.4.3.pi64.bin")["paused"] is True


@pytest.mark.parametrize(
    "args",
    [
        ("rollout", "set", "ax", "9.9.9", "--share", "0.5"),
        ("rollout", "pause", "ax", "2.6.4", "--firmware"),
        ("rollout", "resume", "ax", "2.6.4", "--platform", "x86"),
        ("rollout", "status", "nothing", "1.0"),
    ],
)
def test_a_version_without_a_file_is_an_error(folders, args: tuple[str, ...]) -> None:
    result = depot(folders, *args)
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "has no file in" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("rollout", "set", "ax", "2.6.4"),
        ("rollout", "set", "ax", "2.6.4", "--share", "1.5"),
        ("rollout", "set", "ax", "2.6.4", "--max-failure-rate", "lots"),
        ("rollout", "set", "ax", "2.6.4", "--min-devices", "0"),
    ],
)
def test_bad_rollout_options_are_usage_errors(folders, args: tuple[str, ...]) -> None:
    assert depot(folders, *args).exit_code == 2


def test_rollout_status_prints_the_counts(folders) -> None:
    from runtime.device.store import Event, Report, enroll, record_report
    from runtime.dialects import load_dialects
    from runtime.storage import open_database

    ok(depot(folders, "rollout", "set", "ax", "2.6.4", "--share", "0.5", "--max-failure-rate", "0.3"))
    load_dialects()
    db = open_database(folders[2])
    try:
        for i, status in enumerate(("succeeded", "failed", "failed")):
            device, _raw = enroll(db, f"robot-{i}", [])
            event = Event(
                "install", "module", "ax", "2.6.4", status, status == "failed", "2026-12-01T10:00:00Z"
            )
            key = ("module", "ax", "2.6.4")
            record_report(db, device, Report("r", "0.1.0", "pi64", {}, (key,), (event,)), {key})
    finally:
        db.close()
    lines = ok(depot(folders, "rollout", "status", "ax", "2.6.4")).splitlines()
    assert lines[0] == "module ax 2.6.4 (opi64, pi64)"
    assert lines[1] == "share 0.5  groups all  paused no  max_failure_rate 0.3  min_devices 10"
    assert lines[2].split() == ["offered", "downloaded", "installed", "failed", "rolled_back", "failure_rate"]
    assert lines[3].split() == ["3", "0", "1", "2", "2", "0.67"]

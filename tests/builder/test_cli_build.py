"""`depot build` as a user runs it: defaults, the report, clear errors, one writer at a time."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from builder.build import build_lock
from tests.support.repos import (
    add_module,
    assert_site_usable,
    copy_demo,
    depot_argv,
    device_entries,
    run_depot,
    subprocess_env,
)


def test_defaults_are_repo_and_site_in_the_current_folder(tmp_path: Path) -> None:
    copy_demo(tmp_path / "repo")
    done = run_depot("build", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("published: ") and " written, " in done.stdout
    assert done.stderr == ""
    assert (tmp_path / "site" / "device" / "index.json").is_file()
    assert (tmp_path / ".site.depot").is_dir()  # its state, beside site/
    assert not (tmp_path / "var").exists()  # building needs no runtime state
    assert_site_usable(tmp_path / "site")


def test_repo_and_site_options_choose_the_folders(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "store" / "upload")
    done = run_depot("build", "--repo", "store/upload", "--site", "out/public", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "public" / "device" / "index.json").is_file()
    assert (tmp_path / "out" / ".public.depot").is_dir()
    assert not (tmp_path / "site").exists()
    assert device_entries(tmp_path / "out" / "public")["pi64"]["ax"] == ["2.6.4", "2.6.3"]
    assert repo.is_dir()


def test_report_prints_every_field_as_json(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    (repo / "modules" / "broken.1.0.pi64.tar.gz").write_bytes(b"not gzip")
    done = run_depot("build", "--report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {
        "files_written",
        "files_unchanged",
        "files_deleted",
        "bytes_written",
        "outputs",
        "inputs_read",
        "inputs_cached",
        "recovered_from_interrupted_build",
        "skipped",
        "timings_s",
        "written",
        "deleted",
    } <= set(report)
    assert report["files_written"] == len(report["written"]) == report["outputs"] > 0
    assert report["files_unchanged"] == 0 and report["deleted"] == [] and report["files_deleted"] == 0
    site = tmp_path / "site"
    assert report["bytes_written"] == sum((site / p).stat().st_size for p in report["written"])
    assert report["inputs_cached"] == 0 and report["inputs_read"] > 0
    assert report["recovered_from_interrupted_build"] is False
    assert report["skipped"] == {
        "modules/broken.1.0.pi64.tar.gz": report["skipped"]["modules/broken.1.0.pi64.tar.gz"]
    }
    assert "truncated or malformed archive" in report["skipped"]["modules/broken.1.0.pi64.tar.gz"]
    assert {"scan", "plan", "publish", "total"} <= set(report["timings_s"])
    assert all(isinstance(v, int | float) and v >= 0 for v in report["timings_s"].values())
    assert "warning: skipped modules/broken.1.0.pi64.tar.gz: truncated or malformed archive" in done.stderr
    # the same report is kept beside site/, never inside it
    kept = json.loads((tmp_path / ".site.depot" / "report.json").read_bytes())
    assert kept["written"] == report["written"]


def test_quiet_prints_only_warnings(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    (repo / "firmware" / "blank.1.0.pi64.bin").write_bytes(b"")
    done = run_depot("build", "--quiet", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == ""
    assert done.stderr.strip() == "warning: skipped firmware/blank.1.0.pi64.bin: empty firmware image"


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (b"[store\nname = 'x'\n", "Expected ']'"),
        (b"[qt]\napi_version = 'two'\n", '[qt] api_version must be a positive integer, not "two"'),
        (b"[device]\nplatforms = 'pi64'\n", "platforms must be a list"),
        (b"[device]\nplatforms = [{ description = 'no name' }]\n", "'name'"),
        (b'name = "\xff"\n', "codec can't decode"),
        (None, "cannot read: Is a directory"),
    ],
    ids=["toml-syntax", "wrong-type", "not-a-list", "missing-key", "not-utf8", "a-folder"],
)
def test_an_unusable_depot_toml_fails_clearly_and_publishes_nothing(
    settings: bytes | None, says: str, tmp_path: Path
) -> None:
    repo = copy_demo(tmp_path / "repo")
    (repo / "depot.toml").unlink()
    if settings is None:
        (repo / "depot.toml").mkdir()
    else:
        (repo / "depot.toml").write_bytes(settings)
    done = run_depot("build", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ") and "depot.toml" in done.stderr and says in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "site" / "device").exists()


def test_an_unusable_depot_toml_keeps_the_last_good_site(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    assert run_depot("build", cwd=tmp_path).returncode == 0
    before = (tmp_path / "site" / "device" / "index.json").read_bytes()
    (repo / "depot.toml").write_text("[store\n")
    assert run_depot("build", cwd=tmp_path).returncode == 1
    assert (tmp_path / "site" / "device" / "index.json").read_bytes() == before
    assert_site_usable(tmp_path / "site")


def test_a_missing_repo_folder_is_a_clear_error(tmp_path: Path) -> None:
    done = run_depot("build", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: repository folder repo does not exist"
    assert not (tmp_path / "site").exists()
    elsewhere = run_depot("build", "--repo", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert (
        elsewhere.returncode == 1
        and f"repository folder {tmp_path / 'nowhere'} does not exist" in elsewhere.stderr
    )


def test_an_empty_repo_publishes_an_empty_store(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    done = run_depot("build", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    entry = json.loads((tmp_path / "site" / "device" / "index.json").read_bytes())
    assert entry["platforms"] == []
    assert_site_usable(tmp_path / "site")


def test_a_second_build_waits_for_the_one_holding_the_lock(tmp_path: Path) -> None:
    repo = copy_demo(tmp_path / "repo")
    add_module(repo, "nav", "0.1", "pi64")
    site = tmp_path / "site"
    lines: queue.Queue[str] = queue.Queue()
    with build_lock(site):
        process = subprocess.Popen(
            depot_argv("build", "--repo", str(repo), "--site", str(site)),
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)
        reader.start()
        assert lines.get(timeout=30).strip() == "another build is running; waiting for it"
        time.sleep(0.2)  # give it every chance to (wrongly) go ahead
        assert process.poll() is None  # still waiting
        assert not (site / "device" / "index.json").exists()  # and it wrote nothing
    assert process.wait(timeout=60) == 0
    assert process.stdout is not None
    stdout = process.stdout.read()
    reader.join(timeout=10)
    assert stdout.startswith("published: ")
    assert device_entries(site)["pi64"]["nav"] == ["0.1"]


def test_a_first_build_refuses_a_folder_that_is_not_a_depot_site(tmp_path: Path) -> None:
    from tests.support.serving import copy_demo_repo, depot_command

    repo = copy_demo_repo(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("precious")
    result = subprocess.run(
        depot_command("build", "--repo", str(repo), "--site", str(home)), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "not empty and holds no Depot site" in result.stderr
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
    assert (home / "notes.txt").read_text() == "precious"
    # a Depot site that lost its build state is swept and rebuilt
    site = tmp_path / "site"
    assert subprocess.run(depot_command("build", "--repo", str(repo), "--site", str(site))).returncode == 0
    (site / "stray.txt").write_text("left over")
    shutil.rmtree(tmp_path / ".site.depot")
    again = subprocess.run(
        depot_command("build", "--repo", str(repo), "--site", str(site)), capture_output=True
    )
    assert again.returncode == 0, again.stderr
    assert not (site / "stray.txt").exists()


def test_depot_build_starts_without_the_runtime_the_web_framework_or_cryptography(tmp_path: Path) -> None:
    """`depot build` is the command a maintainer or cron runs after every change: it loads the
    builder only. The dialects' commands are imported when asked for (runtime.cli.RuntimeGroup),
    the APK verifier only when an APK is read, python-tuf only with a key folder."""
    import sys

    from tests.support.agent import make_module, write_store_settings

    repo = tmp_path / "repo"
    write_store_settings(repo)
    make_module(repo, "ax", "1.0")
    code = (
        "import sys\n"
        "from runtime.cli import main\n"
        "try:\n"
        f"    main(['build', '--repo', {str(repo)!r}, '--site', {str(tmp_path / 'site')!r}, '-q'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('starlette', 'uvicorn', 'cryptography', 'tuf', 'securesystemslib', 'sqlite_utils',"
        " 'httpx')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy"
        " or m.startswith(('runtime.portal', 'runtime.device', 'runtime.qt', 'runtime.shipper',"
        " 'runtime.agent', 'runtime.app', 'runtime.accounts'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_depot_build_starts_without_the_runtime_or_cryptography(tmp_path: Path) -> None:
    """`depot build` is a builder command: a build that reads no APK imports no web framework,
    database driver, TUF or cryptography (they cost start-up time on every build)."""
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    assert run_depot("build", "--repo", str(repo), "--site", str(site), "-q").returncode == 0
    probe = (
        "import sys; sys.argv = ['depot', 'build', '--repo', sys.argv[1], '--site', sys.argv[2], '-q']\n"
        "from runtime.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('starlette', 'uvicorn', 'cryptography', 'tuf', 'psycopg', 'httpx')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(repo), str(site)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_depot_build_changed_publishes_what_it_is_told(tmp_path: Path) -> None:
    """`--changed` takes paths relative to repo/, or paths to files inside it; anything else is
    refused. What it names is published; the full report says one file was read."""
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    assert run_depot("build", "--repo", str(repo), "--site", str(site), "-q").returncode == 0
    first = add_module(repo, "first", "1.0", "pi64")
    second = add_module(repo, "second", "1.0", "pi64")
    done = run_depot(
        "build", "--repo", str(repo), "--site", str(site), "--report", "--changed", f"modules/{first.name}"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["inputs_read"] == 1
    done = run_depot("build", "--repo", str(repo), "--site", str(site), "--report", "--changed", str(second))
    assert done.returncode == 0, done.stderr
    assert set(device_entries(site)["pi64"]) >= {"first", "second"}
    outside = run_depot("build", "--repo", str(repo), "--site", str(site), "--changed", str(tmp_path / "x"))
    assert outside.returncode == 2 and "is not inside" in outside.stderr

"""The device agent end to end: a real `depot serve` store and a real `depot agent` process."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

import pytest

from tests.support.agent import (
    AgentProcess,
    Proxy,
    agent_process,
    installed_tree,
    make_firmware,
    make_module,
    wait_for,
    write_store_settings,
)
from tests.support.serving import serve_store

BIG = random.Random(5).randbytes(2_000_000)
FIRMWARE = random.Random(6).randbytes(300_000)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("store")
    repo = tmp / "repo"
    write_store_settings(repo)
    make_module(repo, "ax", "1.0.0")
    make_module(repo, "ax", "1.1.0")
    make_module(repo, "iot", "0.9", optional=True)
    make_module(repo, "big", "1.0.0", files={"data/blob.bin": BIG, "bin/big": b"#!/bin/sh\n"})
    make_firmware(repo, "bottom-sensor", "1.4.3", FIRMWARE)
    with serve_store(tmp, repo=repo) as served:
        yield served


def module_bytes(store, name: str, version: str) -> bytes:
    return (store.repo / "modules" / f"{name}.{version}.pi64.tar.gz").read_bytes()


def test_list_download_install_uninstall(store, tmp_path: Path) -> None:
    root = tmp_path / "root"
    with agent_process(tmp_path, store.url, root) as agent:
        packages = agent.packages()
        assert set(packages) == {"ax", "iot", "big"}
        assert packages["ax"] == {
            "name": "ax",
            "latest_version": "1.1.0",
            "current_version": "",
            "status": "not_installed",
            "optional": False,
        }
        assert packages["iot"]["optional"] is True

        answer = agent.post("/services/download_packages", {"packages": ["ax"]})
        assert answer.status_code == 201
        task_id = answer.json()["ax"]["task_id"]
        assert answer.json() == {"ax": {"task_id": task_id, "version": "1.1.0"}}
        assert agent.wait_task("download", task_id)["status"] == "succeeded"
        ax = agent.package("ax")
        assert ax["status"] == "downloaded" and ax["downloaded_versions"] == ["1.1.0"]
        assert (root / "downloads/module/ax/ax.1.1.0.tar.gz").read_bytes() == module_bytes(
            store, "ax", "1.1.0"
        )
        tasks = agent.get("/jobs/download/tasks").json()
        assert tasks[0]["id"] == task_id and tasks[0]["module"] == "ax" and tasks[0]["version"] == "1.1.0"
        assert tasks[0]["url"].endswith(f"/app_store/jobs/download/tasks/{task_id}/log")
        assert tasks[0]["start_time"] and tasks[0]["end_time"]
        log = agent.log_text("download", task_id)
        assert "=== checking checksum" in log and "verified" in log

        answer = agent.post("/services/install_packages", {"packages": ["ax"]})
        assert answer.status_code == 201
        install_id = answer.json()["ax"]["task_id"]
        assert agent.wait_task("install", install_id)["status"] == "succeeded"
        ax = agent.package("ax")
        assert (ax["status"], ax["current_version"]) == ("up_to_date", "1.1.0")
        assert installed_tree(root, "ax")["VERSION"] == b"1.1.0"
        log = agent.log_text("install", install_id)
        for step in ("=== installing ax:1.1.0", "=== checking checksum", "=== extract", "=== activate"):
            assert step in log
        assert log.index("=== checking checksum") < log.index("=== extract") < log.index("=== activate")

        # Nothing to do twice: the spec's error shapes (download: name → text, install: name → {error}).
        again = agent.post("/services/download_packages", {"packages": ["ax"]})
        assert again.status_code == 400
        assert again.json() == {"ax": "installed version(1.1.0) is already up to date"}
        again = agent.post("/services/install_packages", {"packages": ["ax"]})
        assert again.status_code == 400 and "already up to date" in again.json()["ax"]["error"]

        answer = agent.post("/services/uninstall_packages", {"packages": ["ax"]})
        assert answer.status_code == 201
        assert answer.json()["ax"]["version"] == "1.1.0"
        uninstall_id = answer.json()["ax"]["task_id"]
        assert agent.wait_task("uninstall", uninstall_id)["status"] == "succeeded"
        ax = agent.package("ax")
        assert (ax["status"], ax["current_version"]) == ("not_installed", "")
        assert not (root / "modules" / "ax").exists()
        assert not (root / "downloads/module/ax/ax.1.1.0.tar.gz").exists()
        again = agent.post("/services/uninstall_packages", {"packages": ["ax"]})
        assert again.status_code == 400 and again.json() == {
            "ax": {"error": "module ax is not installed, skip..."}
        }


def test_bad_requests(store, tmp_path: Path) -> None:
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        answer = agent.post("/services/download_packages", {"packages": ["some_random_package"]})
        assert answer.status_code == 400
        assert answer.json() == {"some_random_package": "invalid module some_random_package, skip..."}
        assert agent.get("/jobs/download/tasks").json() == []
        for body in (None, {}, {"packages": "ax"}, {"packages": []}, {"packages": [1]}):
            answer = agent.post("/services/download_packages", body)
            assert answer.status_code == 400 and "packages" in answer.json()["error"]
        answer = agent.post("/services/install_packages", {"packages": ["ax", "../etc"]})
        assert answer.status_code == 400
        assert answer.json()["ax"] == {
            "error": "module ax has no downloaded version, download it first, skip..."
        }
        assert answer.json()["../etc"] == {"error": "invalid module ../etc, skip..."}
        assert agent.get("/jobs/nonsense/tasks").status_code == 404
        assert agent.get("/jobs/download/tasks/99/log").status_code == 404
        assert agent.post("/firmware/install_packages", {"packages": ["nope"]}).status_code == 400


def test_statuses_and_progress_seen_while_tasks_run(store, tmp_path: Path) -> None:
    """A proxy holds the big download at a known byte and a health check holds the install, so
    every intermediate status is seen through the API, whatever the machine's speed."""
    proxy = Proxy(store.url)
    gate = tmp_path / "gate"
    check = f"{sys.executable} -c \"import os,time\nwhile not os.path.exists('{gate}'): time.sleep(0.02)\""
    try:
        with agent_process(tmp_path, proxy.url, tmp_path / "root", "--health-check", check) as agent:
            proxy.pause_after = 700_000
            big_id = agent.post("/services/download_packages", {"packages": ["big"]}).json()["big"]["task_id"]
            ax_id = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]["task_id"]
            proxy.paused.wait(30)
            big = wait_for(
                lambda: (p := agent.package("big")).get("downloading_progress") and p, what="progress"
            )
            assert big["status"] == "downloading" and big["download_task_id"] == big_id
            assert big["downloading_version"] == "1.0.0"
            assert 0 < big["downloading_progress"] < 1
            ax = agent.package("ax")
            assert ax["status"] == "download_queueing" and ax["download_task_id"] == ax_id
            # one task per module at a time
            busy = agent.post("/services/download_packages", {"packages": ["big"]})
            assert busy.status_code == 400 and "busy" in busy.json()["big"]
            busy = agent.post("/services/install_packages", {"packages": ["big"]})
            assert busy.status_code == 400 and "busy" in busy.json()["big"]["error"]
            log = agent.get(f"/jobs/download/tasks/{big_id}/log")
            assert log.headers["x-more-data"] == "true" and log.headers["x-task-status"] == "running"
            proxy.release()
            assert agent.wait_task("download", big_id)["status"] == "succeeded"
            assert agent.wait_task("download", ax_id)["status"] == "succeeded"
            assert agent.package("big")["status"] == "downloaded"

            # the install queue: big installs (held by the health check), ax waits behind it
            big_install = agent.post("/services/install_packages", {"packages": ["big"]}).json()["big"][
                "task_id"
            ]
            ax_install = agent.post("/services/install_packages", {"packages": ["ax"]}).json()["ax"][
                "task_id"
            ]
            wait_for(
                lambda: "=== health check" in agent.log_text("install", big_install), what="health check"
            )
            big = agent.package("big")
            assert big["status"] == "installing" and big["install_task_id"] == big_install
            assert big["installing_version"] == "1.0.0" and 0 < big["installing_progress"] <= 1
            ax = agent.package("ax")
            assert ax["status"] == "install_queueing" and ax["install_task_id"] == ax_install
            # the download queue runs independently of the busy install queue
            iot_id = agent.post("/services/download_packages", {"packages": ["iot"]}).json()["iot"]["task_id"]
            assert agent.wait_task("download", iot_id)["status"] == "succeeded"
            # an uninstall queued behind the held install
            gate.write_text("")
            assert agent.wait_task("install", big_install)["status"] == "succeeded"
            assert agent.wait_task("install", ax_install)["status"] == "succeeded"
            assert installed_tree(tmp_path / "root", "big")["data/blob.bin"] == BIG
            gate.unlink()
            iot_install = agent.post("/services/install_packages", {"packages": ["iot"]}).json()["iot"][
                "task_id"
            ]
            wait_for(lambda: agent.package("iot")["status"] == "installing", what="installing")
            gone = agent.post("/services/uninstall_packages", {"packages": ["big"]}).json()["big"]["task_id"]
            big = agent.package("big")
            assert big["status"] == "uninstall_queueing" and big["uninstall_task_id"] == gone
            gate.write_text("")
            assert agent.wait_task("install", iot_install)["status"] == "succeeded"
            assert agent.wait_task("uninstall", gone)["status"] == "succeeded"
            statuses = {name: p["status"] for name, p in agent.packages().items()}
            assert statuses == {"ax": "up_to_date", "iot": "up_to_date", "big": "not_installed"}
    finally:
        proxy.close()


def test_upgrade_keeps_previous_and_downgrade_is_refused(store, tmp_path: Path) -> None:
    root = tmp_path / "root"
    local = tmp_path / "ax.1.0.0.pi64.tar.gz"
    local.write_bytes(module_bytes(store, "ax", "1.0.0"))
    with agent_process(tmp_path, store.url, root) as agent:
        answer = agent.post("/services/install_local_file", {"filename": str(local)})
        assert answer.status_code == 200
        assert answer.json()["module_name"] == "ax" and answer.json()["version"] == "1.0.0"
        agent.wait_task("install", answer.json()["task_id"])
        ax = agent.package("ax")
        assert (ax["status"], ax["current_version"], ax["latest_version"]) == ("upgradable", "1.0.0", "1.1.0")

        task = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]["task_id"]
        agent.wait_task("download", task)
        assert agent.package("ax")["status"] == "downloaded"
        task = agent.post("/services/install_packages", {"packages": ["ax"]}).json()["ax"]["task_id"]
        assert agent.wait_task("install", task)["status"] == "succeeded"
        assert agent.package("ax")["current_version"] == "1.1.0"
        folder = root / "modules" / "ax"
        assert os.readlink(folder / "current").startswith("releases/1.1.0@")
        assert os.readlink(folder / "previous").startswith("releases/1.0.0@")
        assert (folder / "previous" / "VERSION").read_bytes() == b"1.0.0"

        # a branch build installed by hand is "higher" than the store's downloaded release
        branch = tmp_path / "ax.master.pi64.tar.gz"
        from builder.device.module import pack_module

        pack_module(branch, {"VERSION": b"master"}, {"name": "ax", "version": "master"})
        uninstall = agent.post("/services/uninstall_packages", {"packages": ["ax"]}).json()["ax"]["task_id"]
        agent.wait_task("uninstall", uninstall)
        task = agent.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]["task_id"]
        agent.wait_task("download", task)
        local_task = agent.post("/services/install_local_file", {"filename": str(branch)}).json()["task_id"]
        agent.wait_task("install", local_task)
        answer = agent.post("/services/install_packages", {"packages": ["ax"]})
        assert answer.status_code == 400
        assert answer.json() == {
            "ax": {"error": "installed version(master) is higher than downloaded version(1.1.0), skip..."}
        }
        # only the previous two releases are kept
        assert len(os.listdir(folder / "releases")) == 1  # master; the old tree went with the uninstall


def test_refresh_store_sees_a_new_release(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_store_settings(repo)
    make_module(repo, "nav", "1.0")
    with (
        serve_store(tmp_path, repo=repo) as served,
        agent_process(tmp_path, served.url, tmp_path / "root") as agent,
    ):
        assert agent.package("nav")["latest_version"] == "1.0"
        make_module(repo, "nav", "1.1")
        make_module(repo, "maps", "0.1")
        from tests.support.repos import run_depot

        assert run_depot("build", "--repo", str(repo), "--site", str(served.site)).returncode == 0
        answer = agent.post("/services/refresh_store")
        assert answer.status_code == 200 and answer.json() == {"status": 200}
        wait_for(lambda: "maps" in agent.packages(), what="refreshed list")
        assert agent.package("nav")["latest_version"] == "1.1"


def test_firmware_default_flasher(store, tmp_path: Path) -> None:
    root = tmp_path / "root"
    with agent_process(tmp_path, store.url, root) as agent:
        assert agent.packages(firmware=True) == {
            "bottom-sensor": {
                "name": "bottom-sensor",
                "latest_version": "1.4.3",
                "current_version": "",
                "status": "not_installed",
            }
        }
        answer = agent.post("/firmware/install_packages", {"packages": ["bottom-sensor"]})
        assert answer.status_code == 201
        task = answer.json()["bottom-sensor"]
        assert task["version"] == "1.4.3"
        assert agent.wait_task("install", task["task_id"])["status"] == "succeeded"
        fw = agent.package("bottom-sensor", firmware=True)
        assert (fw["status"], fw["current_version"]) == ("up_to_date", "1.4.3")
        assert (root / "firmware/bottom-sensor/1.4.3.bin").read_bytes() == FIRMWARE
        record = json.loads((root / "firmware/bottom-sensor/current.json").read_text())
        assert record["sha256"] == hashlib.sha256(FIRMWARE).hexdigest()
        log = agent.log_text("install", task["task_id"])
        assert "=== downloading" in log and "=== checking checksum" in log and "=== flashing" in log
        again = agent.post("/firmware/install_packages", {"packages": ["bottom-sensor"]})
        assert again.status_code == 400 and "already up to date" in again.json()["bottom-sensor"]["error"]
        assert agent.package("ax")["status"] == "not_installed"  # modules and firmware are apart


def test_firmware_custom_flasher_and_its_failure(store, tmp_path: Path) -> None:
    out = tmp_path / "flashed"
    script = tmp_path / "flash.py"
    script.write_text(
        "import os, shutil, sys\n"
        "if os.path.exists(sys.argv[1] + '.fail') or os.environ.get('FAIL_FLASH'):\n"
        "    print('bus error'); sys.exit(3)\n"
        f"shutil.copy(sys.argv[1], {str(out)!r})\n"
        "print('flashed', os.environ['DEPOT_FIRMWARE_NAME'], os.environ['DEPOT_FIRMWARE_VERSION'])\n"
    )
    flasher = f"{sys.executable} {script}"
    with agent_process(
        tmp_path, store.url, tmp_path / "bad", "--flasher", flasher, env={"FAIL_FLASH": "1"}
    ) as bad:
        task = bad.post("/firmware/install_packages", {"packages": ["bottom-sensor"]}).json()["bottom-sensor"]
        assert bad.wait_task("install", task["task_id"])["status"] == "failed"
        fw = bad.package("bottom-sensor", firmware=True)
        assert fw["status"] == "install_failed" and fw["current_version"] == ""
        assert "flasher exited with status 3" in fw["install_failed_reason"]
        assert "flasher: bus error" in bad.log_text("install", task["task_id"])
    with agent_process(tmp_path, store.url, tmp_path / "good", "--flasher", flasher) as good:
        task = good.post("/firmware/install_packages", {"packages": ["bottom-sensor"]}).json()[
            "bottom-sensor"
        ]
        assert good.wait_task("install", task["task_id"])["status"] == "succeeded"
        assert out.read_bytes() == FIRMWARE
        assert "flasher: flashed bottom-sensor 1.4.3" in good.log_text("install", task["task_id"])
        assert good.package("bottom-sensor", firmware=True)["current_version"] == "1.4.3"


def test_install_local_file_validates(store, tmp_path: Path) -> None:
    import io
    import tarfile

    from builder.device.module import pack_module

    root = tmp_path / "root"
    evil = tmp_path / "evil.1.0.pi64.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../escape")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    evil.write_bytes(buffer.getvalue())
    other = pack_module(tmp_path / "nav.1.0.opi64.tar.gz", {"x": b"y"})
    liar = pack_module(tmp_path / "nav.2.0.pi64.tar.gz", {"x": b"y"}, {"name": "other"})
    truncated = tmp_path / "nav.3.0.pi64.tar.gz"
    truncated.write_bytes(
        pack_module(tmp_path / "t" / "nav.3.0.pi64.tar.gz", {"x": b"y" * 5000}).read_bytes()[:-30]
    )
    with agent_process(tmp_path, store.url, root) as agent:
        cases = {
            "relative.tar.gz": "is not an absolute path",
            str(tmp_path / "missing.1.0.pi64.tar.gz"): "does not exist",
            str(evil): "contains '..'",
            str(other): "is for platform opi64",
            str(liar): "module.toml says name 'other'",
            str(truncated): "truncated or malformed",
        }
        for filename, reason in cases.items():
            answer = agent.post("/services/install_local_file", {"filename": filename})
            assert answer.status_code == 400, filename
            assert reason in answer.json()["error"], (filename, answer.json())
        assert agent.post("/services/install_local_file", {"file": "x"}).status_code == 400
        assert agent.get("/jobs/install/tasks").json() == []
        assert not (tmp_path / "escape").exists()

        good = pack_module(tmp_path / "nav.1.0.pi64.tar.gz", {"bin/nav": b"#!/bin/sh\n"})
        answer = agent.post("/services/install_local_file", {"filename": str(good)})
        assert answer.status_code == 200
        assert {k: answer.json()[k] for k in ("module_name", "version")} == {
            "module_name": "nav",
            "version": "1.0",
        }
        assert agent.wait_task("install", answer.json()["task_id"])["status"] == "succeeded"
        nav = agent.package("nav")  # not in the store, still listed because it is installed
        assert (nav["current_version"], nav["status"]) == ("1.0", "up_to_date")
        assert os.access(root / "modules/nav/current/bin/nav", os.X_OK)


def test_secret_header(store, tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, store.url, tmp_path / "root", env={"DEPOT_AGENT_SECRET": "s3cret"})
    agent.start(wait_path="")
    try:
        agent.headers = {"Secret": "s3cret"}
        wait_for(lambda: _up(agent), what="agent")
        assert agent.get("/packages").status_code == 200
        for headers in ({}, {"Secret": "wrong"}, {"Secret": "s3cre"}):
            agent.headers = headers
            answer = agent.get("/packages")
            assert answer.status_code == 401 and "Secret" in answer.json()["error"]
            assert agent.post("/services/download_packages", {"packages": ["ax"]}).status_code == 401
        assert "s3cret" not in agent.log.read_text()
    finally:
        agent.stop()


def _up(agent: AgentProcess) -> bool:
    import httpx

    try:
        return agent.get("/packages").status_code == 200
    except httpx.HTTPError:
        return False


def test_without_secret_only_loopback_is_served(store, tmp_path: Path) -> None:
    """A LAN client reaching the agent through a reverse proxy on the device (X-Forwarded-For,
    trusted from loopback only) is refused when no secret is configured."""
    with agent_process(tmp_path, store.url, tmp_path / "root") as agent:
        assert agent.get("/packages").status_code == 200
        answer = agent.get("/packages", headers={"X-Forwarded-For": "192.168.25.7"})
        assert answer.status_code == 403 and "loopback" in answer.json()["error"]


def test_a_batch_queues_what_it_can_as_the_spec_example_shows(store, tmp_path: Path) -> None:
    """The spec asks for ["ax", "py_axbot"] and answers 201 with py_axbot alone: a package that
    cannot be queued is left out, the rest go ahead, and 400 comes only when nothing could be."""
    root = tmp_path / "root"
    with agent_process(tmp_path, store.url, root) as agent:
        answer = agent.post("/services/download_packages", {"packages": ["no-such-module", "ax"]})
        assert answer.status_code == 201
        assert set(answer.json()) == {"ax"}
        download_id = answer.json()["ax"]["task_id"]
        assert agent.wait_task("download", download_id)["status"] == "succeeded"
        # the log starts as the spec's sample does
        lines = agent.log_text("download", download_id).splitlines()
        assert lines[0] == f"id: {download_id}" and lines[1].startswith("create time: ")
        assert lines[2] == "download task ax(1.1.0) added" and lines[3].startswith("start time: ")
        assert lines[4] == "download task ax(1.1.0) begin"

        answer = agent.post("/services/install_packages", {"packages": ["iot", "ax"]})
        assert answer.status_code == 201 and set(answer.json()) == {"ax"}
        assert agent.wait_task("install", answer.json()["ax"]["task_id"])["status"] == "succeeded"
        nothing = agent.post("/services/install_packages", {"packages": ["iot", "nope"]})
        assert nothing.status_code == 400 and set(nothing.json()) == {"iot", "nope"}

        # a failure reads as a message for the robot's screen, not a traceback with paths
        trash = root / "trash"
        if trash.is_dir():
            trash.rmdir()
        trash.write_text("in the way")
        answer = agent.post("/services/uninstall_packages", {"packages": ["nope", "ax"]})
        assert answer.status_code == 201 and set(answer.json()) == {"ax"}
        task = agent.wait_task("uninstall", answer.json()["ax"]["task_id"])
        assert task["status"] == "failed"
        reason = agent.package("ax")["failed_reason"]
        assert str(root) not in reason and "Errno" not in reason and "Error:" not in reason, reason
        assert reason == "the device could not store the files: File exists"
        # the task log keeps the whole error for the people who debug the robot
        log = agent.log_text("uninstall", task["id"])
        assert f"error: FileExistsError: [Errno 17] File exists: '{trash}'" in log


def test_installs_keep_only_the_downloads_rollback_needs(tmp_path: Path) -> None:
    """Three releases installed one after another: the tarballs of the installed and the
    previous version stay, the oldest one is removed from the device's disk."""
    from builder.build import build

    repo = tmp_path / "repo"
    write_store_settings(repo)
    with (
        serve_store(tmp_path, repo=repo) as served,
        agent_process(tmp_path, served.url, tmp_path / "root") as agent,
    ):
        for version in ("1.0", "1.1", "1.2"):
            make_module(repo, "nav", version)
            build(repo, served.site)
            agent.post("/services/refresh_store")
            wait_for(
                lambda v=version: agent.packages().get("nav", {}).get("latest_version") == v,
                what="refreshed list",
            )
            task = agent.post("/services/download_packages", {"packages": ["nav"]}).json()["nav"]["task_id"]
            assert agent.wait_task("download", task)["status"] == "succeeded"
            task = agent.post("/services/install_packages", {"packages": ["nav"]}).json()["nav"]["task_id"]
            assert agent.wait_task("install", task)["status"] == "succeeded"
        nav = agent.package("nav")
        assert nav["current_version"] == "1.2"
        assert sorted(nav["downloaded_versions"]) == ["1.1", "1.2"]
        kept = sorted(p.name for p in (tmp_path / "root" / "downloads" / "module" / "nav").iterdir())
        assert kept == ["nav.1.1.tar.gz", "nav.1.2.tar.gz"]
        assert "removed the download of nav 1.0" in agent.log_text("install", task)

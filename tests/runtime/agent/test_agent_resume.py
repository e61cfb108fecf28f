"""Downloads that resume, verification that refuses corrupt bytes, and the agent SIGKILLed mid-task."""

from __future__ import annotations

import os
import random
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.agent import (
    AgentProcess,
    Proxy,
    agent_process,
    installed_tree,
    make_module,
    plain_http_server,
    wait_for,
    write_store_settings,
)
from tests.support.serving import serve_store

BIG = random.Random(11).randbytes(1_500_000)
MANY = {f"files/f{i:04d}.txt": f"file {i}\n".encode() * 20 for i in range(1500)}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("store")
    repo = tmp / "repo"
    write_store_settings(repo)
    make_module(repo, "big", "1.0.0", files={"data/blob.bin": BIG})
    make_module(repo, "big", "0.9.0", files={"data/blob.bin": b"old"})
    make_module(repo, "many", "1.0.0", files=MANY)
    with serve_store(tmp, repo=repo) as served:
        yield served


def blob(store, name: str = "big", version: str = "1.0.0") -> bytes:
    return (store.repo / "modules" / f"{name}.{version}.pi64.tar.gz").read_bytes()


def range_starts(proxy: Proxy) -> list[int]:
    starts = []
    for head in proxy.file_requests():
        match = re.search(r"(?im)^range: bytes=(\d+)-\s*$", head)
        starts.append(int(match[1]) if match else 0)
    return starts


def test_cut_download_resumes_with_range_and_if_range(store, tmp_path: Path) -> None:
    proxy = Proxy(store.url)
    proxy.cut_after = 600_000
    try:
        with agent_process(tmp_path, proxy.url, tmp_path / "root") as agent:
            task = agent.post("/services/download_packages", {"packages": ["big"]}).json()["big"]["task_id"]
            assert agent.wait_task("download", task)["status"] == "succeeded"
            starts = range_starts(proxy)
            assert len(starts) == 2 and starts[0] == 0 and 0 < starts[1] < 600_000
            assert re.search(r"(?im)^if-range: ", proxy.file_requests()[1])
            data = (tmp_path / "root/downloads/module/big/big.1.0.0.tar.gz").read_bytes()
            assert data == blob(store)
            log = agent.log_text("download", task)
            assert "attempt failed" in log and f"resuming at byte {starts[1]}" in log
    finally:
        proxy.close()


def test_store_that_ignores_range(store, tmp_path: Path) -> None:
    """http.server answers every GET with 200 and the whole file: the agent starts over, correctly."""
    mirror = tmp_path / "mirror"
    shutil.copytree(store.site, mirror)
    with plain_http_server(mirror) as url:
        proxy = Proxy(url.rstrip("/"))
        proxy.cut_after = 500_000
        try:
            with agent_process(tmp_path, proxy.url, tmp_path / "root") as agent:
                task = agent.post("/services/download_packages", {"packages": ["big"]}).json()["big"][
                    "task_id"
                ]
                assert agent.wait_task("download", task)["status"] == "succeeded"
                assert range_starts(proxy)[1] > 0
                assert "sent the whole file instead of the range" in agent.log_text("download", task)
                assert (tmp_path / "root/downloads/module/big/big.1.0.0.tar.gz").read_bytes() == blob(store)
        finally:
            proxy.close()


def test_corrupted_download_fails_its_checksum_and_installs_nothing(store, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(store.site, mirror)
    for path in mirror.glob("files/*/*/big.1.0.0.pi64.tar.gz"):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, one byte flipped: only the SHA-256 can tell
        path.write_bytes(bytes(data))
    root = tmp_path / "root"
    with plain_http_server(mirror) as url, agent_process(tmp_path, url, root) as agent:
        task = agent.post("/services/download_packages", {"packages": ["big"]}).json()["big"]["task_id"]
        assert agent.wait_task("download", task)["status"] == "failed"
        big = agent.package("big")
        assert big["status"] == "download_failed" and big["download_task_id"] == task
        assert "checksum mismatch" in big["failed_reason"]
        assert "downloaded_versions" not in big
        assert "checksum mismatch" in agent.log_text("download", task)
        assert agent.post("/services/install_packages", {"packages": ["big"]}).status_code == 400
        assert not list((root / "downloads").rglob("big.*"))
        assert not (root / "modules" / "big").exists()


def test_file_changed_on_the_device_after_download_is_not_installed(store, tmp_path: Path) -> None:
    root = tmp_path / "root"
    with agent_process(tmp_path, store.url, root) as agent:
        task = agent.post("/services/download_packages", {"packages": ["big"]}).json()["big"]["task_id"]
        agent.wait_task("download", task)
        path = root / "downloads/module/big/big.1.0.0.tar.gz"
        data = bytearray(path.read_bytes())
        data[1000] ^= 0x01
        path.write_bytes(bytes(data))
        task = agent.post("/services/install_packages", {"packages": ["big"]}).json()["big"]["task_id"]
        assert agent.wait_task("install", task)["status"] == "failed"
        big = agent.package("big")
        assert big["status"] == "install_failed" and "checksum mismatch" in big["install_failed_reason"]
        assert big["current_version"] == "" and not (root / "modules" / "big").exists()


def test_killed_during_download_resumes_after_restart(store, tmp_path: Path) -> None:
    proxy = Proxy(store.url)
    proxy.pause_after = 800_000
    root = tmp_path / "root"
    try:
        agent = AgentProcess(tmp_path, proxy.url, root).start()
        task = agent.post("/services/download_packages", {"packages": ["big"]}).json()["big"]["task_id"]
        proxy.paused.wait(30)
        wait_for(lambda: agent.package("big").get("downloading_progress"), what="progress")
        agent.kill()
        proxy.release()
        part = root / "downloads/module/big/big.1.0.0.tar.gz.part"
        assert 0 < part.stat().st_size <= 800_000
        agent.start()
        try:
            assert agent.wait_task("download", task)["status"] == "succeeded"
            assert range_starts(proxy)[-1] > 0  # continued from the bytes on disk
            assert (root / "downloads/module/big/big.1.0.0.tar.gz").read_bytes() == blob(store)
            assert not part.exists()
            assert "agent restarted while the task ran; resuming" in agent.log_text("download", task)
            assert agent.package("big")["status"] == "downloaded"
        finally:
            agent.stop()
    finally:
        proxy.close()


def test_killed_during_install_is_finished_after_restart(store, tmp_path: Path) -> None:
    """Killed after the switch but before the health check passed: the restarted agent checks
    again and finishes; the module is never half there."""
    root = tmp_path / "root"
    gate = tmp_path / "gate"
    check = f"{sys.executable} -c \"import os,time\nwhile not os.path.exists('{gate}'): time.sleep(0.02)\""
    agent = AgentProcess(tmp_path, store.url, root, "--health-check", check).start()
    try:
        task = agent.post("/services/download_packages", {"packages": ["big"]}).json()["big"]["task_id"]
        agent.wait_task("download", task)
        task = agent.post("/services/install_packages", {"packages": ["big"]}).json()["big"]["task_id"]
        wait_for(lambda: "=== health check" in agent.log_text("install", task), what="health check")
        agent.kill()
        gate.write_text("")
        agent.start()
        assert agent.wait_task("install", task)["status"] == "succeeded"
        assert "release already active" in agent.log_text("install", task)
        assert installed_tree(root, "big")["data/blob.bin"] == BIG
        assert agent.package("big")["status"] == "up_to_date"
        assert os.listdir(root / "staging") == [] and os.listdir(root / "trash") == []
    finally:
        agent.stop()


def test_killed_while_extracting_leaves_no_half_module(store, tmp_path: Path) -> None:
    root = tmp_path / "root"
    agent = AgentProcess(tmp_path, store.url, root).start()
    try:
        task = agent.post("/services/download_packages", {"packages": ["many"]}).json()["many"]["task_id"]
        agent.wait_task("download", task)
        task = agent.post("/services/install_packages", {"packages": ["many"]}).json()["many"]["task_id"]
        wait_for(lambda: "=== extract" in agent.log_text("install", task), what="extract")
        agent.kill()
        # whatever instant the kill hit, the module is either absent or whole
        current = root / "modules/many/current"
        assert not current.exists() or len(installed_tree(root, "many")) == len(MANY) + 1
        agent.start()
        assert agent.wait_task("install", task)["status"] == "succeeded"
        tree = installed_tree(root, "many")
        assert {k: v for k, v in tree.items() if k != "module.toml"} == MANY
        assert os.listdir(root / "staging") == []
    finally:
        agent.stop()


def test_killed_during_uninstall_finishes_after_restart(store, tmp_path: Path) -> None:
    root = tmp_path / "root"
    agent = AgentProcess(tmp_path, store.url, root).start()
    try:
        task = agent.post("/services/download_packages", {"packages": ["many"]}).json()["many"]["task_id"]
        agent.wait_task("download", task)
        task = agent.post("/services/install_packages", {"packages": ["many"]}).json()["many"]["task_id"]
        agent.wait_task("install", task)
        task = agent.post("/services/uninstall_packages", {"packages": ["many"]}).json()["many"]["task_id"]
        agent.kill()  # right after the request: queued, or anywhere in the uninstall
        current = root / "modules/many/current"
        assert not current.exists() or len(installed_tree(root, "many")) == len(MANY) + 1
        agent.start()
        assert agent.wait_task("uninstall", task)["status"] == "succeeded"
        many = agent.package("many")
        assert (many["status"], many["current_version"]) == ("not_installed", "")
        assert not (root / "modules/many").exists() and os.listdir(root / "trash") == []
    finally:
        agent.stop()


def test_restart_loop_guard_fails_the_task(store, tmp_path: Path) -> None:
    proxy = Proxy(store.url)
    proxy.pause_after = 300_000
    root = tmp_path / "root"
    try:
        agent = AgentProcess(tmp_path, proxy.url, root, "--retries", "1")
        agent.start()
        task = agent.post("/services/download_packages", {"packages": ["big"]}).json()["big"]["task_id"]
        for _ in range(5):  # max_restarts: each restart finds it running again and re-queues it
            wait_for(lambda: agent.task("download", task)["status"] == "running", what="running")
            agent.kill()
            agent.start()
        final = agent.wait_task("download", task)
        assert final["status"] == "failed" and "restart_loop" in final["reason"]
        assert agent.package("big")["status"] == "download_failed"
        agent.stop()
    finally:
        proxy.release()
        proxy.close()

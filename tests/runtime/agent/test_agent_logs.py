"""Task logs: character ranges that never split a character, the spec's headers, byte Range."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.agent import agent_process, make_module, wait_for, write_store_settings
from tests.support.serving import serve_store

WORDS = "héllo wörld ✓ 日本語 🚀"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("store")
    repo = tmp / "repo"
    write_store_settings(repo)
    make_module(repo, "nav", "1.0")
    with serve_store(tmp, repo=repo) as served:
        yield served


def test_log_ranges_while_running_and_after(store, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    script = tmp_path / "check.py"
    script.write_text(
        "import os, sys, time\n"
        f"print({WORDS!r}, flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
    )
    with agent_process(
        tmp_path, store.url, tmp_path / "root", "--health-check", f"{sys.executable} {script}"
    ) as agent:
        task = agent.post("/services/download_packages", {"packages": ["nav"]}).json()["nav"]["task_id"]
        agent.wait_task("download", task)
        task = agent.post("/services/install_packages", {"packages": ["nav"]}).json()["nav"]["task_id"]
        path = f"/jobs/install/tasks/{task}/log"
        wait_for(lambda: "=== health check" in agent.get(path).text, what="health check")

        # while the task runs: the log is incomplete, and says so
        running = agent.get(path, params={"start": 0, "end": 5})
        assert running.status_code == 200
        assert running.headers["content-type"] == "text/plain; charset=utf-8"
        assert running.headers["x-more-data"] == "true"
        assert running.headers["x-task-status"] == "running"
        assert running.text == f"id: {task}\n"[:5]
        assert int(running.headers["x-text-size"]) == len(agent.get(path).text)
        whole_running = agent.get(path)
        assert whole_running.headers["x-more-data"] == "true"  # running: more will come

        gate.write_text("")
        assert agent.wait_task("install", task)["status"] == "succeeded"
        full = agent.get(path)
        text = full.text
        assert WORDS in text
        assert full.headers["x-more-data"] == "false" and full.headers["x-task-status"] == "succeeded"
        assert int(full.headers["x-text-size"]) == len(text)  # characters, not bytes
        assert len(text.encode()) > len(text)

        # every boundary inside the multi-byte words, read piece by piece, reassembles exactly
        at = text.index(WORDS)
        for cut in range(at, at + len(WORDS) + 1):
            left = agent.get(path, params={"start": 0, "end": cut})
            right = agent.get(path, params={"start": cut})
            assert left.content.decode("utf-8") == text[:cut]  # never half a character
            assert left.headers["x-more-data"] == "true"
            assert right.headers["x-more-data"] == "false"
            assert left.text + right.text == text
        pieces, start = [], 0
        while True:
            piece = agent.get(path, params={"start": start, "end": start + 7})
            pieces.append(piece.text)
            start += 7
            if piece.headers["x-more-data"] == "false":
                break
        assert "".join(pieces) == text

        # out of range and malformed parameters
        past = agent.get(path, params={"start": len(text) + 10})
        assert past.status_code == 200 and past.text == "" and past.headers["x-more-data"] == "false"
        assert agent.get(path, params={"start": 10, "end": 5}).text == ""
        assert agent.get(path, params={"start": "-1"}).status_code == 400
        assert agent.get(path, params={"end": "abc"}).status_code == 400

        # standard byte ranges over the UTF-8 text
        data = text.encode()
        partial = agent.get(path, headers={"Range": "bytes=10-"})
        assert partial.status_code == 206
        assert partial.content == data[10:]
        assert partial.headers["content-range"] == f"bytes 10-{len(data) - 1}/{len(data)}"
        assert partial.headers["x-task-status"] == "succeeded"
        middle = agent.get(path, headers={"Range": "bytes=0-9"})
        assert middle.status_code == 206 and middle.content == data[:10]
        assert middle.headers["x-more-data"] == "true"
        tail = agent.get(path, headers={"Range": "bytes=-5"})
        assert tail.status_code == 206 and tail.content == data[-5:]
        beyond = agent.get(path, headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_log_tells_the_story_of_a_failure(store, tmp_path: Path) -> None:
    with agent_process(tmp_path, store.url, tmp_path / "root", "--health-check", "false") as agent:
        task = agent.post("/services/download_packages", {"packages": ["nav"]}).json()["nav"]["task_id"]
        agent.wait_task("download", task)
        task = agent.post("/services/install_packages", {"packages": ["nav"]}).json()["nav"]["task_id"]
        assert agent.wait_task("install", task)["status"] == "failed"
        log = agent.log_text("install", task)
        steps = ["added", "start time:", "=== checking checksum", "=== extract", "=== activate"]
        steps += [
            "=== health check",
            "=== rollback",
            "no previous version: removed",
            "end time:",
            "task failed",
        ]
        positions = [log.index(step) for step in steps]
        assert positions == sorted(positions)
        nav = agent.package("nav")
        assert nav["status"] == "install_failed" and "health check failed" in nav["install_failed_reason"]
        assert nav["current_version"] == ""  # rolled back to nothing, as before the install


def test_failed_upgrade_rolls_back_to_the_previous_version(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_store_settings(repo)
    make_module(repo, "nav", "1.0")
    make_module(repo, "nav", "2.0")
    old = repo / "modules" / "nav.1.0.pi64.tar.gz"
    local = tmp_path / old.name
    local.write_bytes(old.read_bytes())
    check = f"{sys.executable} -c \"import os,sys; sys.exit(os.environ['DEPOT_VERSION'] == '2.0')\""
    root = tmp_path / "root"
    with (
        serve_store(tmp_path, repo=repo) as served,
        agent_process(tmp_path, served.url, root, "--health-check", check) as agent,
    ):
        task = agent.post("/services/install_local_file", {"filename": str(local)}).json()["task_id"]
        assert agent.wait_task("install", task)["status"] == "succeeded"
        task = agent.post("/services/download_packages", {"packages": ["nav"]}).json()["nav"]["task_id"]
        agent.wait_task("download", task)
        task = agent.post("/services/install_packages", {"packages": ["nav"]}).json()["nav"]["task_id"]
        assert agent.wait_task("install", task)["status"] == "failed"
        assert "rolled back to 1.0" in agent.log_text("install", task)
        nav = agent.package("nav")
        assert (nav["status"], nav["current_version"]) == ("install_failed", "1.0")
        assert (tmp_path / "root/modules/nav/current/VERSION").read_bytes() == b"1.0"

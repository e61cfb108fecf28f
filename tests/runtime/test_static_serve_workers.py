"""`depot serve --workers 2` as a real process on 127.0.0.1: two worker processes answer on one
port, the build and the start-up steps run once (in the parent), and state lives in the shared
database, so a Qt session made through one worker works through the other."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.support.qt import DEVICE, SECRET, USER, USER_PASSWORD, add_user
from tests.support.serving import (
    copy_demo_repo,
    depot_command,
    free_port,
    point_base_url_at,
    stop,
    wait_until_up,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc")


def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes: children of ``parent`` started by multiprocessing's spawn."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def write_calls(pid: int) -> int:
    """Write system calls the process made so far: each answer it sends is at least one."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError(f"no syscw in /proc/{pid}/io")


def head_answer(port: int, header_bytes: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * header_bytes + b"\r\n\r\n")
        return s.recv(4096)


def test_two_workers_answer_on_one_port_and_share_sessions(tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    data = tmp_path / "var"
    add_user(data, USER, USER_PASSWORD)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    point_base_url_at(repo, url)
    log = tmp_path / "serve.log"
    args = ["serve", "--repo", str(repo), "--site", str(tmp_path / "site"), "--data", str(data)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            depot_command(*args, "--port", str(port), "--workers", "2"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DEPOT_SECRET_KEY": SECRET},
            cwd=tmp_path,
        )
    try:
        wait_until_up(url + "/healthz", process)
        workers = worker_pids(process.pid)
        assert len(workers) == 2, workers

        with httpx.Client(base_url=url, timeout=10) as first:
            assert first.get("/login", params={"username": USER, "password": USER_PASSWORD}).json() == {
                "status": "ok"
            }
            cookies = dict(first.cookies)
        assert cookies

        before = {pid: write_calls(pid) for pid in workers}
        failures: list[str] = []

        def buy() -> None:
            for _ in range(25):
                # a new connection each time, so the kernel hands them to either worker
                with httpx.Client(base_url=url, timeout=10, cookies=cookies) as client:
                    bought = client.get(
                        "/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}
                    )
                    if bought.status_code != 200 or bought.json().get("status") != "ok":
                        failures.append(bought.text)
                    icon = client.get("/category/list")
                    if icon.status_code != 200:
                        failures.append(icon.text)

        threads = [threading.Thread(target=buy) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        after = {pid: write_calls(pid) for pid in workers}
        assert all(after[pid] - before[pid] >= 10 for pid in workers), (before, after)

        # the workers keep the request head cap (16 KiB), whichever HTTP parser uvicorn uses
        assert head_answer(port, 8_000).startswith(b"HTTP/1.1 200")
        assert head_answer(port, 20_000).startswith(b"HTTP/1.1 400")
    finally:
        stop(process)
    text = log.read_text()
    assert text.count("published:") == 1  # one build, by the parent
    assert text.count("Application startup complete") == 2
    assert "Traceback" not in text

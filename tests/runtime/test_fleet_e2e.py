"""A fleet end to end: one real `depot serve` store, several real `depot agent` processes with
their own device tokens and groups, reports flowing back, counts, and a rollout that pauses
itself when too many devices fail it (as hawkBit's error threshold does)."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from builder.sidecars import read_sidecar, write_sidecar
from tests.support.agent import agent_process, make_module, wait_for, write_store_settings
from tests.support.serving import depot_command, free_port, serve_store

pytestmark = pytest.mark.slow
TOKEN = re.compile(r"depot_device_[A-Za-z0-9_-]+")


def depot(store, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        depot_command(*args, "--repo", str(store.repo), "--site", str(store.site), "--data", str(store.data)),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def enroll(store, name: str, groups: str = "") -> str:
    out = depot(store, "device", "add", name, *(["--groups", groups] if groups else []))
    match = TOKEN.search(out)
    assert match, out
    return match[0]


def rollout(store, version: str) -> dict:
    response = httpx.get(
        f"{store.url}/device/api/v1/rollouts/modules/ax/{version}",
        auth=("admin", "staff-password-1"),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


class Relay:
    """A TCP relay to the store that can be switched off: the store's runtime unreachable."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.listener: socket.socket | None = None

    def up(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_devices_report_and_a_failing_rollout_pauses_itself(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_store_settings(repo)
    make_module(repo, "ax", "1.0")
    make_module(repo, "ax", "2.0")
    two = repo / "modules" / "ax.2.0.pi64.tar.gz"
    write_sidecar(two, {"max_failure_rate": 0.5, "min_devices": 2}, kind="module")
    for name in ("good", "bad1", "bad2", "late"):
        (tmp_path / name).mkdir()
    with serve_store(tmp_path, repo=repo) as store:
        depot(store, "user", "add", "admin", "--staff", "--password-stdin", stdin="staff-password-1\n")
        tokens = {name: enroll(store, name, "lab") for name in ("good", "bad1", "bad2", "late")}

        def agent(name: str, *extra: str):
            return agent_process(
                tmp_path / name, store.url, tmp_path / name / "root", "--device-token", tokens[name], *extra
            )

        def upgrade(a, expect: str) -> None:
            task = a.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]
            assert task["version"] == "2.0"
            assert a.wait_task("download", task["task_id"])["status"] == "succeeded"
            done = a.post("/services/install_packages", {"packages": ["ax"]}).json()["ax"]
            assert a.wait_task("install", done["task_id"])["status"] == expect

        with agent("good") as good:
            upgrade(good, "succeeded")
            wait_for(lambda: rollout(store, "2.0")["counts"]["installed"] == 1, 20, "the good report")
        listed = depot(store, "device", "list")
        assert "good" in listed and "ax=2.0" in listed

        # Two devices whose health check fails: each install is rolled back and reported.
        with (
            agent("bad1", "--health-check", "false") as bad1,
            agent("bad2", "--health-check", "false") as bad2,
        ):
            upgrade(bad1, "failed")
            upgrade(bad2, "failed")
            status = wait_for(
                lambda: (r := rollout(store, "2.0"))["counts"]["failed"] == 2 and r, 20, "two failure reports"
            )
            assert status["counts"]["rolled_back"] == 2 and status["counts"]["installed"] == 1
            assert bad1.package("ax")["current_version"] == ""  # nothing before 2.0 to go back to

        # 2 of 3 failed, over max_failure_rate 0.5 with at least 2 devices: the rollout paused itself.
        paused = wait_for(lambda: (r := rollout(store, "2.0"))["paused"] and r, 20, "the automatic pause")
        assert "2 of 3" in paused["paused_reason"]
        sidecar = read_sidecar(two)
        assert (
            sidecar["paused"] is True and sidecar["max_failure_rate"] == 0.5 and sidecar["min_devices"] == 2
        )
        assert "paused" in depot(store, "rollout", "status", "ax", "2.0")

        # A device that had not started is not offered 2.0 any more; the one that has it keeps it.
        relay = Relay(store.url)
        with agent("late", "--report-to", relay.url) as late, agent("good") as good:
            late.post("/services/refresh_store")
            wait_for(lambda: late.package("ax")["latest_version"] == "1.0", 20, "the paused index")
            assert good.package("ax")["current_version"] == "2.0"

            # Reports made while the store's runtime is unreachable wait on the device, in order.
            task = late.post("/services/download_packages", {"packages": ["ax"]}).json()["ax"]
            assert late.wait_task("download", task["task_id"])["status"] == "succeeded"
            assert rollout(store, "1.0")["counts"]["downloaded"] == 0
            relay.up()
            try:
                wait_for(lambda: rollout(store, "1.0")["counts"]["downloaded"] == 1, 30, "the queued report")
            finally:
                relay.down()
        listed = depot(store, "device", "list")
        assert "late" in listed

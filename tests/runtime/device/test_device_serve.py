"""The device dialect in a real `depot serve` on 127.0.0.1: enroll with `depot device add`, post
reports with httpx, watch the rollout pause itself and the published index follow."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from builder.sidecars import write_sidecar
from runtime.accounts import Accounts
from runtime.dialects import load_dialects
from runtime.storage import open_database
from tests.runtime.device.conftest import PASSWORD, STAFF, basic, bearer, install, make_repo, report
from tests.support.device_index import fetch_platform, package
from tests.support.serving import depot_command, serve_store


def enroll(repo: Path, site: Path, data: Path, name: str) -> str:
    done = subprocess.run(
        depot_command("device", "add", name, "--repo", str(repo), "--site", str(site), "--data", str(data)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def published_rollout(client: httpx.Client) -> dict | None:
    """The rollout of ax 2.6.4 as a device finds it: entry → the shards of pi64, verified."""
    ax = package(fetch_platform(client, "pi64")[0], "ax")
    return next(v for v in ax["versions"] if v["version"] == "2.6.4").get("rollout")


def test_reports_over_http_pause_a_failing_rollout(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    package = repo / "modules" / "ax.2.6.4.pi64.tar.gz"
    write_sidecar(package, {"rollout": 0.5, "max_failure_rate": 0.4, "min_devices": 3}, kind="module")
    with serve_store(tmp_path, repo=repo) as served, served.client() as client:
        load_dialects()
        db = open_database(served.data)
        Accounts(db).add(STAFF, PASSWORD, staff=True)
        db.close()
        tokens = [enroll(served.repo, served.site, served.data, f"robot-{i}") for i in range(3)]
        assert published_rollout(client) == {"share": 0.5, "groups": [], "paused": False}

        first = client.post("/device/api/v1/reports", json=report("task-1"), headers=bearer(tokens[0]))
        assert first.status_code == 200, first.text
        assert first.json() == {"device": "robot-0", "groups": [], "duplicate": False}
        again = client.post("/device/api/v1/reports", json=report("task-1"), headers=bearer(tokens[0]))
        assert again.json()["duplicate"] is True
        assert client.post("/device/api/v1/reports", json=report(), headers=bearer("nope")).status_code == 401

        for token in tokens[1:]:
            failed = report("task-7", [install(status="failed", rolled_back=True)])
            assert (
                client.post("/device/api/v1/reports", json=failed, headers=bearer(token)).status_code == 200
            )

        status = client.get("/device/api/v1/rollouts/modules/ax/2.6.4", headers=basic(STAFF, PASSWORD))
        assert status.status_code == 200, status.text
        body = status.json()
        assert body["counts"] == {
            "offered": 3,
            "downloaded": 0,
            "installed": 1,
            "failed": 2,
            "rolled_back": 2,
        }
        assert body["paused"] is True
        assert body["paused_reason"] == (
            "paused automatically: 2 of 3 devices failed (rate 0.67 > max_failure_rate 0.40)"
        )
        assert published_rollout(client) == {"share": 0.5, "groups": [], "paused": True}
        assert (
            client.get("/device/api/v1/rollouts/modules/ax/2.6.4", headers=bearer(tokens[0])).status_code
            == 401
        )

        deadline = time.monotonic() + 5
        while "paused automatically" not in served.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "module ax 2.6.4: paused automatically: 2 of 3 devices failed" in served.log.read_text()

"""GET /device/api/v1/rollouts/...: staff only; and the automatic pause after reports."""

from __future__ import annotations

import logging
import threading
import tomllib
from pathlib import Path

import pytest

from tests.runtime.device.conftest import PASSWORD, PLAIN, STAFF, DeviceStore, basic, bearer, install, report
from tests.support.device_index import package, platform_packages

URL = "/device/api/v1/rollouts/modules/ax/2.6.4"
AX_PI64 = "modules/ax.2.6.4.pi64.tar.gz"
AX_OPI64 = "modules/ax.2.6.4.opi64.tar.gz"


def sidecar_of(repo: Path, relpath: str) -> dict:
    return tomllib.loads((repo / (relpath + ".toml")).read_text())


def platform_entry(site: Path, platform: str, name: str = "ax", version: str = "2.6.4") -> dict:
    module = package(platform_packages(site, platform), name)
    return next(v for v in module["versions"] if v["version"] == version)


def test_the_rollout_of_a_version(device_store_app: DeviceStore, sidecar) -> None:
    s = device_store_app
    sidecar(s.repo, AX_OPI64, description="Motion", rollout=0.5)
    sidecar(s.repo, AX_PI64, description="Motion", rollout=0.25, groups=["beta"], max_failure_rate=0.5)
    one, two = s.enroll("robot-1"), s.enroll("robot-2")
    s.post(one, report("t1", [install(kind="download"), install()]))
    s.post(two, report("t1", [install(status="failed", rolled_back=True)]))
    response = s.rollout()
    assert response.status_code == 200, response.text
    assert response.json() == {
        "target": "module",
        "name": "ax",
        "version": "2.6.4",
        "share": 0.5,  # the first platform's sidecar, by name: opi64
        "groups": [],
        "paused": False,
        "paused_reason": "",
        "max_failure_rate": None,
        "min_devices": 10,
        "platforms": ["opi64", "pi64"],
        "counts": {"offered": 2, "downloaded": 1, "installed": 1, "failed": 1, "rolled_back": 1},
        "failure_rate": 0.5,
    }


def test_firmware_and_a_version_nobody_reported(device_store_app: DeviceStore) -> None:
    s = device_store_app
    body = s.rollout("firmware", "bottom-sensor", "1.4.3").json()
    assert body["target"] == "firmware" and body["platforms"] == ["pi64"]
    assert body["counts"] == {"offered": 0, "downloaded": 0, "installed": 0, "failed": 0, "rolled_back": 0}
    assert body["failure_rate"] is None


@pytest.mark.parametrize(
    "path",
    [
        "modules/ax/9.9.9",
        "modules/nothing/1.0",
        "firmware/ax/2.6.4",  # a module, not a firmware
        "modules/ax/2.6.4..",
        "apps/ax/2.6.4",
        "modules/ax/2.6.4/extra",
    ],
)
def test_a_version_not_in_repo_is_404(device_store_app: DeviceStore, path: str) -> None:
    s = device_store_app
    response = s.client.get(f"/device/api/v1/rollouts/{path}", headers=basic(STAFF, PASSWORD))
    assert response.status_code == 404, response.text
    assert set(response.json()) == {"error"}


def test_only_staff_may_read_rollouts(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    for headers, status in [
        ({}, 401),
        (bearer(token), 401),  # an enrolled device is not enough
        (basic(STAFF, "wrong-password"), 401),
        ({"Authorization": "Basic !!!"}, 401),
        (basic(PLAIN, PASSWORD), 403),
        (basic(STAFF, PASSWORD), 200),
    ]:
        response = s.client.get(URL, headers=headers)
        assert response.status_code == status, (headers, response.text)
        if status != 200:
            assert set(response.json()) == {"error"}
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Basic")


def fail_and_succeed(s: DeviceStore, failed: int, succeeded: int, start: int = 0) -> list[dict]:
    answers = []
    for i in range(start, start + failed + succeeded):
        token = s.enroll(f"robot-{i}")
        status = "failed" if i - start < failed else "succeeded"
        answers.append(
            s.post(token, report(f"task-{i}", [install(status=status, rolled_back=status == "failed")]))
        )
    return answers


def test_auto_pause_waits_for_min_devices_then_pauses_once(
    device_store_app: DeviceStore, sidecar, caplog: pytest.LogCaptureFixture
) -> None:
    s = device_store_app
    sidecar(s.repo, AX_PI64, description="Motion control", rollout=0.5, max_failure_rate=0.2, min_devices=4)
    sidecar(s.repo, AX_OPI64, description="Motion control (opi)", rollout=0.5)
    caplog.set_level(logging.WARNING, "runtime.device")

    fail_and_succeed(s, 3, 0)  # 3 of 3 failed, but only 3 devices reported: no pause
    assert sidecar_of(s.repo, AX_PI64).get("paused") is None
    assert s.rollout().json()["paused"] is False

    fail_and_succeed(s, 0, 1, start=3)  # 3 of 4 failed: 0.75 > 0.2
    reason = "paused automatically: 3 of 4 devices failed (rate 0.75 > max_failure_rate 0.20)"
    assert sidecar_of(s.repo, AX_PI64) == {
        "description": "Motion control",
        "rollout": 0.5,
        "max_failure_rate": 0.2,
        "min_devices": 4,
        "paused": True,
        "paused_reason": reason,
    }
    # every platform's sidecar, each keeping its own keys
    assert sidecar_of(s.repo, AX_OPI64) == {
        "description": "Motion control (opi)",
        "rollout": 0.5,
        "paused": True,
        "paused_reason": reason,
    }
    # the rebuilt index says so, on both platforms
    for platform in ("pi64", "opi64"):
        assert platform_entry(s.site, platform)["rollout"] == {"share": 0.5, "groups": [], "paused": True}
    assert [r.getMessage() for r in caplog.records if "paused automatically" in r.getMessage()] == [
        f"module ax 2.6.4: {reason} (after a report of device robot-3)"
    ]
    body = s.rollout().json()
    assert body["paused"] is True and body["paused_reason"] == reason

    fail_and_succeed(s, 2, 0, start=4)  # more failures: already paused, nothing written again
    assert sidecar_of(s.repo, AX_PI64)["paused_reason"] == reason
    assert len(s.db_rows("SELECT * FROM device_rollout_log WHERE actor = 'auto'")) == 1
    assert sum("paused automatically" in r.getMessage() for r in caplog.records) == 1


def test_a_rate_at_the_threshold_does_not_pause(device_store_app: DeviceStore, sidecar) -> None:
    s = device_store_app
    sidecar(s.repo, AX_PI64, max_failure_rate=0.5, min_devices=2)
    fail_and_succeed(s, 1, 1)  # 0.5 is not above 0.5
    assert "paused" not in sidecar_of(s.repo, AX_PI64)
    assert "rollout" not in platform_entry(s.site, "pi64")


def test_without_max_failure_rate_nothing_pauses(device_store_app: DeviceStore, sidecar) -> None:
    s = device_store_app
    sidecar(s.repo, AX_PI64, min_devices=1)
    fail_and_succeed(s, 3, 0)
    assert "paused" not in sidecar_of(s.repo, AX_PI64)


def test_concurrent_reports_pause_exactly_once(device_store_app: DeviceStore, sidecar) -> None:
    s = device_store_app
    sidecar(s.repo, AX_PI64, description="kept", max_failure_rate=0.1, min_devices=2)
    tokens = [s.enroll(f"robot-{i}") for i in range(10)]
    barrier = threading.Barrier(len(tokens))
    statuses: list[int] = []

    def post(i: int, token: str) -> None:
        barrier.wait()
        statuses.append(s.post(token, report(f"task-{i}", [install(status="failed")])).status_code)

    threads = [threading.Thread(target=post, args=(i, t)) for i, t in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 10
    assert len(s.db_rows("SELECT * FROM device_rollout_log WHERE actor = 'auto'")) == 1
    written = sidecar_of(s.repo, AX_PI64)
    assert written["paused"] is True and written["description"] == "kept"
    assert written["paused_reason"].startswith("paused automatically: ")
    assert platform_entry(s.site, "pi64")["rollout"]["paused"] is True


def test_a_broken_sidecar_does_not_fail_the_report(device_store_app: DeviceStore, caplog) -> None:
    s = device_store_app
    (s.repo / (AX_PI64 + ".toml")).write_text("max_failure_rate = 'high'\n")
    token = s.enroll("robot-1")
    assert s.post(token, report()).status_code == 200
    assert s.counts()["installed"] == 1
    response = s.rollout()
    assert response.status_code == 503 and set(response.json()) == {"error"}

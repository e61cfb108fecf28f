"""POST /device/api/v1/reports: shapes, hostile input, idempotency, what the flags mean."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from runtime.config import Limits
from runtime.ratelimit import Rate
from tests.runtime.device.conftest import DeviceStore, bearer, install, make_store, report

URL = "/device/api/v1/reports"


def assert_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


def test_a_report_is_taken_and_answered_with_the_device(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1", ("beta", "lab"))
    response = s.post(token, report())
    assert response.status_code == 200, response.text
    assert response.json() == {"device": "robot-1", "groups": ["beta", "lab"], "duplicate": False}
    [row] = s.db_rows("SELECT * FROM device_devices")
    assert row["agent_version"] == "0.1.0" and row["platform"] == "pi64" and row["last_report"]
    assert json.loads(row["installed"]) == {
        "modules": {"ax": "2.6.4"},
        "firmware": {"bottom-sensor": "1.4.3"},
    }
    assert s.counts() == {"offered": 1, "downloaded": 0, "installed": 1, "failed": 0, "rolled_back": 0}


def test_a_minimal_report_is_enough(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    response = s.post(token, {"report_id": "start-1"})
    assert response.status_code == 200, response.text
    assert response.json()["duplicate"] is False


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer depot_device_not-a-token"},
        {"Authorization": "Basic YWRtaW46YWRtaW4tcGFzc3dvcmQ="},
        {"Authorization": "Token abc"},
    ],
)
def test_no_valid_device_token_is_401(device_store_app: DeviceStore, headers: dict[str, str]) -> None:
    s = device_store_app
    s.enroll("robot-1")
    response = s.client.post(URL, json=report(), headers=headers)
    assert_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert s.db_rows("SELECT * FROM device_reports") == []


def test_another_purpose_of_token_is_401(device_store_app: DeviceStore) -> None:
    from runtime.storage import open_database
    from runtime.tokens import Tokens

    s = device_store_app
    db = open_database(s.data)
    _token, ci = Tokens(db).create(1, "ci")
    db.close()
    assert_error(s.client.post(URL, json=report(), headers=bearer(ci)), 401)


def test_a_removed_device_token_is_401(device_store_app: DeviceStore) -> None:
    from runtime.device.store import remove
    from runtime.storage import open_database

    s = device_store_app
    token = s.enroll("robot-1")
    assert s.post(token, report()).status_code == 200
    db = open_database(s.data)
    remove(db, "robot-1")
    db.close()
    assert_error(s.post(token, report("task-2")), 401)
    assert s.counts()["installed"] == 0  # the removed device no longer counts


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"", 400),
        (b"\xff\xfe", 400),
        (b"[" * 100 + b"]" * 100, 400),  # deep nesting is refused before parsing
        (b"[]", 422),
        (b'"report"', 422),
    ],
)
def test_malformed_bodies(device_store_app: DeviceStore, body: bytes, status: int) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    response = s.client.post(URL, content=body, headers={**bearer(token), "Content-Type": "application/json"})
    assert_error(response, status)


def bad(**changes) -> dict:
    body = report()
    for key, value in changes.items():
        if key.startswith("event_"):
            body["events"][0][key[6:]] = value
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (bad(report_id=12), "report_id"),
        (bad(report_id=""), "report_id"),
        (bad(report_id="x" * 101), "report_id"),
        ({"events": []}, "report_id"),
        (bad(agent_version=["0.1"]), "agent_version"),
        (bad(platform="../etc"), "platform"),
        (bad(installed=[]), "installed"),
        (bad(installed={"modules": {"ax": 2}}), "installed.modules.ax"),
        (bad(installed={"modules": {"../x": "1"}}), "installed.modules"),
        (bad(installed={"modules": {f"m{i}": "1" for i in range(1001)}}), "installed.modules"),
        (bad(offered={"target": "module"}), "offered"),
        (bad(offered=[{"target": "app", "name": "ax", "version": "1"}]), "offered[0].target"),
        (bad(offered=[{"target": "module", "name": "ax", "version": None}]), "offered[0].version"),
        (bad(events="all"), "events"),
        (bad(events=[install()] * 1001), "events"),
        (bad(events=[7]), "events[0]"),
        (bad(event_kind="reboot"), "events[0].kind"),
        (bad(event_status="maybe"), "events[0].status"),
        (bad(event_status=True), "events[0].status"),
        (bad(event_rolled_back="yes"), "events[0].rolled_back"),
        (bad(event_task_id=True), "events[0].task_id"),
        (bad(event_task_id=1.5), "events[0].task_id"),
        (bad(event_finished="yesterday"), "events[0].finished"),
        (bad(event_finished=12), "events[0].finished"),
        (bad(event_name="a" * 65), "events[0].name"),
        (bad(event_version="1" * 101), "events[0].version"),
        (bad(event_reason={"x": 1}), "events[0].reason"),
        (bad(event_target="firmware"), "events[0].target"),  # an install task installs a module
    ],
)
def test_wrong_types_and_values_are_422(device_store_app: DeviceStore, body: dict, names: str) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    message = assert_error(s.post(token, body), 422)
    assert names in message
    assert s.db_rows("SELECT * FROM device_reports") == []


def test_unknown_keys_are_ignored(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    body = report(battery=0.8)
    body["events"][0]["duration"] = 12
    assert s.post(token, body).status_code == 200


def test_a_huge_body_is_413(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    body = json.dumps(report(padding="x" * 300_000)).encode()
    response = s.client.post(URL, content=body, headers={**bearer(token), "Content-Type": "application/json"})
    assert_error(response, 413)

    def chunks():  # no Content-Length: stopped as the stream passes the cap
        for _ in range(100):
            yield b" " * 4096

    response = s.client.post(URL, content=chunks(), headers=bearer(token))
    assert_error(response, 413)


def test_a_duplicate_report_counts_once(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    body = report(events=[install(status="failed", rolled_back=True)])
    assert s.post(token, body).json()["duplicate"] is False
    again = s.post(token, body)
    assert again.status_code == 200
    assert again.json() == {"device": "robot-1", "groups": [], "duplicate": True}
    assert s.counts() == {"offered": 1, "downloaded": 0, "installed": 0, "failed": 1, "rolled_back": 1}
    assert len(s.db_rows("SELECT * FROM device_reports")) == 1
    # the same report id from another device is that device's own report
    other = s.enroll("robot-2")
    assert s.post(other, body).json()["duplicate"] is False
    assert s.counts()["failed"] == 2


def test_concurrent_duplicates_count_once(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    body = report(events=[install(status="failed")])
    answers: list[dict] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        barrier.wait()
        response = s.post(token, body)
        assert response.status_code == 200, response.text
        answers.append(response.json())

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 7
    assert s.counts()["failed"] == 1
    assert len(s.db_rows("SELECT * FROM device_reports")) == 1


def test_the_flags_are_the_latest_outcome(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    download = install(kind="download", finished="2026-12-01T09:00:00Z")
    failed = install(status="failed", rolled_back=True, finished="2026-12-01T10:00:00Z")
    s.post(token, report("task-1", [download, failed]))
    assert s.counts() == {"offered": 1, "downloaded": 1, "installed": 0, "failed": 1, "rolled_back": 1}
    s.post(
        token, report("task-2", [install(finished="2026-12-01T11:00:00+01:00")])
    )  # 10:00Z: a tie, later wins
    assert s.counts() == {"offered": 1, "downloaded": 1, "installed": 1, "failed": 0, "rolled_back": 0}
    # an older failure that arrives late does not undo the newer success
    s.post(token, report("task-0", [install(status="failed", finished="2026-12-01T08:00:00Z")]))
    assert s.counts()["installed"] == 1 and s.counts()["failed"] == 0
    # an uninstall changes no flag, a failed download sets none
    s.post(token, report("task-3", [install(kind="uninstall"), install(kind="download", status="failed")]))
    assert s.counts()["installed"] == 1 and s.counts()["failed"] == 0


def test_firmware_tasks_count_as_installs(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    flash = install(kind="firmware", target="firmware", name="bottom-sensor", version="1.4.3", finished="")
    assert s.post(token, report(events=[flash])).status_code == 200
    assert s.counts("firmware", "bottom-sensor", "1.4.3")["installed"] == 1


def test_reports_are_rate_limited_per_device(tmp_path: Path) -> None:
    for s in make_store(tmp_path, Limits(device_report=Rate(2, 3600))):
        one, two = s.enroll("robot-1"), s.enroll("robot-2")
        assert s.post(one, report("a")).status_code == 200
        assert s.post(one, report("b")).status_code == 200
        limited = s.post(one, report("c"))
        assert_error(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert s.post(two, report("a")).status_code == 200  # another device has its own window


def test_unknown_paths_and_methods_answer_in_the_shape(device_store_app: DeviceStore) -> None:
    s = device_store_app
    assert_error(s.client.get("/device/api/v1/nothing"), 404)
    wrong = s.client.get(URL)
    assert_error(wrong, 405)
    assert wrong.headers["allow"] == "POST"
    assert_error(s.client.post("/device/api/v1/rollouts/modules/ax/2.6.4"), 405)
    # the static device index next to it still serves
    assert s.client.get("/device/index.json").status_code == 200

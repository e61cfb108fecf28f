"""/console/fleet: enrolled devices and each version's rollout, paused and resumed from the page
through runtime.device.rollouts.change_rollout, then rebuilt."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.device import store as device_store
from runtime.storage import open_database
from tests.support.console import ConsoleStore, console_store
from tests.support.device_index import package, platform_packages

AX = "modules/ax.2.6.4.pi64.tar.gz"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsoleStore]:
    with console_store(tmp_path) as s:
        yield s


def enroll_and_report(s: ConsoleStore) -> None:
    db = open_database(s.data)
    try:
        _device, token = device_store.enroll(db, "robot-17", ["beta"])
    finally:
        db.close()
    body = {
        "report_id": "r1",
        "agent_version": "0.1.0",
        "platform": "pi64",
        "installed": {"modules": {"ax": "2.6.4"}, "firmware": {"bottom-sensor": "1.4.3"}},
        "offered": [{"target": "module", "name": "ax", "version": "2.6.4"}],
        "events": [
            {"kind": "install", "target": "module", "name": "ax", "version": "2.6.4", "status": "succeeded"}
        ],
    }
    answer = s.client.post("/device/api/v1/reports", json=body, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text


def index_entry(site: Path) -> dict:
    module = package(platform_packages(site, "pi64"), "ax")
    return next(v for v in module["versions"] if v["version"] == "2.6.4")


def row(page: str, label: str) -> str:
    match = re.search(rf'<tr data-rollout="{re.escape(label)}">(.*?)</tr>', page, re.S)
    assert match, page
    return match[1]


def test_staff_see_devices_and_rollouts(store: ConsoleStore) -> None:
    enroll_and_report(store)
    store.sign_in("staff")
    page = store.client.get("/console/fleet")
    assert page.status_code == 200
    device = re.search(r'<tr data-device="robot-17">(.*?)</tr>', page.text, re.S)
    assert device, page.text
    for shown in ("beta", "pi64", "0.1.0", "ax 2.6.4", "firmware bottom-sensor 1.4.3"):
        assert shown in device[1]
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", device[1])  # the last report
    ax = row(page.text, "module ax 2.6.4")
    assert (
        'data-state="active"' in ax
        and "installed <strong>1</strong>" in ax
        and "offered <strong>1</strong>" in ax
    )
    assert '<progress id="progress-' in ax and 'value="1"' in ax
    assert "firmware bottom-sensor 1.4.3" in page.text
    assert " style=" not in page.text


def test_pause_and_resume_write_the_sidecar_and_rebuild(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    form = {"csrf": csrf, "target": "module", "name": "ax", "version": "2.6.4"}
    paused = store.client.post(
        "/console/fleet/rollout",
        data={**form, "action": "pause", "reason": "  bad   batch "},
        follow_redirects=False,
    )
    assert paused.status_code == 303 and paused.headers["location"].startswith("/console/fleet?done=paused")
    sidecar = tomllib.loads((store.repo / (AX + ".toml")).read_text())
    assert sidecar["paused"] is True and sidecar["paused_reason"] == "bad batch"
    assert index_entry(store.site)["rollout"]["paused"] is True  # rebuilt
    page = store.client.get(paused.headers["location"])
    assert "Paused module ax 2.6.4" in page.text
    ax = row(page.text, "module ax 2.6.4")
    assert 'data-state="paused"' in ax and "bad batch" in ax and 'value="resume"' in ax
    log = open_database(store.data).execute("SELECT actor FROM device_rollout_log").fetchall()
    assert log == [("console:staff",)]

    again = store.client.post(
        "/console/fleet/rollout",
        data={**form, "action": "pause", "reason": "bad batch"},
        follow_redirects=False,
    )
    assert "done=unchanged" in again.headers["location"]

    resumed = store.client.post(
        "/console/fleet/rollout", data={**form, "action": "resume"}, follow_redirects=False
    )
    assert "done=resumed" in resumed.headers["location"]
    sidecar_path = store.repo / (AX + ".toml")
    sidecar = tomllib.loads(sidecar_path.read_text()) if sidecar_path.exists() else {}
    assert "paused" not in sidecar and "paused_reason" not in sidecar
    assert "rollout" not in index_entry(store.site)  # every device again: no rule in the index


def test_bad_changes_and_other_roles_are_refused(store: ConsoleStore) -> None:
    csrf = store.sign_in("staff")
    base = {"csrf": csrf, "target": "module", "name": "ax", "version": "2.6.4", "action": "pause"}
    assert store.client.post("/console/fleet/rollout", data={**base, "action": "delete"}).status_code == 403
    assert store.client.post("/console/fleet/rollout", data={**base, "target": "apk"}).status_code == 403
    missing = store.client.post("/console/fleet/rollout", data={**base, "version": "9.9.9"})
    assert missing.status_code == 404
    hostile = store.client.post("/console/fleet/rollout", data={**base, "name": "../../etc", "version": "1"})
    assert hostile.status_code == 404
    assert store.client.post("/console/fleet/rollout", data={**base, "csrf": "0" * 64}).status_code == 403
    assert (
        not (store.repo / (AX + ".toml")).exists()
        or "paused" not in (store.repo / (AX + ".toml")).read_text()
    )

    for name in ("dev", "maint"):
        store.client.cookies.clear()
        csrf = store.sign_in(name)
        assert store.client.get("/console/fleet").status_code == 403
        refused = store.client.post("/console/fleet/rollout", data={**base, "csrf": csrf})
        assert refused.status_code == 403
        assert "Fleet" not in store.client.get("/console/").text.split("<main", 1)[0]  # not in the menu
    assert (
        not (store.repo / (AX + ".toml")).exists()
        or "paused" not in (store.repo / (AX + ".toml")).read_text()
    )
    store.client.cookies.clear()
    assert store.client.get("/console/fleet", follow_redirects=False).status_code == 303

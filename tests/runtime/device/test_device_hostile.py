"""Hostile tests of the device dialect: reports from enrolled (and not enrolled) attackers, the
rollout status endpoint, and the automatic pause. Each test documents what holds; those whose
docstring names a fault are regression tests of a bug a hostile review found (and fixed)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from runtime.config import Limits
from runtime.device import store as device_store
from runtime.device.store import Report
from runtime.ratelimit import Rate
from runtime.storage import open_database
from runtime.tokens import Tokens
from tests.runtime.device.conftest import (
    PASSWORD,
    PLAIN,
    STAFF,
    DeviceStore,
    basic,
    bearer,
    install,
    make_store,
    report,
)

URL = "/device/api/v1/reports"
AX_PI64 = "modules/ax.2.6.4.pi64.tar.gz"


def sidecar_of(repo: Path, relpath: str = AX_PI64) -> dict:
    return tomllib.loads((repo / (relpath + ".toml")).read_text())


def no_500(response) -> None:
    assert response.status_code < 500, (
        f"a 500 from the device dialect: {response.status_code} {response.text}"
    )


# -- tokens and identities ------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", ["ci", "ota", "session", "Device", "device "])
def test_tokens_of_every_other_purpose_are_401(device_store_app: DeviceStore, purpose: str) -> None:
    s = device_store_app
    s.enroll("robot-1")
    db = open_database(s.data)
    try:
        _t, raw = Tokens(db).create(1, purpose)
    finally:
        db.close()
    response = s.post(raw, report())
    assert response.status_code == 401, response.text
    assert s.db_rows("SELECT * FROM device_reports") == []


def test_a_token_revoked_with_tokens_revoke_is_401(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    [row] = s.db_rows("SELECT token_id FROM device_devices")
    db = open_database(s.data)
    try:
        Tokens(db).revoke(row["token_id"])
    finally:
        db.close()
    assert s.post(token, report()).status_code == 401


def test_a_removed_and_re_added_device_starts_from_nothing(device_store_app: DeviceStore) -> None:
    s = device_store_app
    old = s.enroll("robot-1")
    assert s.post(old, report("task-1", [install(status="failed")])).status_code == 200
    db = open_database(s.data)
    try:
        device_store.remove(db, "robot-1")
    finally:
        db.close()
    new = s.enroll("robot-1")
    assert s.counts()["failed"] == 0
    assert s.post(old, report("task-2")).status_code == 401  # the old token stays revoked
    # the same report id is new for the new device: nothing of the old one was inherited
    response = s.post(new, report("task-1", [install()]))
    assert response.status_code == 200 and response.json()["duplicate"] is False
    assert s.counts()["installed"] == 1 and s.counts()["failed"] == 0


def test_report_ids_are_per_device(device_store_app: DeviceStore) -> None:
    s = device_store_app
    a, b = s.enroll("robot-a"), s.enroll("robot-b")
    assert s.post(a, report("task-1", [install(status="failed")])).json()["duplicate"] is False
    assert s.post(b, report("task-1", [install(status="failed")])).json()["duplicate"] is False
    assert s.counts()["failed"] == 2


def test_one_token_cannot_report_as_another_device(device_store_app: DeviceStore) -> None:
    s = device_store_app
    a = s.enroll("robot-a")
    s.enroll("robot-b")
    body = report("task-1", device="robot-b", name="robot-b")  # unknown keys are ignored
    assert s.post(a, body).json()["device"] == "robot-a"
    rows = {r["name"]: r["last_report"] for r in s.db_rows("SELECT name, last_report FROM device_devices")}
    assert rows["robot-b"] is None


# -- hostile bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"report_id": "\xff\xfe"}',  # not UTF-8 inside a string
        '{"report_id": "x"}'.encode("utf-16"),  # UTF-16 (json.loads would take it)
        b'{"report_id": "x", "events": [' + b"{}," * 5000 + b"{}]}",
        b'{"report_id": ' + b"9" * 5000 + b"}",  # an integer above Python's digit limit
        b'{"report_id": "x", "events": [{"task_id": ' + b"9" * 5000 + b"}]}",
        b'{"report_id": NaN}',
        b'{"report_id": "x", "installed": {"modules": {"ax": NaN}}}',
        b'{"report_id": "x", "offered": [[[[[[]]]]]]}',
        b'{"report_id": "x", "installed": {"modules": []}}',
        b'{"report_id": "x", "installed": []}',
        b'{"report_id": "x", "events": [{"kind": "install", "target": "module", "name": "ax",'
        b' "version": "2.6.4", "status": "failed", "finished": 12}]}',
        b'{"report_id": "x", "events": [{"kind": "install", "target": "module", "name": "ax",'
        b' "version": "2.6.4", "status": "failed", "rolled_back": "true"}]}',
        b'{"report_id": "x", "events": [{"kind": "install", "target": "module", "name": "ax",'
        b' "version": "2.6.4", "status": "failed", "task_id": 1.5}]}',
        b'{"report_id": "x", "platform": "pi64\\u0000"}',
    ],
)
def test_hostile_bodies_never_answer_500(device_store_app: DeviceStore, body: bytes) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    for content_type in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
        response = s.client.post(URL, content=body, headers={**bearer(token), "Content-Type": content_type})
        no_500(response)
        assert response.status_code in (200, 400, 422), response.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "äx"),
        ("name", "ax/../../etc"),
        ("name", "a" * 65),
        ("version", "../2.6.4"),
        ("version", ".2.6.4"),
        ("version", "2.6.4 "),
        ("version", "2.6.4\u0661"),
    ],
)
def test_unicode_and_traversal_names_are_422(device_store_app: DeviceStore, field: str, value: str) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    response = s.post(token, report(events=[install(**{field: value})]))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("where", "body"),
    [
        ("events[0].name", report(events=[install(name="ax\n")])),
        ("events[0].version", report(events=[install(version="2.6.4\n")])),
        ("offered[0].name", report(offered=[{"target": "module", "name": "ax\n", "version": "2.6.4"}])),
        ("installed.modules", report(installed={"modules": {"ax\n": "2.6.4"}})),
        ("installed.modules.ax", report(installed={"modules": {"ax": "2.6.4\n"}})),
        ("platform", report(platform="pi64\n")),
    ],
)
def test_a_name_or_version_ending_in_a_newline_is_422(
    device_store_app: DeviceStore, where: str, body: dict
) -> None:
    """Was a bug: runtime/device/rollouts.py NAME and VERSION ended in ``$``, which also matches
    before a trailing newline, so ``re.match`` let ``"ax\\n"`` through (now ``\\Z`` and fullmatch)."""
    s = device_store_app
    token = s.enroll("robot-1")
    response = s.post(token, body)
    assert response.status_code == 422, (
        f"{where} with a trailing newline was accepted ({response.status_code}); stored rows: "
        f"{s.db_rows('SELECT name, version FROM device_versions')}"
    )
    assert s.db_rows("SELECT * FROM device_versions") == []


def test_a_device_name_or_group_ending_in_a_newline_is_refused(device_store_app: DeviceStore) -> None:
    """Was a bug: runtime/device/store.py DEVICE_NAME and builder/settings.py GROUP ended in ``$``."""
    from builder.errors import FormatError
    from builder.settings import GROUP
    from builder.sidecars import write_sidecar
    from runtime.device.rollouts import NAME, VERSION
    from runtime.device.store import DEVICE_NAME, DeviceError, parse_groups

    s = device_store_app
    db = open_database(s.data)
    try:
        with pytest.raises(DeviceError):
            device_store.enroll(db, "robot-1\n", [])
        assert device_store.get(db, "robot-1\n") is None and device_store.all_devices(db) == []
    finally:
        db.close()
    with pytest.raises(DeviceError):
        parse_groups("be\nta")
    assert parse_groups(" beta\n,lab") == ["beta", "lab"]  # the CLI's groups are stripped
    with pytest.raises(FormatError):  # a sidecar's groups are checked with GROUP as well
        write_sidecar(s.repo / AX_PI64, {"groups": ["beta\n"]}, kind="module")
    for pattern in (GROUP, DEVICE_NAME, NAME, VERSION):  # whoever calls .match
        assert pattern.match("a1\n") is None and pattern.match("a1") is not None


LONE = "\ud800"


@pytest.mark.parametrize(
    ("where", "body"),
    [
        ("report_id", report(report_id="r" + LONE)),
        ("agent_version", report(agent_version=LONE)),
        ("platform", report(platform=LONE)),
        ("events[0].name", report(events=[install(name="ax" + LONE)])),
        ("events[0].version", report(events=[install(version="2.6.4" + LONE)])),
        ("events[0].reason", report(events=[install(status="failed", reason=LONE)])),
        ("events[0].task_id", report(events=[install(task_id="7" + LONE)])),
        ("events[0].finished", report(events=[install(finished="2026-12-01T10:00:00Z" + LONE)])),
        ("events[0].kind", report(events=[install(kind="install" + LONE)])),
        ("offered[0].name", report(offered=[{"target": "module", "name": LONE, "version": "2.6.4"}])),
        ("installed.modules", report(installed={"modules": {LONE: "2.6.4"}})),
        ("installed.modules.ax", report(installed={"modules": {"ax": LONE}})),
    ],
)
def test_a_lone_surrogate_in_any_string_is_422(device_store_app: DeviceStore, where: str, body: dict) -> None:
    """Was a bug (a 500): json.loads turns ``"\\ud800"`` into a lone surrogate, and sqlite3
    raised UnicodeEncodeError when record_report bound it. parse_report now refuses every string
    that UTF-8 cannot encode, with one check (reports.py ``_encodable``)."""
    s = device_store_app
    token = s.enroll("robot-1")
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as \ud800
    assert b"\\ud800" in raw
    response = s.client.post(URL, content=raw, headers={**bearer(token), "Content-Type": "application/json"})
    assert response.status_code == 422, f"{where} with a lone surrogate answered {response.status_code}"
    assert response.json()["error"].startswith(where), response.text
    assert s.db_rows("SELECT * FROM device_reports") == []


@pytest.mark.parametrize(
    "finished",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+00:31"],
)
def test_a_finished_time_out_of_range_is_422(device_store_app: DeviceStore, finished: str) -> None:
    """Was a bug (a 500): in runtime/device/reports.py _finished ``astimezone(UTC)`` raises
    OverflowError for a UTC time before year 1 or after 9999, which was no ReportError."""
    s = device_store_app
    token = s.enroll("robot-1")
    response = s.post(token, report(events=[install(finished=finished)]))
    assert response.status_code == 422, (
        f"finished={finished!r} answered {response.status_code}, not 422: {response.text[:200]}"
    )
    assert response.json()["error"].startswith("events[0].finished"), response.text


@pytest.mark.parametrize(
    "early", ["0999-01-01T00:00:00Z", "0001-01-01T00:00:00-01:00", "1970-01-01T00:00:00Z"]
)
def test_a_year_before_1000_ranks_below_every_later_outcome(
    device_store_app: DeviceStore, early: str
) -> None:
    """Was a bug: runtime/device/reports.py _finished formatted with ``%Y``, which glibc writes
    without leading zeros (``999-01-01T...``), and outcomes are compared as strings: ``"999-" >
    "2026-"``, so an outcome from year 999 was never replaced by a real, later one. Times are now
    stored with a four-digit year (runtime.clock.utc_iso), so string order is time order; an
    early time (a clock never set) is kept, not refused, since the agent drops a 422 for good."""
    s = device_store_app
    token = s.enroll("robot-1")
    failed_early = report("task-1", [install(status="failed", finished=early)])
    assert s.post(token, failed_early).status_code == 200
    [row] = s.db_rows("SELECT outcome_at FROM device_versions")
    assert len(row["outcome_at"]) == len("2026-12-01T10:00:00Z") and row["outcome_at"][4] == "-", row
    succeeded = report("task-2", [install(status="succeeded", finished="2026-12-01T10:00:00Z")])
    assert s.post(token, succeeded).status_code == 200
    assert s.counts()["installed"] == 1 and s.counts()["failed"] == 0, (
        f"the early failure still outranks the 2026 success: {s.counts()} "
        f"(outcome_at {s.db_rows('SELECT outcome_at FROM device_versions')})"
    )
    # and arriving late, the early outcome changes nothing
    assert s.post(token, report("task-3", [install(status="failed", finished=early)])).status_code == 200
    assert s.counts()["installed"] == 1 and s.counts()["failed"] == 0


def test_outcomes_in_other_zones_are_ordered_by_their_instant(device_store_app: DeviceStore) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    # 10:00+02:00 is 08:00Z, older than 09:00Z although its text sorts later
    s.post(token, report("task-1", [install(status="succeeded", finished="2026-12-01T09:00:00Z")]))
    s.post(token, report("task-2", [install(status="failed", finished="2026-12-01T10:00:00+02:00")]))
    assert s.counts()["installed"] == 1 and s.counts()["failed"] == 0


# -- bounded storage ------------------------------------------------------------------------------


def test_report_ids_kept_per_device_do_not_shrink_when_other_devices_report() -> None:
    """Was a bug: runtime/device/store.py record_report deleted this device's report ids with
    ``seq <= max(seq of this device) - 1000``, but ``seq`` is one AUTOINCREMENT over every
    device: with other devices reporting in between, a device kept far fewer than its newest
    1000 ids, and a report re-sent after a lost answer was counted again. The cut now counts
    this device's rows."""
    import tempfile

    from runtime.device.store import KEEP_REPORT_IDS, record_report

    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp))
        a, _ = device_store.enroll(db, "robot-a", [])
        b, _ = device_store.enroll(db, "robot-b", [])
        empty = {"modules": {}, "firmware": {}}
        assert record_report(db, a, Report("a-1", "", "", empty, (), ()), ()) == (False, set())
        for i in range(KEEP_REPORT_IDS):  # another device is busy meanwhile
            record_report(db, b, Report(f"b-{i}", "", "", empty, (), ()), ())
        record_report(db, a, Report("a-2", "", "", empty, (), ()), ())  # a's second report only
        sql = "SELECT report_id FROM device_reports WHERE device_id = ? ORDER BY seq"
        kept = [r["report_id"] for r in device_store.rows(db, sql, [a.id])]
        duplicate, _ = record_report(db, a, Report("a-1", "", "", empty, (), ()), ())
        kept_b = device_store.rows(db, sql, [b.id])
        db.close()
    assert kept == ["a-1", "a-2"] and len(kept_b) == KEEP_REPORT_IDS
    assert duplicate is True, (
        f"robot-a sent 2 reports but keeps only {kept}: its first report id was forgotten "
        "because robot-b's reports used up the shared seq range, so a re-sent a-1 counts again"
    )


def test_versions_that_do_not_exist_get_no_rows(tmp_path: Path) -> None:
    """Was a bug: runtime/device/store.py record_report kept a device_versions row for every
    (target, name, version) a device named in ``offered`` or a successful download, whether or
    not it exists in repo/; nothing bounded the rows per device, so one token (60 reports a
    minute by default, 2000 keys each) could add ~170 million rows a day. Only versions with a
    file in repo/ get a row now (rollouts.existing_versions)."""
    s = next(make_store(tmp_path))
    token = s.enroll("robot-1")
    for r in range(3):
        offered = [{"target": "module", "name": f"junk{r}", "version": f"1.{i}"} for i in range(1000)]
        offered[0] = {"target": "module", "name": "ax", "version": "2.6.4"}  # real: counted
        download = {"kind": "download", "target": "firmware", "name": f"junk{r}", "status": "succeeded"}
        downloads = [{**download, "version": f"2.{i}"} for i in range(999)]
        downloads.append({**download, "name": "bottom-sensor", "version": "1.4.3"})  # real
        response = s.post(token, {"report_id": f"flood-{r}", "offered": offered, "events": downloads})
        assert response.status_code == 200
    found = s.db_rows(
        "SELECT target, name, version, offered, downloaded FROM device_versions ORDER BY target"
    )
    assert found == [
        {"target": "firmware", "name": "bottom-sensor", "version": "1.4.3", "offered": 0, "downloaded": 1},
        {"target": "module", "name": "ax", "version": "2.6.4", "offered": 1, "downloaded": 0},
    ], f"{len(found)} device_versions rows, only 2 of them for versions with a file in repo/"


def test_a_device_keeps_exactly_its_newest_report_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.device.store import record_report

    monkeypatch.setattr(device_store, "KEEP_REPORT_IDS", 3)
    db = open_database(tmp_path)
    try:
        a, _ = device_store.enroll(db, "robot-a", [])
        b, _ = device_store.enroll(db, "robot-b", [])
        empty = {"modules": {}, "firmware": {}}
        for i in range(6):
            record_report(db, a, Report(f"a-{i}", "", "", empty, (), ()), ())
            record_report(db, b, Report(f"b-{i}", "", "", empty, (), ()), ())
        sql = "SELECT report_id FROM device_reports WHERE device_id = ? ORDER BY seq"
        assert [r["report_id"] for r in device_store.rows(db, sql, [a.id])] == ["a-3", "a-4", "a-5"]
        assert [r["report_id"] for r in device_store.rows(db, sql, [b.id])] == ["b-3", "b-4", "b-5"]
        assert record_report(db, a, Report("a-5", "", "", empty, (), ()), ())[0] is True
        assert record_report(db, a, Report("a-0", "", "", empty, (), ()), ())[0] is False  # forgotten
    finally:
        db.close()


# -- the automatic pause --------------------------------------------------------------------------


def test_one_device_cannot_pause_alone_when_min_devices_is_above_one(
    device_store_app: DeviceStore, sidecar
) -> None:
    s = device_store_app
    sidecar(s.repo, AX_PI64, max_failure_rate=0.1, min_devices=2)
    token = s.enroll("evil")
    for i in range(20):
        events = [install(status="failed", finished=f"2026-12-01T10:00:{i:02d}Z") for _ in range(50)]
        assert s.post(token, report(f"task-{i}", events)).status_code == 200
    assert s.counts()["failed"] == 1
    assert "paused" not in sidecar_of(s.repo)


def test_failures_for_versions_not_in_repo_pause_nothing_and_do_not_fail(
    device_store_app: DeviceStore,
) -> None:
    s = device_store_app
    token = s.enroll("robot-1")
    events = [install(name="ghost", version="9.9.9", status="failed")]
    events += [install(version="2.6.99", status="failed")]
    events += [{**install(status="failed"), "kind": "firmware", "target": "firmware", "name": "ax"}]
    response = s.post(token, report(events=events))
    assert response.status_code == 200, response.text


def test_a_min_devices_of_one_lets_one_device_pause_a_rollout_it_was_never_offered(
    device_store_app: DeviceStore, sidecar
) -> None:
    """Documents a design limit (not counted as a bug): the store does not check that a device
    was offered, or is on a platform or in a group of, the version whose failure it reports."""
    s = device_store_app
    sidecar(s.repo, AX_PI64, groups=["beta"], max_failure_rate=0.5, min_devices=1)
    token = s.enroll("outsider")  # in no group, reports platform opi64
    s.post(token, report(platform="opi64", offered=[], events=[install(status="failed")]))
    assert sidecar_of(s.repo)["paused"] is True


# -- the rollout status endpoint ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "modules/..%2F..%2Fdepot.toml/2.6.4",
        "modules/ax/..%2F..%2F..%2Fetc%2Fpasswd",
        "modules/ax/%2e%2e",
        "modules/ax/2.6.4%00",
        "modules/ax/2.6.4%0A",
        "modules/ax%0A/2.6.4",
        "modules/bottom-sensor/1.4.3",  # a firmware version asked as a module
        "firmware/ax/2.6.4",  # a module version asked as firmware
        "modules/AX/2.6.4",
        "modules/ax/" + "9" * 5000,
        "..%2Fmodules/ax/2.6.4",
    ],
)
def test_rollout_paths_that_are_no_version_are_404(device_store_app: DeviceStore, path: str) -> None:
    s = device_store_app
    response = s.client.get(f"/device/api/v1/rollouts/{path}", headers=basic(STAFF, PASSWORD))
    no_500(response)
    assert response.status_code == 404, response.text


def test_rollout_auth_holds(tmp_path: Path) -> None:
    limits = Limits(login_account=Rate(3, 900), login_address=Rate(100, 900))
    s = next(make_store(tmp_path, limits))
    url = "/device/api/v1/rollouts/modules/ax/2.6.4"
    token = s.enroll("robot-1")
    assert s.client.get(url, headers=bearer(token)).status_code == 401
    assert s.client.get(url, headers=basic(PLAIN, PASSWORD)).status_code == 403
    assert s.client.get(url, headers=basic("@devices", "!")).status_code == 401
    assert s.client.get(url, headers={"Authorization": "Basic %%%"}).status_code == 401
    assert s.client.get(url, headers={"Authorization": "Basic " + "w4k="}).status_code == 401
    statuses = [s.client.get(url, headers=basic(STAFF, "wrong")).status_code for _ in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429, statuses
    for method in ("POST", "PUT", "DELETE"):
        assert s.client.request(method, url, headers=basic(STAFF, PASSWORD)).status_code == 405

"""A device report from untrusted JSON: every type, count, length and pattern checked before
anything is stored. The problems raise :class:`ReportError` naming the field
(``events[3].status``); unknown keys are ignored, so a newer agent may send more."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from builder.errors import DepotError
from runtime.clock import now_iso, utc_iso
from runtime.device.rollouts import NAME, VERSION
from runtime.device.store import Event, Report, VersionKey

MAX_BODY = 256 * 1024
MAX_EVENTS = 1000
MAX_OFFERED = 1000
MAX_INSTALLED = 1000  # per kind
MAX_REPORT_ID = 100
MAX_TEXT = 10_000  # a reason (only checked: the store keeps none)
MAX_SHORT = 64  # agent_version
PLATFORM = re.compile(r"^[A-Za-z0-9_-]{0,64}\Z")  # \Z: "$" also matches before a final "\n"
KINDS = ("download", "install", "uninstall", "firmware")
TARGETS = ("module", "firmware")
STATUSES = ("succeeded", "failed")
# which targets each kind of task may report
KIND_TARGETS = {
    "download": TARGETS,
    "install": ("module",),
    "uninstall": ("module",),
    "firmware": ("firmware",),
}


class ReportError(DepotError):
    """A well-formed JSON body that is not a report (answered 422)."""


def _encodable(value: str, what: str) -> str:
    """The one check of every string a report brings: json.loads turns ``"\\ud800"`` into a lone
    surrogate, which no UTF-8 can hold (sqlite3 would raise UnicodeEncodeError when binding it),
    and ``"\\u0000"`` into a NUL, which PostgreSQL's text cannot hold: refused on both engines."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ReportError(f"{what} is not valid Unicode (a lone surrogate)") from None
    if "\x00" in value:
        raise ReportError(f"{what} holds a NUL character")
    return value


def _string(data: dict[str, Any], key: str, where: str, limit: int, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ReportError(f"{where}{key} must be a string")
    if len(value) > limit:
        raise ReportError(f"{where}{key} is longer than {limit} characters")
    return _encodable(value, f"{where}{key}")


def _matching(data: dict[str, Any], key: str, where: str, pattern: re.Pattern[str], what: str) -> str:
    value = _string(data, key, where, 100, required=True)
    if not pattern.fullmatch(value):
        raise ReportError(f"{where}{key} is not a valid {what}")
    return value


def _choice(data: dict[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
    value = data.get(key)
    if not isinstance(value, str) or value not in choices:
        raise ReportError(f"{where}{key} must be one of {', '.join(choices)}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportError(f"{where} must be an object")
    return value


def _list(value: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ReportError(f"{where} must be a list")
    if len(value) > limit:
        raise ReportError(f"{where} has more than {limit} entries")
    return value


def _finished(data: dict[str, Any], where: str) -> str:
    """An ISO 8601 time, normalised to the runtime's UTC form; the receive time when absent.

    The store orders outcomes by comparing these strings, so utc_iso writes every year with four
    digits (``0999-…`` sorts before ``2026-…``). A time from a clock that was never set (1970) is
    kept as it is, not refused: the agent drops a report answered 422 for good, and the outcome
    it carries would be lost; it only ranks below every outcome with a real time."""
    value = data.get("finished")
    if value is None or value == "":  # a task the agent never timed
        return now_iso()
    if not isinstance(value, str) or len(value) > MAX_SHORT:
        raise ReportError(f"{where}finished must be an ISO 8601 time")
    try:
        when = datetime.fromisoformat(_encodable(value, f"{where}finished"))
    except ValueError:
        raise ReportError(f"{where}finished must be an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # a device without a zone reports UTC
    try:
        return utc_iso(when)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ReportError(f"{where}finished is outside the years 1 to 9999 in UTC") from None


def _installed(value: Any) -> dict[str, dict[str, str]]:
    if value is None:
        return {"modules": {}, "firmware": {}}
    data = _object(value, "installed")
    out: dict[str, dict[str, str]] = {}
    for kind in ("modules", "firmware"):
        entries = _object(data.get(kind, {}), f"installed.{kind}")
        if len(entries) > MAX_INSTALLED:
            raise ReportError(f"installed.{kind} has more than {MAX_INSTALLED} entries")
        checked: dict[str, str] = {}
        for name, version in entries.items():
            if not NAME.fullmatch(_encodable(name, f"installed.{kind}")):
                raise ReportError(f"installed.{kind} has an invalid name")
            if not isinstance(version, str) or not VERSION.fullmatch(version):
                raise ReportError(f"installed.{kind}.{name} must be a version string")
            _encodable(version, f"installed.{kind}.{name}")
            checked[name] = version
        out[kind] = checked
    return out


def _key(data: dict[str, Any], where: str) -> VersionKey:
    target = _choice(data, "target", where, TARGETS)
    name = _matching(data, "name", where, NAME, "name")
    version = _matching(data, "version", where, VERSION, "version")
    return target, name, version


def _event(value: Any, where: str) -> Event:
    data = _object(value, where[:-1])
    task_id = data.get("task_id")
    if task_id is not None and (not isinstance(task_id, int | str) or isinstance(task_id, bool)):
        raise ReportError(f"{where}task_id must be an integer")
    if isinstance(task_id, str):
        if len(task_id) > MAX_REPORT_ID:
            raise ReportError(f"{where}task_id is longer than {MAX_REPORT_ID} characters")
        _encodable(task_id, f"{where}task_id")
    kind = _choice(data, "kind", where, KINDS)
    target, name, version = _key(data, where)
    if target not in KIND_TARGETS[kind]:
        raise ReportError(f"{where}target {target} does not go with kind {kind}")
    status = _choice(data, "status", where, STATUSES)
    _string(data, "reason", where, MAX_TEXT)
    rolled_back = data.get("rolled_back", False)
    if not isinstance(rolled_back, bool):
        raise ReportError(f"{where}rolled_back must be true or false")
    return Event(kind, target, name, version, status, rolled_back, _finished(data, where))


def parse_report(data: Any) -> Report:
    """The checked report of a parsed JSON body; ReportError naming the first problem."""
    body = _object(data, "the body")
    report_id = _string(body, "report_id", "", MAX_REPORT_ID, required=True)
    if not report_id:
        raise ReportError("report_id must not be empty")
    agent_version = _string(body, "agent_version", "", MAX_SHORT)
    platform = _string(body, "platform", "", MAX_SHORT)
    if not PLATFORM.fullmatch(platform):
        raise ReportError("platform is not a valid platform name")
    offered = tuple(
        _key(_object(entry, f"offered[{i}]"), f"offered[{i}].")
        for i, entry in enumerate(_list(body.get("offered", []), "offered", MAX_OFFERED))
    )
    events = tuple(
        _event(entry, f"events[{i}].")
        for i, entry in enumerate(_list(body.get("events", []), "events", MAX_EVENTS))
    )
    return Report(report_id, agent_version, platform, _installed(body.get("installed")), offered, events)

"""The package list: what the robot's UI shows, derived from the index, the disk and the tasks.

``current_version`` is read from the disk (the ``current`` link), never from a cached field, so
after any crash the list tells the truth about what is installed.
"""

from __future__ import annotations

from typing import Any

from builder.versions import version_key
from runtime.agent.index import Package
from runtime.agent.state import FAILED, QUEUEING, Task

ACTIVE_STATUS = {
    ("download", QUEUEING): "download_queueing",
    ("download", "running"): "downloading",
    ("install", QUEUEING): "install_queueing",
    ("install", "running"): "installing",
    ("uninstall", QUEUEING): "uninstall_queueing",
    ("uninstall", "running"): "uninstalling",
}
FAILED_STATUS = {"download": "download_failed", "install": "install_failed", "uninstall": "uninstall_failed"}


def package_status(
    latest: str, current: str | None, downloaded: list[str], active: Task | None, last: Task | None
) -> str:
    if active is not None:
        return ACTIVE_STATUS[(active.kind, active.status)]
    if last is not None and last.status == FAILED:
        return FAILED_STATUS[last.kind]
    newer = [v for v in downloaded if current is None or version_key(v) > version_key(current)]
    if newer:
        return "downloaded"
    if current is None:
        return "not_installed"
    return "up_to_date" if version_key(current) >= version_key(latest) else "upgradable"


def package_view(
    name: str,
    package: Package | None,
    current: str | None,
    downloaded: list[str],
    active: Task | None,
    last: Task | None,
) -> dict[str, Any]:
    latest = package.latest_version if package else (current or "")
    view: dict[str, Any] = {
        "name": name,
        "latest_version": latest,
        "current_version": current or "",
        "status": package_status(latest, current, downloaded, active, last),
    }
    if downloaded:
        view["downloaded_versions"] = sorted(downloaded, key=version_key, reverse=True)
    if active is not None:
        if active.kind == "download":
            view["downloading_version"] = active.version
            view["downloading_progress"] = round(active.progress, 4)
            view["download_task_id"] = active.id
        elif active.kind == "install":
            view["installing_version"] = active.version
            view["installing_progress"] = round(active.progress, 4)
            view["install_task_id"] = active.id
        else:
            view["uninstall_task_id"] = active.id
    elif last is not None and last.status == FAILED:
        key = {"download": "download_task_id", "install": "install_task_id", "uninstall": "uninstall_task_id"}
        view[key[last.kind]] = last.id
        if last.kind == "install":
            view["install_failed_reason"] = last.reason or "unknown"
        else:
            view["failed_reason"] = last.reason or "unknown"
    if package is not None and package.optional is not None:
        view["optional"] = package.optional
    return view


def package_list(
    index: dict[str, Package],
    installed: dict[str, str],
    downloads: dict[str, list[str]],
    active: dict[str, Task],
    latest_tasks: dict[str, Task],
) -> list[dict[str, Any]]:
    """Every package of the index, plus installed ones the index no longer lists."""
    names = list(index) + sorted(n for n in installed if n not in index)
    return [
        package_view(
            name,
            index.get(name),
            installed.get(name),
            downloads.get(name, []),
            active.get(name),
            latest_tasks.get(name),
        )
        for name in names
    ]

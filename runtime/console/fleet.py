"""``/console/fleet`` (staff): the enrolled devices and every module and firmware version's rollout.

The devices are :func:`runtime.device.store.all_devices` (last report, agent version, platform,
what is installed); a version's rule is :func:`runtime.device.rollouts.read_rule` (its sidecars
and the devices' counts). **Pause** and **Resume** call
:func:`runtime.device.rollouts.change_rollout` with exactly the changes ``depot rollout pause``
and ``depot rollout resume`` write (every platform; actor ``console:<account>``, kept in
``device_rollout_log``), then rebuild, so the next index a device fetches says it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from builder.errors import FormatError
from builder.versions import version_key
from runtime.console.pages import forbidden, guarded, posted
from runtime.console.render import page
from runtime.console.session import ConsoleSession
from runtime.device.rollouts import TARGETS, NoSuchVersionError, change_rollout, read_rule
from runtime.device.store import FLAGS, VersionKey, all_devices
from runtime.services import services

MANUAL_REASON = "paused by hand (console)"
MAX_REASON = 300


def versions_in_repo(repo: Any) -> list[VersionKey]:
    """Every (target, name, version) with a file in repo/, by target, name and version order."""
    found: set[VersionKey] = set()
    for target, (folder, pattern) in TARGETS.items():
        try:
            entries = list((repo / folder).iterdir())
        except (FileNotFoundError, NotADirectoryError):
            continue
        for path in entries:
            match = pattern.match(path.name)
            if match and path.is_file():
                found.add((target, match["name"], match["version"]))
    return sorted(found, key=lambda k: (k[0], k[1], version_key(k[2])))


def _rollouts(request: Request) -> list[dict[str, Any]]:
    svc = services(request)
    db, repo = svc.storage.db, svc.config.repo
    out: list[dict[str, Any]] = []
    for key in versions_in_repo(repo):
        try:
            rule = read_rule(db, repo, key)
        except (NoSuchVersionError, FormatError) as exc:  # removed meanwhile, or a broken sidecar
            out.append({"key": key, "error": str(exc)})
            continue
        r = rule.rollout
        rate = rule.failure_rate
        out.append(
            {
                "key": key,
                "error": "",
                "platforms": list(rule.platforms),
                "share": f"{r.share:.0%}",
                "groups": ", ".join(r.groups) or "every device",
                "paused": r.paused or any(p.paused for p in rule.platforms.values()),
                "paused_reason": r.paused_reason,
                "max_failure_rate": "off" if r.max_failure_rate is None else f"{r.max_failure_rate:.0%}",
                "min_devices": r.min_devices,
                "counts": [(flag.replace("_", " "), rule.counts[flag]) for flag in FLAGS],
                "offered": rule.counts["offered"],
                "installed": rule.counts["installed"],
                "failure_rate": "-" if rate is None else f"{rate:.0%}",
                "staged": r.staged,
            }
        )
    return out


def _fleet(request: Request) -> dict[str, Any]:
    devices = []
    for d in all_devices(services(request).storage.db):
        installed = [f"{n} {v}" for n, v in sorted(d.installed.get("modules", {}).items())]
        installed += [f"firmware {n} {v}" for n, v in sorted(d.installed.get("firmware", {}).items())]
        devices.append(
            {
                "name": d.name,
                "groups": ", ".join(d.groups) or "-",
                "platform": d.platform or "-",
                "last_report": d.last_report or "never",
                "agent_version": d.agent_version or "-",
                "installed": installed,
            }
        )
    return {"devices": devices, "rollouts": _rollouts(request)}


@guarded("staff")
async def fleet_page(request: Request, session: ConsoleSession) -> Response:
    context = await run_in_threadpool(_fleet, request)
    q = request.query_params
    done = q.get("done", "") if q.get("done", "") in ("paused", "resumed", "unchanged") else ""
    return page(
        request,
        "fleet.html",
        session,
        title="Fleet",
        done=done,
        done_item=q.get("item", "")[:200] if done else "",
        **context,
    )


@guarded("staff")
async def rollout_action(request: Request, session: ConsoleSession) -> Response:
    form = posted(request)
    target, name, version = (str(form.get(k) or "") for k in ("target", "name", "version"))
    action = str(form.get("action") or "")
    if target not in TARGETS or action not in ("pause", "resume") or not name or not version:
        return forbidden(request, session, "That is not a rollout change.")
    if action == "pause":
        reason = " ".join(str(form.get("reason") or "").split())[:MAX_REASON] or MANUAL_REASON
        updates: dict[str, Any] = {"paused": True, "paused_reason": reason}
    else:
        updates = {"paused": None, "paused_reason": None}
    svc = services(request)
    key: VersionKey = (target, name, version)

    def change() -> dict[str, Any]:
        _rule, written = change_rollout(
            svc.storage.db,
            svc.config.repo,
            key,
            lambda rule: {p: updates for p in rule.platforms},
            f"console:{session.user.name}",
        )
        return written

    try:
        written = await run_in_threadpool(change)
    except NoSuchVersionError as exc:
        return page(request, "error.html", session, status=404, title="No such version", message=str(exc))
    except FormatError as exc:
        return page(request, "error.html", session, status=409, title="Not changed", message=str(exc))
    if written:
        await svc.rebuilder.rebuild()
    done = ("paused" if action == "pause" else "resumed") if written else "unchanged"
    query = urlencode({"done": done, "item": f"{target} {name} {version}"})
    return RedirectResponse(f"/console/fleet?{query}#rollouts", status_code=303)


ROUTES: list[BaseRoute] = [
    Route("/console/fleet", fleet_page, methods=["GET"]),
    Route("/console/fleet/rollout", rollout_action, methods=["POST"]),
]

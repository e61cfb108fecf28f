"""``/console/stats``: downloads per day of the last 31 days, per item, and shipper's totals.

Every signed-in account may open it and sees the downloads of what it answers for:

- **staff**: everything (OTA builds, Qt apps, modules, firmware, APKs);
- **a developer** (any account): the APKs of the packages it owns in the CI portal
  (``portal_apps.owner_id``);
- **a maintainer**: the OTA builds of the devices it maintains, and shipper's totals of those
  devices.

An account that is both sees both. The counts are :mod:`runtime.downloads`' (this process's
pending sums are flushed first, so a download shows at once; another process's within
:data:`runtime.downloads.FLUSH_SECONDS`); shipper's totals are its ``shipper_downloads`` rows,
counted as ``GET /api/v1/download/count/{period}/`` counts them
(:func:`runtime.shipper.endpoints.download_count`), which include what updaters reported.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from runtime import downloads
from runtime.accounts import User
from runtime.console.pages import guarded
from runtime.console.render import page
from runtime.console.session import ConsoleSession
from runtime.database import DatabaseError
from runtime.services import services
from runtime.shipper.endpoints import download_count

DAYS = 31
KIND_LABELS = {"ota": "OTA build", "qt": "Qt app", "module": "Module", "firmware": "Firmware", "apk": "APK"}
PERIODS = (("day", "Last day"), ("week", "Last 7 days"), ("month", "Last 31 days"), ("all", "All time"))
# the chart's geometry, in SVG user units (the SVG scales to its box: .chart in console.css)
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 760, 220, 44, 28, 12
SPARK_WIDTH, SPARK_HEIGHT = 124, 24


@dataclass(frozen=True)
class Scope:
    """What one account may see of the counts."""

    everything: bool
    packages: frozenset[str]  # APK packages it owns
    codenames: tuple[str, ...]  # OTA devices it maintains

    @property
    def kinds(self) -> tuple[str, ...]:
        if self.everything:
            return downloads.KINDS
        return tuple(k for k, on in (("ota", bool(self.codenames)), ("apk", bool(self.packages))) if on)

    def allows(self, kind: str, item: str) -> bool:
        if self.everything:
            return True
        if kind == "apk":
            return item.split(" ", 1)[0] in self.packages
        if kind == "ota":
            return item.split("/", 1)[0] in self.codenames
        return False


def scope_of(db: Any, user: User) -> Scope:
    if user.staff:
        return Scope(True, frozenset(), ())
    owned = db.execute("SELECT package FROM portal_apps WHERE owner_id = ?", [user.id]).fetchall()
    return Scope(False, frozenset(row[0] for row in owned), tuple(user.devices))


@dataclass(frozen=True)
class Bar:
    day: str
    count: int
    x: float
    y: float
    width: float
    height: float


def bars(days: list[str], per_day: dict[str, int], width: float, height: float, left: float = 0) -> list[Bar]:
    """One bar per day, scaled so the busiest day fills ``height``."""
    top = max([*per_day.values(), 1])
    step = (width - left) / len(days)
    out = []
    for n, day in enumerate(days):
        count = per_day.get(day, 0)
        h = round(height * count / top, 2)
        out.append(
            Bar(
                day,
                count,
                round(left + n * step + step * 0.1, 2),
                round(height - h, 2),
                round(step * 0.8, 2),
                h,
            )
        )
    return out


def chart(days: list[str], per_day: dict[str, int]) -> dict[str, Any]:
    plot = HEIGHT - BOTTOM - TOP
    drawn = bars(days, per_day, WIDTH, plot, LEFT)
    drawn = [Bar(b.day, b.count, b.x, b.y + TOP, b.width, b.height) for b in drawn]
    top = max([*per_day.values(), 0])
    ticks = [drawn[0], drawn[len(drawn) // 2], drawn[-1]]
    return {
        "bars": drawn,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "baseline": HEIGHT - BOTTOM,
        "top_y": TOP,
        "max": top,
        "ticks": [
            (ticks[0].x, ticks[0].day[5:], "start"),
            (round(ticks[1].x + ticks[1].width / 2, 2), ticks[1].day[5:], "middle"),
            (round(ticks[2].x + ticks[2].width, 2), ticks[2].day[5:], "end"),
        ],
        "label_y": HEIGHT - 8,
        "total": sum(per_day.get(d, 0) for d in days),
    }


def _collect(request: Request, session: ConsoleSession, selected: str) -> dict[str, Any]:
    svc = services(request)
    counter = downloads.counter_for(svc.storage.url)
    with contextlib.suppress(DatabaseError):  # a busy database: the page shows what is written
        counter.flush()  # this process's pending counts, so a download shows at once
    db = svc.storage.db
    scope = scope_of(db, session.user)
    days = downloads.last_days(DAYS)
    per_item = {k: v for k, v in downloads.daily(db, days[0], scope.kinds).items() if scope.allows(*k)}
    ever = {k: v for k, v in downloads.totals(db, scope.kinds).items() if scope.allows(*k)}
    rows: list[dict[str, Any]] = []
    for (kind, item), counts in per_item.items():
        rows.append(
            {
                "key": f"{kind}:{item}",
                "kind": KIND_LABELS[kind],
                "item": item,
                "today": counts.get(days[-1], 0),
                "month": sum(counts.values()),
                "all": ever.get((kind, item), 0),
                "spark": bars(days, counts, SPARK_WIDTH, SPARK_HEIGHT),
            }
        )
    rows.sort(key=lambda r: (-r["month"], r["kind"], r["item"]))
    quiet = sorted(
        (
            {"kind": KIND_LABELS[k], "item": i, "all": n}
            for (k, i), n in ever.items()
            if (k, i) not in per_item
        ),
        key=lambda r: (r["kind"], r["item"]),
    )
    chosen = next((r for r in rows if r["key"] == selected), None)
    if chosen is not None:
        shown = per_item[(selected.split(":", 1)[0], chosen["item"])]
        label = f"{chosen['kind']} {chosen['item']}"
    else:
        shown = {}
        for counts in per_item.values():
            for day, n in counts.items():
                shown[day] = shown.get(day, 0) + n
        label = "everything you may see" if not scope.everything else "every item"
    shipper = None
    if scope.everything or scope.codenames:
        codenames = None if scope.everything else list(scope.codenames)
        shipper = [(label_, download_count(db, period, codenames)) for period, label_ in PERIODS]
    return {
        "title": "Statistics",
        "days": days,
        "rows": rows,
        "quiet": quiet,
        "chart": chart(days, shown),
        "chart_label": label,
        "selected": chosen["key"] if chosen else "",
        "scope": scope,
        "kinds": [KIND_LABELS[k] for k in scope.kinds],
        "shipper": shipper,
    }


@guarded()
async def stats_page(request: Request, session: ConsoleSession) -> Response:
    selected = request.query_params.get("item", "")[:400]
    context = await run_in_threadpool(_collect, request, session, selected)
    return page(request, "stats.html", session, **context)


ROUTES: list[BaseRoute] = [Route("/console/stats", stats_page, methods=["GET"])]

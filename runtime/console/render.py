"""Console pages: jinja2 templates rendered on the server, escaped by default.

Pages work without script; ``console.js`` only enhances (a copy button, an upload's progress
bar). The Content-Security-Policy the runtime sends everywhere (builder.webpolicy) allows no
inline script or style, so templates link ``/console/static/console.css`` and ``console.js``
and nothing else; everything a page shows that came from a user or a package (names,
descriptions, findings) goes through autoescaping.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from runtime.console.session import ConsoleSession

NAV = (  # (path, label, role) in the order the menu shows them; role None: every signed-in user
    ("/console/", "Home", None),
    ("/console/review", "Review", "staff"),
    ("/console/qt", "Qt apps", "staff"),
    ("/console/users", "Users", "staff"),
    ("/console/tokens", "Tokens", "staff"),
    ("/console/apps", "My apps", None),
    ("/console/ci-tokens", "CI tokens", None),
    ("/console/ota", "OTA builds", "maintainer"),
    ("/console/stats", "Statistics", None),
    ("/console/fleet", "Fleet", "staff"),
)


def has_role(session: ConsoleSession, role: str | None) -> bool:
    """staff: the store team; maintainer: maintains at least one OTA device; None: anybody
    signed in (a developer sees the apps they uploaded through the CI portal, if any)."""
    if role is None:
        return True
    if role == "staff":
        return session.user.staff
    if role == "maintainer":
        return bool(session.user.devices) or session.user.staff
    raise ValueError(f"unknown console role {role!r}")


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("runtime.console", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def page(
    request: Request, template: str, session: ConsoleSession | None, status: int = 200, **context: Any
) -> HTMLResponse:
    """The HTML of ``template`` with the layout's context: the user, the menu they may see,
    the CSRF token for forms."""
    nav = [(path, label) for path, label, role in NAV if session is not None and has_role(session, role)]
    html = (
        environment()
        .get_template(template)
        .render(
            session=session,
            user=session.user if session else None,
            csrf=session.csrf if session else "",
            nav=nav,
            here=request.url.path,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

"""The store team's pages: the review queue, the Qt apps, the accounts and every token.

Nothing here is a second copy of a rule. A review action is :mod:`runtime.portal.review`'s
(``depot portal ...`` calls the same functions), release targets are checked by its
``parse_targets``; a Qt upload goes through the checks and the storing of ``POST /upload``
(:mod:`runtime.qt.upload`, its status strings shown as they are); accounts change through
:class:`runtime.accounts.Accounts` (``depot user ...``), tokens through
:class:`runtime.tokens.Tokens` and :func:`runtime.portal.endpoints.create_ci_token`
(``depot token ...``, ``depot ci-token create``). Publishing changes (release, withdraw, a Qt
upload or removal) rebuild the catalog with the runtime's rebuilder before the page answers.

Every page needs a staff account (:func:`runtime.console.pages.guarded`); the Qt upload is a
multipart form, so it checks the session, the role, the origin and the CSRF token itself
(:func:`qt_upload`) and streams the package under the Qt dialect's size limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from builder.atomic import TEMP_PREFIX, fsync_dir
from builder.errors import FormatError
from builder.model import PortalSettings
from builder.portal.apk import FOLDER as ANDROID_FOLDER
from builder.qt.render import ALL
from builder.sidecars import SIDECAR_SUFFIX, read_sidecar
from runtime.accounts import MIN_PASSWORD, AccountError, Accounts, User
from runtime.console import session as sessions
from runtime.console.pages import forbidden, guarded, posted, whole_number
from runtime.console.render import has_role, page
from runtime.console.session import ConsoleSession
from runtime.database import Database
from runtime.errors import ApiError, InsufficientStorageError
from runtime.portal import review
from runtime.portal.endpoints import MAX_TOKEN_DAYS, create_ci_token
from runtime.portal.store import STATUSES, open_issue_count, rows, runs_with_findings, version
from runtime.portal.validation import finish_stale_runs
from runtime.qt import upload as qt_dialect_upload
from runtime.qt.services import QtServices, qt
from runtime.services import services
from runtime.tokens import Tokens
from runtime.uploads import check_room, incoming_folder, sweep_stale

# What a redirect after a successful action says; the query names one of these, never the text.
DONE = {
    "approved": "The version is approved; release it to make it live.",
    "rejected": "The version is rejected; the developer sees the reason.",
    "released": "The version is live for the chosen targets and the catalog was rebuilt.",
    "withdrawn": "The version is withdrawn (approved again) and the catalog was rebuilt.",
    "resolved": "The finding is resolved.",
    "uploaded": "The package is stored and the catalog was rebuilt.",
    "removed": "The app variant was removed from repo/apps/ and the catalog was rebuilt.",
    "disabled": "The account is disabled: its sessions ended and its tokens stop working.",
    "enabled": "The account is enabled again.",
    "staff": "The staff flag was changed.",
    "devices": "The devices the account maintains were saved.",
    "revoked": "The token is revoked.",
}
QT_FIELDS = ("category", "vendor", "short-description", "description")  # POST /upload's names
GENERATED_PASSWORD_BYTES = 12  # 16 characters of token_urlsafe


def actor(session: ConsoleSession) -> str:
    return f"console:{session.user.name}"


def notice(request: Request) -> str:
    return DONE.get(request.query_params.get("done", ""), "")


def not_found(request: Request, session: ConsoleSession, what: str) -> Response:
    return page(request, "error.html", session, status=404, title="Not found", message=what)


def see(path: str, done: str) -> Response:
    return RedirectResponse(f"{path}?done={done}", status_code=303)


def form_values(request: Request) -> dict[str, Any]:
    """The posted fields without the CSRF token, to fill a refused form in again."""
    data = posted(request)
    return {k: v for k, v in data.items() if k != "csrf"}


# -- review -----------------------------------------------------------------------------------------


def _view(db: Database, row: dict[str, Any]) -> dict[str, Any]:
    facts = json.loads(row["facts"] or "{}")
    return {
        **row,
        "facts": facts,
        "open_issues": open_issue_count(db, row["id"]),
        "countries": json.loads(row["countries"] or "[]"),
        "contexts": json.loads(row["vehicle_contexts"] or "[]"),
    }


VERSIONS = """SELECT v.*, a.package, a.owner_id, a.signer_sha256 AS pinned_signer, u.name AS owner
              FROM portal_versions v JOIN portal_apps a ON a.id = v.app_id
              LEFT JOIN users u ON u.id = a.owner_id"""


def review_queue(db: Database, repo: Path, status: str) -> list[dict[str, Any]]:
    """The versions in ``status`` ("all": every one), oldest first, with their findings."""
    where, args = ("", []) if status == "all" else (" WHERE v.status = ?", [status])
    found = rows(db, VERSIONS + where + " ORDER BY v.created, v.rowid", args)
    out = []
    for row in found:
        if row["status"] == "draft":
            finish_stale_runs(db, repo, row["id"])  # as the API's reads do, after a restart
        view = _view(db, row)
        runs = runs_with_findings(db, row["id"])
        view["run"] = runs[-1] if runs else None
        out.append(view)
    return out


def status_counts(db: Database) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for r in rows(db, "SELECT status, count(*) AS n FROM portal_versions GROUP BY status"):
        counts[r["status"]] = r["n"]
    return counts


def known_targets(
    db: Database, repo: Path, portal: PortalSettings | None = None
) -> tuple[list[str], list[str]]:
    """The choices of the release form: the targets ``[portal] release_countries`` and
    ``release_vehicle_contexts`` list, and those the store releases to already (any version's
    targets, every published APK's sidecar). A new one is typed in beside them and checked by
    ``parse_targets`` like the CLI's."""
    countries: set[str] = set(portal.release_countries) if portal else set()
    contexts: set[str] = set(portal.release_vehicle_contexts) if portal else set()
    for r in rows(db, "SELECT countries, vehicle_contexts FROM portal_versions"):
        countries.update(json.loads(r["countries"] or "[]"))
        contexts.update(json.loads(r["vehicle_contexts"] or "[]"))
    folder = repo / ANDROID_FOLDER
    if folder.is_dir():
        for apk in folder.glob("*.apk"):
            try:
                sidecar = read_sidecar(apk, "apk")
            except (OSError, FormatError):
                continue
            countries.update(x for x in sidecar.get("countries", ()) if isinstance(x, str))
            contexts.update(x for x in sidecar.get("vehicle_contexts", ()) if isinstance(x, str))
    return sorted(countries), sorted(contexts)


@guarded("staff")
async def review_page(request: Request, session: ConsoleSession) -> Response:
    status = request.query_params.get("status", "in_review")
    if status not in (*STATUSES, "all"):
        status = "in_review"
    svc = services(request)

    def read() -> tuple[list[dict[str, Any]], dict[str, int]]:
        db = svc.storage.db
        return review_queue(db, svc.config.repo, status), status_counts(db)

    versions, counts = await run_in_threadpool(read)
    return page(
        request,
        "staff_review.html",
        session,
        title="Review",
        versions=versions,
        counts=counts,
        shown=status,
        statuses=STATUSES,
        notice=notice(request),
    )


def _version_context(
    db: Database, repo: Path, version_id: str, portal: PortalSettings | None = None
) -> dict[str, Any] | None:
    row = version(db, version_id)
    if row is None:
        return None
    finish_stale_runs(db, repo, version_id)
    row = rows(db, VERSIONS + " WHERE v.id = ?", [version_id])[0]
    countries, contexts = known_targets(db, repo, portal)
    events = rows(db, "SELECT * FROM portal_events WHERE version_id = ? ORDER BY id", [version_id])
    return {
        "v": _view(db, row),
        "runs": runs_with_findings(db, version_id),
        "events": events,
        "known_countries": sorted(set(countries) | set(json.loads(row["countries"] or "[]"))),
        "known_contexts": sorted(set(contexts) | set(json.loads(row["vehicle_contexts"] or "[]"))),
    }


async def _version_page(
    request: Request, session: ConsoleSession, version_id: str, status: int = 200, **extra: Any
) -> Response:
    svc = services(request)
    settings = svc.settings().portal
    context = await run_in_threadpool(
        lambda: _version_context(svc.storage.db, svc.config.repo, version_id, settings)
    )
    if context is None:
        return not_found(request, session, f"There is no version {version_id!r}.")
    v = context["v"]
    values: dict[str, Any] = {"error": "", "form": {}, "notice": notice(request), **extra}
    return page(
        request,
        "staff_version.html",
        session,
        status=status,
        title=f"{v['package']} {v['version_code']}",
        **context,
        **values,
    )


@guarded("staff")
async def version_page(request: Request, session: ConsoleSession) -> Response:
    return await _version_page(request, session, request.path_params["version_id"])


async def _review_action(
    request: Request,
    session: ConsoleSession,
    action: Callable[[Database], object],
    done: str,
    rebuild: bool = False,
    values: dict[str, Any] | None = None,
) -> Response:
    """Run one of runtime.portal.review's transitions; its refusal is shown on the version's
    page with the posted form filled in again, and nothing changed."""
    version_id = request.path_params["version_id"]
    svc = services(request)
    db_exists = await run_in_threadpool(lambda: version(svc.storage.db, version_id) is not None)
    if not db_exists:
        return not_found(request, session, f"There is no version {version_id!r}.")
    try:
        await run_in_threadpool(lambda: action(svc.storage.db))
    except review.ReviewError as exc:
        form = form_values(request) if values is None else values
        return await _version_page(request, session, version_id, 400, error=str(exc), form=form)
    if rebuild:
        await svc.rebuilder.rebuild()
    return see(f"/console/review/{version_id}", done)


@guarded("staff")
async def approve_action(request: Request, session: ConsoleSession) -> Response:
    version_id = request.path_params["version_id"]
    return await _review_action(
        request, session, lambda db: review.approve(db, version_id, actor(session)), "approved"
    )


@guarded("staff")
async def reject_action(request: Request, session: ConsoleSession) -> Response:
    version_id = request.path_params["version_id"]
    reason = str(posted(request).get("reason") or "")
    return await _review_action(
        request, session, lambda db: review.reject(db, version_id, reason, actor(session)), "rejected"
    )


def _targets(data: Any) -> tuple[str, str]:
    """The release form's checkboxes and typed-in extras as parse_targets' comma lists."""
    countries = [*data.getlist("country"), str(data.get("countries_other") or "")]
    contexts = [*data.getlist("context"), str(data.get("contexts_other") or "")]
    return ",".join(map(str, countries)), ",".join(map(str, contexts))


@guarded("staff")
async def release_action(request: Request, session: ConsoleSession) -> Response:
    version_id = request.path_params["version_id"]
    svc = services(request)
    data = posted(request)
    countries_text, contexts_text = _targets(data)
    values = {**form_values(request), "country": data.getlist("country"), "context": data.getlist("context")}

    def act(db: Database) -> object:
        countries, contexts = review.parse_targets(countries_text, contexts_text)
        return review.release(
            db, svc.config.repo, svc.config.data, version_id, countries, contexts, actor(session)
        )

    return await _review_action(request, session, act, "released", rebuild=True, values=values)


@guarded("staff")
async def withdraw_action(request: Request, session: ConsoleSession) -> Response:
    version_id = request.path_params["version_id"]
    repo = services(request).config.repo
    return await _review_action(
        request,
        session,
        lambda db: review.withdraw(db, repo, version_id, actor(session)),
        "withdrawn",
        rebuild=True,
    )


@guarded("staff")
async def resolve_action(request: Request, session: ConsoleSession) -> Response:
    version_id, finding_id = request.path_params["version_id"], request.path_params["finding_id"]
    db = services(request).storage.db
    belongs = await run_in_threadpool(
        lambda: bool(
            rows(
                db, "SELECT id FROM portal_findings WHERE id = ? AND version_id = ?", [finding_id, version_id]
            )
        )
    )
    if not belongs:
        return not_found(request, session, f"Version {version_id!r} has no finding {finding_id!r}.")
    return await _review_action(
        request, session, lambda db: review.resolve(db, finding_id, actor(session)), "resolved"
    )


# -- Qt apps ----------------------------------------------------------------------------------------


def qt_apps(q: QtServices) -> list[dict[str, Any]]:
    """Every variant of the Qt catalog the builder rendered (site/qt/variants.json and the
    per-architecture lists), by app id and architecture."""
    index = q.catalog.index()
    entries: dict[str, dict[str, Any]] = {}
    for arch in (ALL, *index.get("architectures", [])):
        for entry in q.catalog.entries(arch):
            entries.setdefault(entry["purchaseId"], entry)
    apps = []
    for purchase_id, variant in index.get("variants", {}).items():
        entry = entries.get(purchase_id, {})
        apps.append(
            {
                **variant,
                "purchase_id": purchase_id,
                "name": entry.get("name", variant["id"]),
                "version": entry.get("version", ""),
                "category": entry.get("category", ""),
                "vendor": entry.get("vendor", ""),
                "brief": entry.get("briefDescription", ""),
                "tags": entry.get("tags", []),
            }
        )
    return sorted(apps, key=lambda a: (a["id"], a["architecture"], a["key"]))


def _qt_page(request: Request, session: ConsoleSession, status: int = 200, **extra: Any) -> Response:
    q = qt(request)
    try:
        settings = q.settings()
        categories, vendors = [c.name for c in settings.categories], [v.name for v in settings.vendors]
        limit = settings.qt_max_upload_bytes or q.config.max_upload_bytes
        settings_error = ""
    except ApiError:
        categories, vendors, limit = [], [], q.config.max_upload_bytes
        settings_error = "repo/depot.toml cannot be used (the server log says why): uploads are refused."
    values: dict[str, Any] = {"error": "", "detail": "", "form": {}, "notice": notice(request), **extra}
    return page(
        request,
        "staff_qt.html",
        session,
        status=status,
        title="Qt apps",
        apps=qt_apps(q),
        categories=categories,
        vendors=vendors,
        limit=limit,
        settings_error=settings_error,
        **values,
    )


@guarded("staff")
async def qt_page(request: Request, session: ConsoleSession) -> Response:
    return await run_in_threadpool(_qt_page, request, session)


async def qt_upload(request: Request) -> Response:
    """A Qt package uploaded from the console: multipart, so this page does the guard's checks
    itself (session, staff, origin, then the CSRF token of the streamed form before anything is
    stored) and then hands the fields and the received file to POST /upload's own checks."""
    session = await run_in_threadpool(sessions.current, request)
    if session is None:
        return forbidden(request, None, "Sign in first.")
    if not has_role(session, "staff"):
        return forbidden(request, session, "This page is not for your account.")
    if not sessions.same_site(request):
        return forbidden(request, session, "This form was sent from another site.")
    q = qt(request)
    try:
        limit = q.settings().qt_max_upload_bytes or q.config.max_upload_bytes
    except ApiError:
        return await run_in_threadpool(_qt_page, request, session, 503)
    length = request.headers.get("content-length")
    declared = whole_number(length)
    if declared is None:
        return await run_in_threadpool(_qt_page, request, session, 411, error="a Content-Length is required")
    if declared > limit:
        error = f"package too large: the limit is {limit} bytes"
        return await run_in_threadpool(_qt_page, request, session, 413, error=error)
    try:
        check_room(q.config.data, declared)
    except InsufficientStorageError:
        error = "could not store the package: there is not enough room on the disk"
        return await run_in_threadpool(_qt_page, request, session, 507, error=error)
    incoming = incoming_folder(q.config.data, "qt")
    sweep_stale(incoming)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=incoming)
    temp = Path(temp_name)
    try:
        try:
            fields = await qt_dialect_upload.stream_fields(request, fd)  # as POST /upload reads it
        finally:
            os.close(fd)
        if fields is None:
            return await run_in_threadpool(_qt_page, request, session, 400, error="malformed form data")
        size = temp.stat().st_size if fields.get("package") is qt_dialect_upload.PACKAGE else 0
        csrf = fields.get("csrf")
        if not session.csrf_ok(csrf if isinstance(csrf, str) else None):
            return forbidden(request, session, "The form is out of date: reload the page and try again.")
        kept = {k: v if isinstance(v := fields.get(k, ""), str) else "" for k in QT_FIELDS}
        # A browser sends an empty file part when no file was chosen: that is no package.
        given: dict[str, Any] = {k: fields[k] for k in QT_FIELDS if isinstance(fields.get(k), str)}
        if size > 0:
            given["package"] = qt_dialect_upload.PACKAGE
        answer = await qt_dialect_upload.checked_upload(request, q, given, temp if size > 0 else None)
        body = json.loads(bytes(answer.body))
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    if body.get("status") == "ok":
        return see("/console/qt", "uploaded")
    return await run_in_threadpool(
        _qt_page, request, session, 400, error=body.get("status", ""), detail=body.get("error", ""), form=kept
    )


def remove_variant(repo: Path, relpath: str) -> None:
    """Take a package and its sidecar out of repo/apps/ (the package first, so the catalog never
    lists a package whose sidecar is gone), as the portal's withdraw does for an APK."""
    apps = (repo / "apps").resolve()
    target = (repo / relpath).resolve()
    if not target.is_relative_to(apps):
        raise ValueError(f"{relpath} is not in apps/")
    for path in (target, target.with_name(target.name + SIDECAR_SUFFIX)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    fsync_dir(target.parent)


@guarded("staff")
async def qt_remove(request: Request, session: ConsoleSession) -> Response:
    purchase_id = str(posted(request).get("purchase_id") or "")
    q = qt(request)
    variant = q.catalog.variant(purchase_id) if purchase_id else None
    if variant is None:
        return await run_in_threadpool(
            _qt_page, request, session, 404, error="No app variant with this purchase id (removed already?)."
        )
    try:
        await run_in_threadpool(remove_variant, q.config.repo, variant["file"])
    except (ValueError, OSError) as exc:
        return await run_in_threadpool(_qt_page, request, session, 400, error=f"Not removed: {exc}")
    await services(request).rebuilder.rebuild()
    return see("/console/qt", "removed")


# -- users ------------------------------------------------------------------------------------------


def _users_context(request: Request) -> dict[str, Any]:
    svc = services(request)
    db = svc.storage.db
    users = Accounts(db).all()
    created = {r["id"]: r["created"] for r in db.table("users").rows_where(select="id, created")}
    tokens: dict[int, int] = {}
    for t in Tokens(db).all():
        tokens[t.user_id] = tokens.get(t.user_id, 0) + 1
    try:
        devices = [d.codename for d in svc.settings().ota_devices]
    except Exception:  # a broken depot.toml: the accounts' own devices are still shown
        devices = []
    return {"users": users, "created": created, "token_counts": tokens, "ota_devices": devices}


def _users_page(request: Request, session: ConsoleSession, status: int = 200, **extra: Any) -> Response:
    values: dict[str, Any] = {
        "error": "",
        "notice": notice(request),
        "form": {},
        "password_for": None,
        "password": "",
        "error_for": None,
        **extra,
    }
    return page(
        request,
        "staff_users.html",
        session,
        status=status,
        title="Users",
        min_password=MIN_PASSWORD,
        **_users_context(request),
        **values,
    )


@guarded("staff")
async def users_page(request: Request, session: ConsoleSession) -> Response:
    return await run_in_threadpool(_users_page, request, session)


def _password(data: Any) -> tuple[str, bool]:
    """The typed password, or a generated one (shown once) when the field is empty."""
    typed = str(data.get("password") or "")
    return (typed, False) if typed else (secrets.token_urlsafe(GENERATED_PASSWORD_BYTES), True)


@guarded("staff")
async def user_create(request: Request, session: ConsoleSession) -> Response:
    data = posted(request)
    name = str(data.get("name") or "").strip()
    password, generated = _password(data)
    devices = [str(d) for d in data.getlist("device")]
    db = services(request).storage.db
    try:
        user = await run_in_threadpool(
            lambda: Accounts(db).create(name, password, staff=data.get("staff") == "1", devices=devices)
        )
    except AccountError as exc:
        values = {k: v for k, v in form_values(request).items() if k != "password"}
        return await run_in_threadpool(
            _users_page,
            request,
            session,
            400,
            error=f"Not created: {exc}.",
            form={**values, "device": devices},
        )
    return await run_in_threadpool(
        _users_page,
        request,
        session,
        notice=f"Account {user.name} created.",
        password_for=user.name if generated else None,
        password=password if generated else "",
    )


async def _user_action(
    request: Request, session: ConsoleSession, change: Callable[[Accounts, User], object], done: str
) -> Response:
    db = services(request).storage.db
    user_id = whole_number(request.path_params["user_id"])
    if user_id is None:
        user_id = -1
    user = await run_in_threadpool(Accounts(db).by_id, user_id)
    if user is None:
        return not_found(request, session, "There is no such account.")
    try:
        await run_in_threadpool(change, Accounts(db), user)
    except AccountError as exc:
        return await run_in_threadpool(
            _users_page, request, session, 400, error=f"{user.name}: {exc}.", error_for=user.id
        )
    return see("/console/users", done)


def _not_yourself(session: ConsoleSession, user: User, what: str) -> None:
    if user.id == session.user.id:
        raise AccountError(f"you cannot {what} your own account (another staff member can)")


@guarded("staff")
async def user_disable(request: Request, session: ConsoleSession) -> Response:
    def change(accounts: Accounts, user: User) -> None:
        _not_yourself(session, user, "disable")
        accounts.set_disabled(user.id, True)

    return await _user_action(request, session, change, "disabled")


@guarded("staff")
async def user_enable(request: Request, session: ConsoleSession) -> Response:
    return await _user_action(request, session, lambda a, u: a.set_disabled(u.id, False), "enabled")


@guarded("staff")
async def user_staff(request: Request, session: ConsoleSession) -> Response:
    staff = posted(request).get("staff") == "1"

    def change(accounts: Accounts, user: User) -> None:
        if not staff:
            _not_yourself(session, user, "take the staff flag off")
        accounts.set_staff(user.id, staff)

    return await _user_action(request, session, change, "staff")


@guarded("staff")
async def user_devices(request: Request, session: ConsoleSession) -> Response:
    devices = [str(d) for d in posted(request).getlist("device")]
    return await _user_action(request, session, lambda a, u: a.set_devices(u.id, devices), "devices")


@guarded("staff")
async def user_password(request: Request, session: ConsoleSession) -> Response:
    password, generated = _password(posted(request))
    db = services(request).storage.db
    user_id = whole_number(request.path_params["user_id"])
    if user_id is None:
        user_id = -1
    user = await run_in_threadpool(Accounts(db).by_id, user_id)
    if user is None:
        return not_found(request, session, "There is no such account.")
    try:
        await run_in_threadpool(Accounts(db).set_password, user.id, password)
    except AccountError as exc:
        return await run_in_threadpool(
            _users_page, request, session, 400, error=f"{user.name}: {exc}.", error_for=user.id
        )
    if user.id == session.user.id:  # a new password ends every console session, this one too
        return RedirectResponse("/console/login", status_code=303)
    return await run_in_threadpool(
        _users_page,
        request,
        session,
        notice=f"The password of {user.name} was reset; its sessions ended.",
        password_for=user.name if generated else None,
        password=password if generated else "",
    )


# -- tokens -----------------------------------------------------------------------------------------


def _tokens_page(request: Request, session: ConsoleSession, status: int = 200, **extra: Any) -> Response:
    db = services(request).storage.db
    accounts = Accounts(db).all()
    names = {u.id: u.name for u in accounts}
    purpose = request.query_params.get("purpose") or None
    owner = request.query_params.get("user") or None
    owner_id = next((u.id for u in accounts if u.name == owner), -1) if owner else None
    everything = Tokens(db).all()
    tokens = [
        t
        for t in everything
        if (purpose is None or t.purpose == purpose) and (owner_id is None or t.user_id == owner_id)
    ]
    values: dict[str, Any] = {
        "error": "",
        "notice": notice(request),
        "form": {},
        "created": None,
        "secret": "",
        **extra,
    }
    return page(
        request,
        "staff_tokens.html",
        session,
        status=status,
        title="Tokens",
        tokens=tokens,
        names=names,
        accounts=accounts,
        purposes=sorted({t.purpose for t in everything}),
        purpose=purpose or "",
        owner=owner or "",
        max_days=MAX_TOKEN_DAYS,
        **values,
    )


@guarded("staff")
async def tokens_page(request: Request, session: ConsoleSession) -> Response:
    return await run_in_threadpool(_tokens_page, request, session)


@guarded("staff")
async def token_create(request: Request, session: ConsoleSession) -> Response:
    """A CI token for any account, by the API's and ``depot ci-token create``'s rules."""
    data = posted(request)
    values = form_values(request)
    owner_name = str(data.get("user") or "")
    name = str(data.get("name") or "")
    app = str(data.get("app") or "").strip() or None
    days_text = str(data.get("expires_days") or "").strip()
    db = services(request).storage.db

    def refuse(message: str) -> Any:
        return run_in_threadpool(_tokens_page, request, session, 400, error=message, form=values)

    owner = await run_in_threadpool(Accounts(db).get, owner_name)
    if owner is None:
        return await refuse("Not created: choose the account the token acts for.")
    days = whole_number(days_text) if days_text else None
    if days_text and days is None:
        return await refuse("Not created: the expiry must be a whole number of days.")
    try:
        token, raw = await run_in_threadpool(create_ci_token, db, owner, name, app, days)
    except ValueError as exc:
        return await refuse(f"Not created: {exc}.")
    return await run_in_threadpool(_tokens_page, request, session, created=token, secret=raw)


@guarded("staff")
async def token_revoke(request: Request, session: ConsoleSession) -> Response:
    token_id = whole_number(request.path_params["token_id"])
    if token_id is None:
        return not_found(request, session, "There is no such token.")
    storage = services(request).storage
    revoked = await run_in_threadpool(lambda: Tokens(storage.db).revoke(token_id))
    if not revoked:
        return not_found(request, session, f"There is no live token {token_id}.")
    if token_id == session.token_id:  # this very session: it has ended
        return RedirectResponse("/console/login", status_code=303)
    return see("/console/tokens", "revoked")


ROUTES: list[BaseRoute] = [
    Route("/console/review", review_page, methods=["GET"]),
    Route("/console/review/{version_id}", version_page, methods=["GET"]),
    Route("/console/review/{version_id}/approve", approve_action, methods=["POST"]),
    Route("/console/review/{version_id}/reject", reject_action, methods=["POST"]),
    Route("/console/review/{version_id}/release", release_action, methods=["POST"]),
    Route("/console/review/{version_id}/withdraw", withdraw_action, methods=["POST"]),
    Route("/console/review/{version_id}/findings/{finding_id}/resolve", resolve_action, methods=["POST"]),
    Route("/console/qt", qt_page, methods=["GET"]),
    Route("/console/qt/upload", qt_upload, methods=["POST"]),
    Route("/console/qt/remove", qt_remove, methods=["POST"]),
    Route("/console/users", users_page, methods=["GET"]),
    Route("/console/users", user_create, methods=["POST"]),
    Route("/console/users/{user_id}/disable", user_disable, methods=["POST"]),
    Route("/console/users/{user_id}/enable", user_enable, methods=["POST"]),
    Route("/console/users/{user_id}/staff", user_staff, methods=["POST"]),
    Route("/console/users/{user_id}/devices", user_devices, methods=["POST"]),
    Route("/console/users/{user_id}/password", user_password, methods=["POST"]),
    Route("/console/tokens", tokens_page, methods=["GET"]),
    Route("/console/tokens", token_create, methods=["POST"]),
    Route("/console/tokens/{token_id}/revoke", token_revoke, methods=["POST"]),
]

"""The Qt dialect's session: what /hello said (tags, architecture) and who logged in.

The session travels in an itsdangerous-signed cookie, so any runtime process behind a load
balancer can read it. A login is only a random session id in that cookie whose SHA-256 is a row
in the database: /logout deletes the row, so a copy of the old cookie is logged out as well.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from runtime.accounts import Accounts, User, on_password_change
from runtime.database import Database
from runtime.signing import LinkError, Signer
from runtime.storage import Storage, register_schema

COOKIE = "depot_qt_session"
MAX_AGE = 30 * 24 * 3600


def _qt_v1(db: Database) -> None:
    db.table("qt_sessions").create(
        {"sid_hash": str, "user_id": int, "created": str},
        pk="sid_hash",
        foreign_keys=[("user_id", "users", "id")],
    )


register_schema("qt", [_qt_v1])


@dataclass
class QtSession:
    tag: str | None = None  # normalised tag list after a /hello ("" = no tags); None = no hello yet
    arch: str | None = None  # normalised architecture after a /hello ("" = none)
    sid: str | None = None  # login: random id whose hash is in qt_sessions
    _original: dict = field(default_factory=dict, repr=False, compare=False)

    def to_payload(self) -> dict:
        data = asdict(self)
        data.pop("_original")
        return data

    @property
    def changed(self) -> bool:
        return self.to_payload() != self._original


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


@on_password_change
def end_user_sessions(db: Database, user_id: int) -> None:
    """Log the user out of every Qt session (after a password change); a database whose Qt
    tables were never created has none."""
    if db.table("qt_sessions").exists():
        db.table("qt_sessions").delete_where("user_id = ?", [user_id])


class Sessions:
    def __init__(self, secret_key: str, storage: Storage) -> None:
        self._signer = Signer(secret_key, "qt-session")
        self.storage = storage

    @property
    def db(self) -> Database:
        return self.storage.db  # one connection per thread

    def load(self, request: Request) -> QtSession:
        raw = request.cookies.get(COOKIE)
        data: dict = {}
        if raw:
            try:
                loaded = self._signer.unsign(raw, max_age=MAX_AGE)
                data = loaded if isinstance(loaded, dict) else {}
            except LinkError:
                data = {}
        session = QtSession(
            tag=data.get("tag") if isinstance(data.get("tag"), str) else None,
            arch=data.get("arch") if isinstance(data.get("arch"), str) else None,
            sid=data.get("sid") if isinstance(data.get("sid"), str) else None,
        )
        session._original = session.to_payload()
        return session

    def save(self, session: QtSession, response: Response) -> Response:
        if session.changed:
            response.set_cookie(
                COOKIE,
                self._signer.sign(session.to_payload()),
                max_age=MAX_AGE,
                httponly=True,
                samesite="lax",
            )
        return response

    def user(self, session: QtSession) -> User | None:
        if not session.sid:
            return None
        rows = list(self.db.table("qt_sessions").rows_where("sid_hash = ?", [_hash(session.sid)], limit=1))
        return Accounts(self.db).by_id(rows[0]["user_id"]) if rows else None

    def login(self, session: QtSession, user: User) -> None:
        previous = self.user(session)
        if previous is not None and previous.id != user.id:
            session.tag = session.arch = None  # another user's session: start afresh, like Django
        self.logout(session)
        sid = secrets.token_urlsafe(32)
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.db.table("qt_sessions").insert({"sid_hash": _hash(sid), "user_id": user.id, "created": created})
        session.sid = sid

    def logout(self, session: QtSession) -> bool:
        """Forget the login; False when there was none."""
        if not session.sid:
            return False
        known = self.user(session) is not None
        self.db.table("qt_sessions").delete_where("sid_hash = ?", [_hash(session.sid)])
        session.sid = None
        return known

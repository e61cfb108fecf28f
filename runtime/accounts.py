"""Accounts: names, slow password hashes, staff flag, the OTA devices a user maintains, and
whether the account is disabled (it cannot sign in, and none of its tokens or sessions work)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from runtime.clock import now_iso
from runtime.database import Database
from runtime.passwords import DUMMY_HASH, hash_password, verify_password

MAX_LOOKUP = 256  # longer than any name NAME admits, or the internal "@devices"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    id: int
    name: str
    staff: bool
    devices: tuple[str, ...]
    full_name: str = ""
    disabled: bool = False


SessionEnder = Callable[[Database, int], None]
SESSION_ENDERS: list[SessionEnder] = []


def on_password_change(end: SessionEnder) -> SessionEnder:
    """Register how a dialect ends a user's interactive sessions when the password changes
    (and when the account is disabled).

    Dialects register at import time, like their schemas (``runtime.dialects`` imports them), so
    accounts know no dialect and a new one is one call in its own module."""
    SESSION_ENDERS.append(end)
    return end


def _user(row: dict) -> User:
    devices = tuple(json.loads(row["devices"] or "[]"))
    return User(
        row["id"],
        row["name"],
        bool(row["staff"]),
        devices,
        row.get("full_name") or "",
        bool(row.get("disabled")),
    )


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        name: str,
        password: str,
        staff: bool = False,
        devices: list[str] | None = None,
        full_name: str | None = None,
    ) -> User:
        """Create the account, or update an existing one's password, flag and devices (and full
        name, when given); an update ends the user's interactive sessions (portal and Qt), so a
        stolen cookie dies with the old password. API tokens (CI, OTA) stay: they are revoked
        one by one."""
        if not NAME.match(name):
            raise AccountError(
                f"invalid user name {name!r}: letters, digits and _ . @ - only, at most 64 characters"
            )
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
        row = {
            "name": name,
            "password_hash": hash_password(password),
            "staff": int(staff),
            "devices": json.dumps(sorted(set(devices or []))),
        }
        if full_name is not None:
            row["full_name"] = full_name.strip()[:150]
        existing = self.get(name)
        if existing:
            self.db.table("users").update(existing.id, row)
            self._end_sessions(existing.id)
        else:
            self.db.table("users").insert({**row, "created": now_iso()})
        user = self.get(name)
        assert user is not None
        return user

    def _end_sessions(self, user_id: int) -> None:
        for end in SESSION_ENDERS:
            end(self.db, user_id)

    def _rows(self, name: str) -> list[dict]:
        """The account named ``name``: a name no account can have (a NUL, 6 kB of text) is no
        account, without asking the database, so both engines answer it alike."""
        if "\x00" in name or len(name) > MAX_LOOKUP:
            return []
        return self.db.table("users").rows_where("name = ?", [name], limit=1)

    def get(self, name: str) -> User | None:
        rows = self._rows(name)
        return _user(rows[0]) if rows else None

    def by_id(self, user_id: int) -> User | None:
        rows = list(self.db.table("users").rows_where("id = ?", [user_id], limit=1))
        return _user(rows[0]) if rows else None

    def authenticate(self, name: str, password: str) -> User | None:
        rows = self._rows(name)
        if not rows:
            verify_password(password, DUMMY_HASH)
            return None
        if not verify_password(password, rows[0]["password_hash"]):
            return None
        user = _user(rows[0])
        return None if user.disabled else user  # the password is checked all the same: same timing

    def all(self) -> list[User]:
        return [_user(r) for r in self.db.table("users").rows_where(order_by="name")]

    def create(self, name: str, password: str, staff: bool = False, devices: list[str] | None = None) -> User:
        """A new account; refused when the name is taken (:meth:`add` would update that one)."""
        if self.get(name) is not None:
            raise AccountError(f"a user {name!r} exists already")
        return self.add(name, password, staff=staff, devices=devices)

    def _changed(self, user_id: int, row: dict[str, object]) -> User:
        if self.by_id(user_id) is None:
            raise AccountError(f"no user with id {user_id}")
        self.db.table("users").update(user_id, row)
        user = self.by_id(user_id)
        assert user is not None
        return user

    def set_password(self, user_id: int, password: str) -> User:
        """A new password; ends the user's interactive sessions, as :meth:`add` does."""
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
        user = self._changed(user_id, {"password_hash": hash_password(password)})
        self._end_sessions(user_id)
        return user

    def set_staff(self, user_id: int, staff: bool) -> User:
        return self._changed(user_id, {"staff": int(staff)})

    def set_devices(self, user_id: int, devices: list[str]) -> User:
        return self._changed(user_id, {"devices": json.dumps(sorted(set(devices)))})

    def set_disabled(self, user_id: int, disabled: bool) -> User:
        """Disable an account: it cannot sign in, its interactive sessions end now and its API
        tokens (runtime.tokens) stop working while it stays disabled; enabling it again brings
        the tokens back (sessions are gone: the user signs in again)."""
        user = self._changed(user_id, {"disabled": int(disabled)})
        if disabled:
            self._end_sessions(user_id)
        return user

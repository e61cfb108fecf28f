"""Accounts: names, slow password hashes, staff flag, the OTA devices a user maintains."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from runtime.clock import now_iso
from runtime.passwords import DUMMY_HASH, hash_password, verify_password

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


SessionEnder = Callable[[sqlite_utils.Database, int], None]
SESSION_ENDERS: list[SessionEnder] = []


def on_password_change(end: SessionEnder) -> SessionEnder:
    """Register how a dialect ends a user's interactive sessions when the password changes.

    Dialects register at import time, like their schemas (``runtime.dialects`` imports them), so
    accounts know no dialect and a new one is one call in its own module."""
    SESSION_ENDERS.append(end)
    return end


def _user(row: dict) -> User:
    devices = tuple(json.loads(row["devices"] or "[]"))
    return User(row["id"], row["name"], bool(row["staff"]), devices, row.get("full_name") or "")


class Accounts:
    def __init__(self, db: sqlite_utils.Database) -> None:
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

    def get(self, name: str) -> User | None:
        rows = list(self.db.table("users").rows_where("name = ?", [name], limit=1))
        return _user(rows[0]) if rows else None

    def by_id(self, user_id: int) -> User | None:
        rows = list(self.db.table("users").rows_where("id = ?", [user_id], limit=1))
        return _user(rows[0]) if rows else None

    def authenticate(self, name: str, password: str) -> User | None:
        rows = list(self.db.table("users").rows_where("name = ?", [name], limit=1))
        if not rows:
            verify_password(password, DUMMY_HASH)
            return None
        return _user(rows[0]) if verify_password(password, rows[0]["password_hash"]) else None

    def all(self) -> list[User]:
        return [_user(r) for r in self.db.table("users").rows_where(order_by="name")]

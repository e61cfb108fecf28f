"""API tokens: random, shown once, stored only as SHA-256, checked in constant time.

Every token carries a recognisable prefix (``depot_ota_``, ``depot_ci_``...) so secret scanners
can spot a leaked one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlite_utils

from runtime.clock import now_iso

SHOWN_PREFIX_CHARS = 14


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    id: int
    user_id: int
    purpose: str
    name: str
    prefix: str
    scope: str
    created: str
    expires: str | None
    last_used: str | None


class Tokens:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def create(
        self,
        user_id: int,
        purpose: str,
        name: str = "",
        scope: str = "",
        expires_in: timedelta | None = None,
    ) -> tuple[Token, str]:
        """Create a token; returns it and the raw secret, which is not kept anywhere."""
        raw = f"depot_{purpose}_{secrets.token_urlsafe(32)}"
        expires = (datetime.now(UTC) + expires_in).strftime("%Y-%m-%dT%H:%M:%SZ") if expires_in else None
        row_id = (
            self.db.table("tokens")
            .insert(
                {
                    "user_id": user_id,
                    "purpose": purpose,
                    "name": name,
                    "prefix": raw[:SHOWN_PREFIX_CHARS],
                    "token_hash": token_hash(raw),
                    "scope": scope,
                    "created": now_iso(),
                    "expires": expires,
                    "last_used": None,
                    "revoked": 0,
                }
            )
            .last_pk
        )
        token = self.get(int(row_id)) if row_id is not None else None
        assert token is not None
        return token, raw

    def get(self, token_id: int) -> Token | None:
        rows = list(self.db.table("tokens").rows_where("id = ? and revoked = 0", [token_id], limit=1))
        return _token(rows[0]) if rows else None

    def verify(self, raw: str, purpose: str) -> Token | None:
        """The live token for ``raw``, or None when unknown, revoked, expired or of another purpose."""
        # Candidates are found by the shown prefix, then the hashes compared in constant time,
        # so how long a refusal takes says nothing about how much of a guess was right.
        wanted = token_hash(raw)
        candidates = self.db.table("tokens").rows_where("prefix = ?", [raw[:SHOWN_PREFIX_CHARS]])
        row = next((r for r in candidates if hmac.compare_digest(r["token_hash"], wanted)), None)
        if row is None:
            return None
        if row["revoked"] or row["purpose"] != purpose:
            return None
        if row["expires"] and row["expires"] <= now_iso():
            return None
        self.db.table("tokens").update(row["id"], {"last_used": now_iso()})
        return _token(row)

    def list(self, user_id: int, purpose: str) -> list[Token]:
        return [
            _token(r)
            for r in self.db.table("tokens").rows_where(
                "user_id = ? and purpose = ? and revoked = 0", [user_id, purpose], order_by="id"
            )
        ]

    def revoke_all(self, user_id: int, purpose: str) -> int:
        """Revoke every live token of one purpose of a user (a password change ends sessions)."""
        cursor = self.db.execute(
            "update tokens set revoked = 1 where user_id = ? and purpose = ? and revoked = 0",
            [user_id, purpose],
        )
        return cursor.rowcount

    def revoke(self, token_id: int, user_id: int | None = None) -> bool:
        where, args = "id = ? and revoked = 0", [token_id]
        if user_id is not None:
            where, args = where + " and user_id = ?", [*args, user_id]
        cursor = self.db.execute(f"update tokens set revoked = 1 where {where}", args)
        return cursor.rowcount > 0


def _token(row: dict) -> Token:
    return Token(
        row["id"],
        row["user_id"],
        row["purpose"],
        row["name"],
        row["prefix"],
        row["scope"],
        row["created"],
        row["expires"],
        row["last_used"],
    )

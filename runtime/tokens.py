"""API tokens: random, shown once, stored only as SHA-256, checked in constant time.

Every token carries a recognisable prefix (``depot_ota_``, ``depot_ci_``...) so secret scanners
can spot a leaked one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from runtime.clock import iso_in, now_iso
from runtime.database import Database

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
    def __init__(self, db: Database) -> None:
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
        expires = iso_in(expires_in) if expires_in else None
        row_id = self.db.table("tokens").insert(
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
            },
            returning="id",
        )
        token = self.get(int(row_id)) if row_id is not None else None
        assert token is not None
        if purpose.endswith("session"):  # logins leave one row each: forget the ended ones
            self.delete_expired(purpose)
        return token, raw

    def get(self, token_id: int) -> Token | None:
        rows = list(self.db.table("tokens").rows_where("id = ? and revoked = 0", [token_id], limit=1))
        return _token(rows[0]) if rows else None

    def verify(self, raw: str, purpose: str, renew: timedelta | None = None) -> Token | None:
        """The live token for ``raw``, or None when unknown, revoked, expired or of another
        purpose. With ``renew``, a use moves the expiry to ``renew`` from now (a sliding expiry:
        a token in use lives on, a forgotten one ends)."""
        # Looked up by the unique index on the SHA-256 of the whole token: one index probe
        # whatever the table holds (every token of a purpose shares its shown prefix, so a lookup
        # by prefix grew with the number of old sessions). Hashes of guesses are unrelated to the
        # stored ones, so the probe's timing says nothing about how close a guess was; the final
        # comparison is constant-time all the same.
        wanted = token_hash(raw)
        rows = list(self.db.table("tokens").rows_where("token_hash = ?", [wanted], limit=1))
        row = rows[0] if rows and hmac.compare_digest(rows[0]["token_hash"], wanted) else None
        if row is None:
            return None
        if row["revoked"] or row["purpose"] != purpose or self.owner_disabled(row["user_id"]):
            return None
        now = now_iso()
        if row["expires"] and row["expires"] <= now:
            return None
        changes: dict[str, str] = {"last_used": now}
        if renew is not None:
            changes["expires"] = iso_in(renew)
        self.db.table("tokens").update(row["id"], changes)
        return _token({**row, **changes})

    def owner_disabled(self, user_id: int) -> bool:
        """The token's account is disabled (runtime.accounts): none of its tokens work then."""
        row = self.db.execute("SELECT disabled FROM users WHERE id = ?", [user_id]).fetchone()
        return bool(row and row[0])

    def all(self, user_id: int | None = None, purpose: str | None = None) -> list[Token]:
        """Every live token (of one user, of one purpose), for listings; secrets never included."""
        where: list[str] = ["revoked = 0"]
        args: list[object] = []
        if user_id is not None:
            where, args = [*where, "user_id = ?"], [*args, user_id]
        if purpose is not None:
            where, args = [*where, "purpose = ?"], [*args, purpose]
        rows = self.db.table("tokens").rows_where(" and ".join(where), args, order_by="id")
        return [_token(r) for r in rows]

    def delete_expired(self, purpose: str) -> int:
        """Forget expired and revoked tokens of a purpose whose rows serve no listing (sessions)."""
        gone = "revoked = 1 or (expires is not null and expires <= ?)"
        cursor = self.db.execute(f"delete from tokens where purpose = ? and ({gone})", [purpose, now_iso()])
        return cursor.rowcount

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

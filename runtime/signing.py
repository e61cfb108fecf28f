"""Signed, expiring tokens for download URLs and session cookies (itsdangerous).

Each use has its own salt, so a token minted for one purpose (a Qt purchase, a session) is
refused by every other.
"""

from __future__ import annotations

import time
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


class LinkError(Exception):
    """A signed token that cannot be honoured; ``reason`` is "expired" or "invalid"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Signer:
    def __init__(self, secret_key: str, purpose: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=f"depot:{purpose}")

    def sign(self, payload: Any) -> str:
        return self._serializer.dumps(payload)

    def unsign(self, token: str, max_age: int | None) -> Any:
        """The payload, or LinkError. ``max_age`` None means the token never expires."""
        try:
            return self._serializer.loads(token, max_age=max_age)
        except SignatureExpired as exc:
            raise LinkError("expired") from exc
        except BadSignature as exc:
            raise LinkError("invalid") from exc


class ExpiringLinks:
    """URLs that carry their own expiry time, signed: ``{payload, exp}``.

    The expiry is inside the signed data (not only checked against the signing time), so every
    link knows its own lifetime and a verifier needs no configuration to refuse an old one."""

    def __init__(self, secret_key: str, purpose: str) -> None:
        self._signer = Signer(secret_key, purpose)

    def make(self, payload: dict[str, Any], expires_in: float, now: float | None = None) -> str:
        exp = int((now if now is not None else time.time()) + expires_in)
        return self._signer.sign({"p": payload, "exp": exp})

    def open(self, token: str, now: float | None = None) -> dict[str, Any]:
        data = self._signer.unsign(token, max_age=None)
        if not isinstance(data, dict) or "exp" not in data or "p" not in data:
            raise LinkError("invalid")
        if (now if now is not None else time.time()) >= data["exp"]:
            raise LinkError("expired")
        return data["p"]

"""API tokens: looked up by the hash of the whole token, sessions forgotten once ended, sliding
expiry, and `depot token list/revoke` for every kind."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from runtime.accounts import Accounts
from runtime.clock import iso_in
from runtime.dialects import load_dialects
from runtime.storage import open_database
from runtime.tokens import Tokens, token_hash
from tests.support.serving import depot_command


def _db(tmp_path: Path):
    load_dialects()
    return open_database(tmp_path)


@pytest.mark.sqlite_only  # the SQLite file itself
def test_a_lookup_costs_the_same_with_many_old_sessions(tmp_path: Path) -> None:
    """Every session token starts with the same shown prefix: a lookup by prefix walked all of
    them. Counted in SQLite VM steps, not seconds, so the test is deterministic."""
    db = _db(tmp_path)
    user = Accounts(db).add("alice", "alice-password")
    tokens = Tokens(db)
    _token, raw = tokens.create(user.id, "portal_session", expires_in=timedelta(hours=1))
    rows = [
        {"user_id": user.id, "purpose": "portal_session", "name": "", "prefix": raw[:14],
         "token_hash": f"{i:064x}", "scope": "", "created": "2026-01-01T00:00:00Z",
         "expires": iso_in(timedelta(hours=1)), "last_used": None, "revoked": 0}
        for i in range(5000)
    ]  # fmt: skip
    db.table("tokens").insert_all(rows)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db.conn.set_progress_handler(count, 100)
    try:
        assert tokens.verify(raw[:14] + "garbage-garbage-garbage", "portal_session") is None
        assert tokens.verify(raw, "portal_session") is not None
    finally:
        db.conn.set_progress_handler(None, 100)
    assert steps[0] < 50  # a prefix scan over 5,000 rows takes thousands of hundred-step ticks


def test_ended_sessions_are_forgotten_and_use_renews_a_sliding_expiry(tmp_path: Path) -> None:
    db = _db(tmp_path)
    user = Accounts(db).add("bob", "bob-password")
    tokens = Tokens(db)
    _old, old_raw = tokens.create(user.id, "portal_session", expires_in=timedelta(seconds=-1))
    tokens.create(user.id, "portal_session", expires_in=timedelta(hours=1))
    gone = db.execute("select count(*) from tokens where token_hash = ?", [token_hash(old_raw)]).fetchone()
    assert gone[0] == 0
    ota, raw = tokens.create(user.id, "ota", expires_in=timedelta(days=1))
    used = tokens.verify(raw, "ota", renew=timedelta(days=90))
    assert used is not None and ota.expires is not None and used.expires is not None
    assert used.expires > ota.expires


def test_depot_token_list_and_revoke_every_kind(tmp_path: Path) -> None:
    db = _db(tmp_path)
    user = Accounts(db).add("carol", "carol-password")
    tokens = Tokens(db)
    ota, raw = tokens.create(user.id, "ota", name="shippy login", expires_in=timedelta(days=90))
    ci, _ = tokens.create(user.id, "ci", name="pipeline", scope="com.example")
    listed = subprocess.run(
        depot_command("token", "list", "--data", str(tmp_path)), capture_output=True, text=True, check=True
    ).stdout
    assert f"{ota.id}\tota\tcarol\t{ota.prefix}..." in listed and f"{ci.id}\tci\tcarol" in listed
    assert raw not in listed  # a listing never shows a secret
    only_ci = subprocess.run(
        depot_command("token", "list", "--purpose", "ci", "--data", str(tmp_path)),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "\tota\t" not in only_ci
    revoked = subprocess.run(
        depot_command("token", "revoke", str(ota.id), "--data", str(tmp_path)), capture_output=True, text=True
    )
    assert revoked.returncode == 0, revoked.stderr
    assert Tokens(open_database(tmp_path)).verify(raw, "ota") is None
    again = subprocess.run(
        depot_command("token", "revoke", str(ota.id), "--data", str(tmp_path)), capture_output=True, text=True
    )
    assert again.returncode == 1 and "no live token" in again.stderr

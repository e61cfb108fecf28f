"""shippy login tokens end: they expire after DEPOT_OTA_TOKEN_DAYS without use (renewed by use),
a password change ends them, and `depot token revoke` ends one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.database import store_database
from tests.support.serving import depot_command
from tests.support.shipper import PASSWORD, USER, login, shipper_store

CHECK = "/api/v1/maintainers/token_check/"


def _expiry(data: Path) -> str:
    with store_database(data) as db:
        return db.execute("select expires from tokens where purpose = 'ota' order by id desc").fetchone()[0]


def test_ota_tokens_expire_renew_and_end_with_the_password(tmp_path: Path) -> None:
    with shipper_store(tmp_path) as store, store.client() as client:
        auth = login(client)
        first = _expiry(store.data)
        assert first and first.startswith(("20", "21"))  # an expiry is set, 90 days out by default
        with store_database(store.data) as db:  # pretend it was issued long ago
            db.execute("update tokens set expires = '2026-01-01T00:00:00Z' where purpose = 'ota'")
        assert client.get(CHECK, headers=auth).status_code == 401  # expired: refused

        auth = login(client)
        with store_database(store.data) as db:
            db.execute("update tokens set expires = '2099-01-01T00:00:00Z' where purpose = 'ota'")
        assert client.get(CHECK, headers=auth).status_code == 200
        assert _expiry(store.data) < "2099-01-01T00:00:00Z"  # a use moved it to 90 days from now

        changed = subprocess.run(
            depot_command("user", "add", USER, "--password-stdin", "--devices", "bullhead",
                          "--data", str(store.data)),
            input="a-new-password\n", capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert changed.returncode == 0, changed.stderr
        answer = client.get(CHECK, headers=auth)
        assert answer.status_code == 401 and answer.json() == {"detail": "Invalid token."}

        auth = login(client, USER, "a-new-password")
        assert client.get(CHECK, headers=auth).status_code == 200
        listed = subprocess.run(
            depot_command("token", "list", "--purpose", "ota", "--data", str(store.data)),
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        token_id = listed.split("\t", 1)[0]
        subprocess.run(depot_command("token", "revoke", token_id, "--data", str(store.data)), check=True)
        assert client.get(CHECK, headers=auth).status_code == 401
        assert PASSWORD != "a-new-password"

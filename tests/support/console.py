"""A store for the console's tests: the demo repo built, accounts of each role, the app in
Starlette's TestClient (for shapes and refusals) or a real `depot serve` (for the browser)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.testclient import TestClient

from builder.build import build
from runtime.accounts import Accounts
from runtime.app import create_app
from runtime.config import Limits, RuntimeConfig
from runtime.dialects import load_dialects
from runtime.storage import open_database
from tests.support.serving import copy_demo_repo

PASSWORD = "console-password-1"
ACCOUNTS = {  # name → (staff, OTA devices maintained)
    "staff": (True, ()),
    "dev": (False, ()),
    "maint": (False, ("bullhead",)),
}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def add_accounts(data: Path) -> None:
    load_dialects()
    db = open_database(data)
    try:
        for name, (staff, devices) in ACCOUNTS.items():
            Accounts(db).add(name, PASSWORD, staff=staff, devices=list(devices))
    finally:
        db.close()


@dataclass
class ConsoleStore:
    repo: Path
    site: Path
    data: Path
    client: TestClient

    def sign_in(self, name: str) -> str:
        """Sign ``name`` in on this client; the CSRF token of the session."""
        answer = self.client.post(
            "/console/login", data={"name": name, "password": PASSWORD, "next": "/console/"},
            follow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
        return self.csrf()

    def csrf(self, path: str = "/console/") -> str:
        page = self.client.get(path)
        match = CSRF.search(page.text)
        assert match, page.text[:500]
        return match[1]


@contextmanager
def console_store(tmp_path: Path) -> Iterator[ConsoleStore]:
    repo = copy_demo_repo(tmp_path / "repo")
    site, data = tmp_path / "site", tmp_path / "var"
    build(repo, site)
    add_accounts(data)
    config = RuntimeConfig(
        repo=repo.resolve(), site=site.resolve(), data=data.resolve(), secret_key="c" * 40, limits=Limits()
    )
    with TestClient(
        create_app(config), raise_server_exceptions=False, base_url="http://testserver"
    ) as client:
        yield ConsoleStore(repo, site, data, client)

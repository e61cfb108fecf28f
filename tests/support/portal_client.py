"""Helpers for the CI portal tests: accounts and tokens in a served store, uploads, polling."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

import runtime.portal.endpoints  # noqa: F401  (registers the portal schema)
from runtime.accounts import Accounts
from runtime.storage import open_database
from runtime.tokens import Tokens
from tests.support.paths import shared_fixture
from tests.support.serving import ServedStore, copy_demo_repo, serve_store

UPLOAD = "/portal/api/uploads/ci"
PASSWORD = "correct horse battery"


def add_user(data: Path, name: str) -> int:
    db = open_database(data)
    try:
        return Accounts(db).add(name, PASSWORD).id
    finally:
        db.close()


def make_token(data: Path, user_id: int, scope: str = "", expires_in: timedelta | None = None) -> str:
    db = open_database(data)
    try:
        return Tokens(db).create(user_id, "ci", name="test", scope=scope, expires_in=expires_in)[1]
    finally:
        db.close()


def fixture(name: str) -> bytes:
    """The bytes of a real APK of ../shared/fixtures/apk (for tests marked
    ``needs_shared_fixtures``; the others use ``apk_factory.fixture_like``)."""
    return shared_fixture("apk", name).read_bytes()


def upload(
    client: httpx.Client, token: str | None, apk: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(
        UPLOAD,
        files={"apk": ("app.apk", apk, "application/vnd.android.package-archive")},
        headers={**auth, **(headers or {})},
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_validation(client: httpx.Client, token: str, version_id: str) -> dict[str, Any]:
    """The last validation run once it stopped running (polls; the run is a background task)."""
    for _ in range(400):
        runs = client.get(f"/portal/api/versions/{version_id}/validation", headers=bearer(token)).json()[
            "runs"
        ]
        if runs and runs[-1]["status"] != "running":
            return runs[-1]
        time.sleep(0.025)
    raise AssertionError(f"validation of {version_id} never finished")


def stored_files(data: Path) -> list[str]:
    """Every file the portal keeps under the data folder (accepted APKs and leftovers)."""
    root = data / "portal"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def version_count(data: Path) -> int:
    db = open_database(data)
    try:
        return db.execute("SELECT count(*) FROM portal_versions").fetchone()[0]
    finally:
        db.close()


@contextlib.contextmanager
def portal_store(tmp: Path, policy: str, without_live_apps: bool = False) -> Iterator[ServedStore]:
    """A real `depot serve` on a copy of the demo store with ``policy`` appended to depot.toml;
    ``without_live_apps`` takes the demo's own live APK out, for flows that start from none."""
    repo = copy_demo_repo(tmp / "repo")
    with (repo / "depot.toml").open("a") as f:
        f.write(policy)
    if without_live_apps:
        for published in (repo / "android").iterdir():
            published.unlink()
    with serve_store(tmp, repo=repo) as served:
        yield served

"""The runtime reads depot.toml only through the settings schema: a value the schema refuses
(``[qt] max_upload_bytes = "lots"``) never turns a request into a 500; each dialect answers 503
in its own error shape, and the problems go to the log only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from builder.build import build
from runtime.accounts import Accounts
from runtime.app import create_app
from runtime.config import RuntimeConfig
from runtime.dialects import load_dialects
from runtime.storage import open_database
from runtime.tokens import Tokens
from tests.support.repos import copy_demo

ADMIN, PASSWORD = "admin", "admin-password"
BAD = 'max_upload_bytes = "lots"'


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[tuple[TestClient, Path, str]]:
    """A built demo store whose depot.toml then breaks, served in-process; (client, depot.toml,
    a CI token of the staff user)."""
    repo, site, data = copy_demo(tmp_path / "repo"), tmp_path / "site", tmp_path / "var"
    build(repo, site)
    load_dialects()
    db = open_database(data)
    try:
        user = Accounts(db).add(ADMIN, PASSWORD, staff=True)
        _token, ci_token = Tokens(db).create(user.id, "ci", name="ci")
    finally:
        db.close()
    toml = repo / "depot.toml"
    toml.write_text(toml.read_text().replace("[qt]\n", f"[qt]\n{BAD}\n", 1))
    config = RuntimeConfig(repo=repo.resolve(), site=site.resolve(), data=data.resolve(), secret_key="k" * 40)
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        yield client, toml, ci_token


def test_qt_upload_with_a_bad_max_upload_bytes_is_no_500(
    broken: tuple[TestClient, Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, toml, _ci = broken
    fields = {"description": "d", "short-description": "s", "category": "Tools", "vendor": "Qt"}
    files = {"package": ("x.appkg", b"not a package", "application/octet-stream")}
    with caplog.at_level(logging.ERROR):
        response = client.post("/upload", data=fields, files=files, auth=(ADMIN, PASSWORD))
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "failed" and "depot.toml" in body["error"]
    assert "lots" not in response.text  # the problems stay in the log
    assert '[qt] max_upload_bytes must be a positive integer, not "lots"' in caplog.text
    hello = client.get("/hello", params={"platform": "NEPTUNE3", "version": "2"})
    assert hello.status_code == 503 and hello.json()["status"] == "failed"
    # fixed: the runtime re-reads the file and the same upload gets the dialect's own answer
    toml.write_text(toml.read_text().replace(BAD + "\n", ""))
    fixed = client.post("/upload", data=fields, files=files, auth=(ADMIN, PASSWORD))
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["status"] == "Package validation failed"


def test_shipper_answers_503_in_its_shape(broken: tuple[TestClient, Path, str]) -> None:
    client, _toml, _ci = broken
    response = client.get("/api/v1/updater/los/nosuchdevice/gapps/")
    assert response.status_code == 503, response.text
    assert list(response.json()) == ["detail"] and "depot.toml" in response.json()["detail"]


def test_portal_upload_refuses_rather_than_using_default_policy(broken: tuple[TestClient, Path, str]) -> None:
    client, _toml, ci_token = broken
    response = client.post(
        "/portal/api/uploads/ci",
        headers={"Authorization": f"Bearer {ci_token}"},
        files={"apk": ("a.apk", b"PK", "application/vnd.android.package-archive")},
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "settings_unusable"

"""A small store for the device dialect's tests: module ``ax 2.6.4`` on two platforms (pi64 and
opi64), module ``ax 2.6.3`` and firmware ``bottom-sensor 1.4.3`` on pi64, built once per test,
with a staff account and a plain one, served in-process by Starlette's TestClient."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from builder.build import build
from builder.sidecars import write_sidecar
from runtime.accounts import Accounts
from runtime.app import create_app
from runtime.config import Limits, RuntimeConfig
from runtime.device import store as device_store
from runtime.dialects import load_dialects
from runtime.storage import open_database
from tests.support.repos import add_firmware, add_module, write_settings

STAFF, PLAIN, PASSWORD = "admin", "bob", "admin-password"


def make_repo(repo: Path) -> Path:
    write_settings(repo, ["pi64", "opi64"])
    add_module(repo, "ax", "2.6.4", "pi64")
    add_module(repo, "ax", "2.6.4", "opi64")
    add_module(repo, "ax", "2.6.3", "pi64")
    add_firmware(repo, "bottom-sensor", "1.4.3", "pi64")
    return repo


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def install(
    name: str = "ax", version: str = "2.6.4", status: str = "succeeded", **extra: Any
) -> dict[str, Any]:
    return {
        "task_id": 1,
        "kind": "install",
        "target": "module",
        "name": name,
        "version": version,
        "status": status,
        "reason": "" if status == "succeeded" else "health check failed",
        "rolled_back": False,
        "finished": "2026-12-01T10:00:00Z",
        **extra,
    }


def report(
    report_id: str = "task-1", events: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "report_id": report_id,
        "agent_version": "0.1.0",
        "platform": "pi64",
        "installed": {"modules": {"ax": "2.6.4"}, "firmware": {"bottom-sensor": "1.4.3"}},
        "offered": [{"target": "module", "name": "ax", "version": "2.6.4"}],
        "events": events if events is not None else [install()],
        **extra,
    }


@dataclass
class DeviceStore:
    repo: Path
    site: Path
    data: Path
    client: TestClient

    def enroll(self, name: str, groups: tuple[str, ...] = ()) -> str:
        db = open_database(self.data)
        try:
            return device_store.enroll(db, name, list(groups))[1]
        finally:
            db.close()

    def db_rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        db = open_database(self.data)
        try:
            return device_store.rows(db, sql, args)
        finally:
            db.close()

    def counts(self, target: str = "module", name: str = "ax", version: str = "2.6.4") -> dict[str, int]:
        db = open_database(self.data)
        try:
            return device_store.counts(db, (target, name, version))
        finally:
            db.close()

    def post(self, token: str, body: dict[str, Any]) -> Any:
        return self.client.post("/device/api/v1/reports", json=body, headers=bearer(token))

    def rollout(self, folder: str = "modules", name: str = "ax", version: str = "2.6.4") -> Any:
        return self.client.get(
            f"/device/api/v1/rollouts/{folder}/{name}/{version}", headers=basic(STAFF, PASSWORD)
        )


def make_store(tmp_path: Path, limits: Limits | None = None) -> Iterator[DeviceStore]:
    repo, site, data = make_repo(tmp_path / "repo"), tmp_path / "site", tmp_path / "var"
    build(repo, site)
    load_dialects()
    db = open_database(data)
    try:
        Accounts(db).add(STAFF, PASSWORD, staff=True)
        Accounts(db).add(PLAIN, PASSWORD)
    finally:
        db.close()
    config = RuntimeConfig(
        repo=repo.resolve(),
        site=site.resolve(),
        data=data.resolve(),
        secret_key="k" * 40,
        limits=limits or Limits(),
    )
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        yield DeviceStore(repo, site, data, client)


@pytest.fixture
def device_store_app(tmp_path: Path) -> Iterator[DeviceStore]:
    yield from make_store(tmp_path)


@pytest.fixture
def sidecar() -> Callable[..., None]:
    def write(repo: Path, relpath: str, kind: str = "module", **fields: Any) -> None:
        write_sidecar(repo / relpath, fields, kind=kind)

    return write

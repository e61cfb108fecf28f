"""Helpers for the shipper tests: a store shaped like shipper's own test fixture (reference
section 5), real OTA zips, a real `depot serve` with a maintainer account."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from builder.shipper.ota import checksum_line, pack_ota_zip
from tests.support.serving import ServedStore, depot_command, serve_store

SETTINGS = """\
[store]
name = "Shipper Test Store"
base_url = "https://store.example"

[ota]
devices = [
  { codename = "bullhead", name = "Nexus 5X", manufacturer = "LG", maintained = true },
  { codename = "angler", name = "Nexus 6P", manufacturer = "Huawei", maintained = false },
  { codename = "dream2lte", name = "Galaxy S8+", manufacturer = "Samsung", romtype = "OFFICIAL" },
  { codename = "x86", name = "PC", manufacturer = "Generic", maintained = true },
  { codename = "nobuild", name = "No Build", manufacturer = "Nobody", maintained = false, visible = false },
]
variants = [
  { codename = "gapps", description = "GApps" },
  { codename = "vanilla", description = "Vanilla (no GApps)" },
  { codename = "foss", description = "FOSS" },
  { codename = "goapps", description = "GoApps (Android Go Edition GApps)" },
]
x86_types = [ { codename = "go", description = "GO" } ]
allowed_versions = ["v14*", "v15"]
"""

BULLHEAD = "Bliss-v14-bullhead-OFFICIAL-gapps-20200608"
ANGLER = "Bliss-v14-angler-OFFICIAL-vanilla-20200608"
DREAM = "Bliss-v14-dream2lte-OFFICIAL-gapps-20200609"
USER, PASSWORD = "maintainer_user_1", "password"
NO_THROTTLE = {
    "DEPOT_SHIPPER_ANON_RATE": "off",
    "DEPOT_SHIPPER_USER_RATE": "off",
    "DEPOT_LOGIN_ACCOUNT_RATE": "off",
    "DEPOT_LOGIN_ADDRESS_RATE": "off",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ota_zip(path: Path, size: int | None = None, seed: str = "") -> bytes:
    """A real OTA-shaped zip at ``path`` (exactly ``size`` bytes when given); returns its bytes."""
    payload = hashlib.sha256((seed or path.name).encode()).digest() * 64
    pack_ota_zip(
        path, {"pre-device": path.name.split("-")[2] if path.name.count("-") > 2 else "x"}, payload, size
    )
    return path.read_bytes()


def add_build(repo: Path, stem: str, checksum: bool = True, size: int | None = None) -> bytes:
    codename = stem.split("-")[2]
    path = repo / "builds" / codename / f"{stem}.zip"
    data = ota_zip(path, size)
    if checksum:
        path.with_name(path.name + ".sha256").write_bytes(checksum_line(sha256(data), path.name))
    return data


def make_repo(repo: Path) -> Path:
    repo.mkdir(parents=True)
    (repo / "depot.toml").write_text(SETTINGS, encoding="utf-8")
    for stem in (BULLHEAD, ANGLER, DREAM):
        add_build(repo, stem)
    return repo


def add_user(data: Path, name: str = USER, password: str = PASSWORD, devices: str = "bullhead") -> None:
    done = subprocess.run(
        depot_command("user", "add", name, "--password-stdin", "--devices", devices, "--data", str(data)),
        input=password + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def shipper_store(tmp: Path, env: dict[str, str] | None = None) -> Iterator[ServedStore]:
    """`depot serve` on the fixture store, with maintainer_user_1 (bullhead) and an account
    that maintains nothing; throttling off unless ``env`` says otherwise."""
    repo = make_repo(tmp / "repo")
    add_user(tmp / "var")
    add_user(tmp / "var", "other_user", "password2", devices="")
    with serve_store(tmp, repo=repo, env={**NO_THROTTLE, **(env or {})}) as served:
        yield served


def login(client: httpx.Client, user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/v1/maintainers/login/", data={"username": user, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Token {response.json()['token']}"}


def served_fixtures(label: str):
    """The three module-scoped fixtures the shipper API tests share: a real `depot serve` with
    the shipper demo store (`store`), an HTTP client for it (`client`) and a maintainer's token
    header (`auth`). A test module takes them with ``store, client, auth = served_fixtures(...)``."""

    @pytest.fixture(scope="module")
    def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedStore]:
        with shipper_store(tmp_path_factory.mktemp(label)) as served:
            yield served

    @pytest.fixture(scope="module")
    def client(store: ServedStore) -> Iterator[httpx.Client]:
        with store.client() as c:
            yield c

    @pytest.fixture(scope="module")
    def auth(client: httpx.Client) -> dict[str, str]:
        return login(client)

    return store, client, auth

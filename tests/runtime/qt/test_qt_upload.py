"""`POST /upload` against a real `depot serve`: auth, the reference's status strings in order,
validation of every kind of broken package, size limits, and what ends up in repo/apps/."""

from __future__ import annotations

import datetime
import os
import tomllib
from pathlib import Path

import httpx
import pytest

from builder.qt.pack import pack_package, package_entries, tar_bytes
from tests.support.qt import ADMIN, ADMIN_PASSWORD, DEVICE, NEPTUNE_ARCH, USER, USER_PASSWORD, qt_store
from tests.support.serving import ServedStore

LIMIT = 64 * 1024
ELF_ARM64 = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00\xb7\x00" + bytes(44)
FIELDS = {"description": "<p>Long</p>", "short-description": "Short", "category": "Tools", "vendor": "Qt"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    with qt_store(tmp_path_factory.mktemp("qt-upload"), qt_settings=f"max_upload_bytes = {LIMIT}") as served:
        yield served


def admin(store: ServedStore) -> httpx.Client:
    return httpx.Client(base_url=store.url, auth=(ADMIN, ADMIN_PASSWORD), timeout=30)


def upload(client: httpx.Client, package: bytes | None, **fields: str) -> httpx.Response:
    data = {**FIELDS, **fields}
    data = {k: v for k, v in data.items() if v is not None}
    files = (
        {"package": ("upload.appkg", package, "application/octet-stream")} if package is not None else None
    )
    return client.post("/upload", data=data, files=files)


def snapshot(store: ServedStore) -> dict[str, bytes]:
    apps = store.repo / "apps"
    return {p.name: p.read_bytes() for p in sorted(apps.iterdir())}


def listed(store: ServedStore, **hello: str) -> list[dict]:
    with httpx.Client(base_url=store.url) as c:
        c.get("/hello", params={"platform": "NEPTUNE3", "version": "2", **hello})
        return c.get("/app/list").json()


def test_authentication(store: ServedStore) -> None:
    anonymous = httpx.post(store.url + "/upload", data=FIELDS)
    assert anonymous.status_code == 401 and anonymous.content == b""
    assert anonymous.headers["www-authenticate"] == 'Basic realm=""'
    wrong = httpx.post(store.url + "/upload", data=FIELDS, auth=(ADMIN, "wrong"))
    assert wrong.status_code == 401
    garbage = httpx.post(store.url + "/upload", headers={"Authorization": "Basic !!!"})
    assert garbage.status_code == 401
    non_staff = httpx.post(store.url + "/upload", data=FIELDS, auth=(USER, USER_PASSWORD))
    assert non_staff.status_code == 403 and non_staff.content == b""
    with httpx.Client(base_url=store.url) as c:  # a session login works like Basic
        assert c.get("/login", params={"username": USER, "password": USER_PASSWORD}).json()["status"] == "ok"
        assert c.post("/upload", data=FIELDS).status_code == 403
        assert (
            c.get("/login", params={"username": ADMIN, "password": ADMIN_PASSWORD}).json()["status"] == "ok"
        )
        assert c.post("/upload", data=FIELDS).json() == {"status": "no package to upload"}


def test_status_strings_in_the_reference_order(store: ServedStore) -> None:
    before = snapshot(store)
    with admin(store) as c:
        assert c.post("/upload").json() == {"status": "no description"}
        steps = [
            ({"description": None}, "no description"),
            ({"short-description": None}, "no short description"),
            ({"category": None}, "no category"),
            ({"vendor": None}, "no vendor"),
        ]
        for missing, expected in steps:
            assert upload(c, pack_package("com.example.new"), **missing).json() == {"status": expected}
        assert upload(c, None).json() == {"status": "no package to upload"}
        assert c.get("/upload", params=FIELDS).json() == {"status": "no package to upload"}
        assert upload(c, pack_package("com.example.new"), category="Nope").json() == {
            "status": "Non-existing category"
        }
        assert upload(c, pack_package("com.example.new"), vendor="Nope").json() == {
            "status": "Non-existing vendor"
        }
    assert snapshot(store) == before


BROKEN = {
    "wrong digest": package_entries("com.example.bad", digest="0" * 64),
    "store signature": package_entries("com.example.bad", footer_fields={"storeSignature": "x"}),
    "bad tag": package_entries("com.example.bad", tags=["bad.tag"]),
    "id with slash": package_entries("com/example"),
    "header v1 with am-package": package_entries("com.example.bad", header_version=1, info_type="am-package"),
    "two architectures": package_entries(
        "com.example.bad",
        files=[("a.so", ELF_ARM64), ("b.so", b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00\x3e\x00")],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_invalid_packages_are_refused_and_nothing_is_stored(store: ServedStore, case: str) -> None:
    before = snapshot(store)
    with admin(store) as c:
        response = upload(c, tar_bytes(BROKEN[case]))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "Package validation failed" and body["error"]
    assert snapshot(store) == before
    assert not [p for p in (store.repo / "apps").iterdir() if p.name.startswith(".")]


def test_garbage_and_truncated_uploads(store: ServedStore) -> None:
    before = snapshot(store)
    good = pack_package("com.example.cut", files=[("blob", os.urandom(4000))])
    with admin(store) as c:
        for data in (b"", b"not a package", good[: len(good) // 2]):
            assert upload(c, data).json()["status"] == "Package validation failed"
    assert snapshot(store) == before


def test_oversized_upload(store: ServedStore) -> None:
    before = snapshot(store)
    big = pack_package("com.example.big", files=[("blob", os.urandom(LIMIT * 2))])
    with admin(store) as c:
        response = upload(c, big)
    assert response.status_code == 413
    assert response.json()["status"].startswith("package too large")
    assert snapshot(store) == before


def test_new_upload_is_listed_before_the_answer(store: ServedStore) -> None:
    package = pack_package("com.example.uploaded", name={"en": "Uploaded App"}, version="3.2.1")
    with admin(store) as c:
        assert upload(c, package, description="<b>long</b>", **{"short-description": "brief"}).json() == {
            "status": "ok"
        }
    entry = next(e for e in listed(store) if e["id"] == "com.example.uploaded")
    assert (entry["name"], entry["version"], entry["category"], entry["category_id"]) == (
        "Uploaded App",
        "3.2.1",
        "Tools",
        2,
    )
    assert entry["briefDescription"] == "brief" and entry["vendor"] == "Qt"
    stored = store.repo / "apps" / "com.example.uploaded_All_.appkg"
    assert stored.read_bytes() == package
    sidecar = tomllib.loads(Path(str(stored) + ".toml").read_text())
    assert sidecar["purchase_id"] == entry["purchaseId"] and sidecar["description"] == "<b>long</b>"
    # the upload date orders the web catalog's "newest and updated" list
    assert sidecar["updated"] == datetime.datetime.now(datetime.UTC).date().isoformat()
    home = httpx.get(store.url + "/index.html").text
    apps_section = home[home.index('id="h-apps"') :]
    assert apps_section.index("Uploaded App") < apps_section.index("Tagged App")
    with httpx.Client(base_url=store.url) as c:
        assert c.get("/app/description", params={"id": "com.example.uploaded"}).text == "<b>long</b>"
        c.get("/login", params={"username": USER, "password": USER_PASSWORD})
        url = c.get("/app/purchase", params={"purchaseId": entry["purchaseId"], "device_id": DEVICE}).json()[
            "url"
        ]
    assert httpx.get(url).content == package


def test_reupload_replaces_and_keeps_the_purchase_id(store: ServedStore) -> None:
    old = next(e for e in listed(store) if e["id"] == "com.example.plain")
    files_before = sorted(p.name for p in (store.repo / "apps").iterdir())
    new_package = pack_package("com.example.plain", name={"en": "Plain App"}, version="1.0.1")
    with admin(store) as c:
        response = upload(c, new_package, category="Entertainment", **{"short-description": "Updated brief"})
    assert response.json() == {"status": "ok"}
    new = next(e for e in listed(store) if e["id"] == "com.example.plain")
    assert new["purchaseId"] == old["purchaseId"]
    assert (new["version"], new["briefDescription"]) == ("1.0.1", "Updated brief")
    assert sorted(p.name for p in (store.repo / "apps").iterdir()) == files_before
    assert (store.repo / "apps" / "com.example.plain.appkg").read_bytes() == new_package


def test_failed_reupload_keeps_the_stored_package(store: ServedStore) -> None:
    stored = (store.repo / "apps" / "com.example.native.appkg").read_bytes()
    with admin(store) as c:
        bad = tar_bytes(package_entries("com.example.native", digest="f" * 64))
        assert upload(c, bad).json()["status"] == "Package validation failed"
    assert (store.repo / "apps" / "com.example.native.appkg").read_bytes() == stored
    assert "com.example.native" in [e["id"] for e in listed(store, architecture=NEPTUNE_ARCH)]


def test_native_and_tagged_variants_are_separate(store: ServedStore) -> None:
    with admin(store) as c:
        arm = pack_package("com.example.multi", files=[("lib/", None), ("lib/libx.so", ELF_ARM64)])
        assert upload(c, arm).json() == {"status": "ok"}
        tagged = pack_package("com.example.multi", tags=["qt:6"])
        assert upload(c, tagged).json() == {"status": "ok"}
        plain = pack_package("com.example.multi")
        assert upload(c, plain).json() == {"status": "ok"}

    def variants(**hello: str) -> list[tuple[str, list[str]]]:
        return [
            (e["architecture"], e["tags"]) for e in listed(store, **hello) if e["id"] == "com.example.multi"
        ]

    # native preferred over All for the same id when both match
    assert variants(architecture="arm64-little_endian-lp64-linux") == [("arm64-little_endian-64-elf", [])]
    assert variants() == [("All", [])]
    assert variants(require_tag="qt:6.5") == [("All", []), ("All", ["qt:6"])]

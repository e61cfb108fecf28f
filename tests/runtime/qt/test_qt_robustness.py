"""Qt dialect: a category id Python will not convert answers like an unknown category, and an
upload whose catalog rebuild cannot run (depot.toml broken meanwhile) still answers "ok",
because the package is stored in repo/apps/ and the next build publishes it."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from builder.qt.pack import pack_package
from tests.support.qt import ADMIN, ADMIN_PASSWORD, qt_store
from tests.support.serving import ServedStore, depot_command

FIELDS = {"description": "<p>Long</p>", "short-description": "Short", "category": "Tools", "vendor": "Qt"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    with qt_store(tmp_path_factory.mktemp("qt-robust")) as served:
        yield served


def listed(store: ServedStore, **params: str) -> httpx.Response:
    with httpx.Client(base_url=store.url) as c:
        c.get("/hello", params={"platform": "NEPTUNE3", "version": "2"})
        return c.get("/app/list", params=params)


def upload(c: httpx.Client, app_id: str) -> httpx.Response:
    files = {"package": ("upload.appkg", pack_package(app_id), "application/octet-stream")}
    return c.post("/upload", data=FIELDS, files=files)


@pytest.mark.parametrize("category", ["9" * 5000, "0" * 4999 + "9", "1" + "0" * 300])
def test_a_category_id_too_long_for_int(store: ServedStore, category: str) -> None:
    unknown = listed(store, category_id="99")
    response = listed(store, category_id=category)
    assert response.status_code == 200
    assert response.json() == unknown.json() == []


def test_leading_zeros_still_pick_the_category(store: ServedStore) -> None:
    assert listed(store, category_id="0001").json() == listed(store, category_id="1").json() != []


def test_upload_answers_ok_when_the_rebuild_cannot_run(store: ServedStore) -> None:
    toml = store.repo / "depot.toml"
    good = toml.read_bytes()
    with httpx.Client(base_url=store.url, auth=(ADMIN, ADMIN_PASSWORD), timeout=30) as c:
        assert upload(c, "com.example.first").json() == {"status": "ok"}  # the runtime knows the settings
        # Someone breaks depot.toml between the upload's checks and its rebuild: same size and
        # mtime, so the runtime's cached settings still pass the checks, but the build fails.
        st = toml.stat()
        assert b"[qt]" in good
        toml.write_bytes(good.replace(b"[qt]", b"[qt ", 1))
        os.utime(toml, ns=(st.st_atime_ns, st.st_mtime_ns))
        try:
            response = upload(c, "com.example.late")
            assert response.status_code == 200, response.text
            assert response.json() == {"status": "ok"}
            assert (store.repo / "apps" / "com.example.late_All_.appkg").is_file()
            assert "the catalog was not rebuilt: SettingsError" in store.log.read_text()
        finally:
            toml.write_bytes(good)
    assert "com.example.late" not in [e["id"] for e in listed(store).json()]
    built = subprocess.run(
        depot_command("build", "--repo", str(store.repo), "--site", str(store.site)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert "com.example.late" in [e["id"] for e in listed(store).json()]

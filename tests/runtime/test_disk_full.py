"""A full disk: every dialect answers in its own shape with 507 (or succeeds), never a 500,
uploads are refused before any byte is kept when they cannot fit, /healthz says so, and all of it
recovers once space is freed. On a real small file system (tmpfs, mounted by the test as root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.paths import DEMO_REPO
from tests.support.qt import ADMIN, ADMIN_PASSWORD, SECRET, USER, USER_PASSWORD, add_user
from tests.support.serving import depot_command, serve_store

OTA = "Bliss-v14.4-bullhead-OFFICIAL-gapps-20200901.zip"


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write until the file system has no byte left (unbuffered, so closing cannot fail)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def no_500(answer: httpx.Response) -> httpx.Response:
    assert answer.status_code != 500, answer.text
    return answer


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_is_answered_in_each_dialects_shape_and_recovers(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 160) as disk:  # more than the 64 MiB reserve
        repo = disk / "repo"
        shutil.copytree(DEMO_REPO, repo)
        add_user(disk / "var", USER, USER_PASSWORD)
        add_user(disk / "var", ADMIN, ADMIN_PASSWORD, staff=True)
        maintainer = (
            "user",
            "add",
            "maint",
            "--password-stdin",
            "--devices",
            "bullhead",
            "--data",
            str(disk / "var"),
        )
        subprocess.run(
            depot_command(*maintainer), input="maint-password\n", text=True, check=True, capture_output=True
        )
        with serve_store(disk, repo=repo, env={"DEPOT_SECRET_KEY": SECRET}) as store, store.client() as c:
            assert c.get("/healthz").json()["status"] == "ok"
            filler = fill(disk)
            health = c.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "out_of_space"

            # logins write a session or token row: they succeed or answer 507, in their shape
            qt = no_500(c.get("/login", params={"username": USER, "password": USER_PASSWORD}))
            assert qt.json()["status"] in ("ok", "failed")
            if qt.status_code == 507:
                assert "out of disk space" in qt.json()["error"]
            ota = no_500(
                c.post("/api/v1/maintainers/login/", data={"username": "maint", "password": "maint-password"})
            )
            if ota.status_code == 507:
                assert "out of disk space" in ota.json()["detail"]
            portal = no_500(c.post("/portal/api/login", json={"name": USER, "password": USER_PASSWORD}))
            if portal.status_code == 507:
                assert portal.json()["error"]["code"] == "insufficient_storage"
            no_500(c.post("/api/v2/download/build/counter/", json={"build_id": 1, "download_type": "update"}))

            # an upload that cannot fit is refused before a byte is kept
            token = httpx.post(
                store.url + "/api/v1/maintainers/login/",
                data={"username": "maint", "password": "maint-password"},
            )
            if token.status_code == 200:
                auth = {"Authorization": f"Token {token.json()['token']}"}
                piece = b"x" * 1024
                put = c.put(
                    "/api/v1/maintainers/chunked_upload/",
                    headers={**auth, "Content-Range": f"bytes 0-1023/{200 * 2**20}"},
                    data={"filename": OTA},
                    files={"file": ("file", piece)},
                )
                assert put.status_code == 507 and "out of disk space" in put.json()["detail"]
            qt_upload = httpx.post(  # no session cookie: on PostgreSQL (not on this disk) the
                store.url + "/upload",  # login above succeeded and signed `c` in as USER
                auth=(ADMIN, ADMIN_PASSWORD),
                data={"description": "d", "short-description": "s", "category": "Tools", "vendor": "Qt"},
                files={"package": ("x.appkg", b"\0" * 4096, "application/octet-stream")},
            )
            assert qt_upload.status_code == 507 and qt_upload.json()["status"] == "failed"

            filler.unlink()  # space again: everything works, nothing was damaged
            assert c.get("/healthz").json()["status"] == "ok"
            assert c.get("/login", params={"username": USER, "password": USER_PASSWORD}).json() == {
                "status": "ok"
            }
            again = c.post(
                "/api/v1/maintainers/login/", data={"username": "maint", "password": "maint-password"}
            )
            assert again.status_code == 200
            assert c.get("/app/list").status_code == 200


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_depot_build_on_a_full_disk_says_so_in_one_line_and_keeps_the_site(tmp_path: Path) -> None:
    from tests.support.repos import add_module

    repo = tmp_path / "repo"
    shutil.copytree(DEMO_REPO, repo)
    with small_disk(tmp_path / "disk", 16) as disk:
        site = disk / "site"
        first = subprocess.run(
            depot_command("build", "--repo", str(repo), "--site", str(site)), capture_output=True
        )
        assert first.returncode == 0, first.stderr
        before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
        add_module(repo, "bigger", "1.0", "pi64", payload=os.urandom(4 << 20))
        filler = fill(disk)
        full = subprocess.run(
            depot_command("build", "--repo", str(repo), "--site", str(site)), capture_output=True, text=True
        )
        assert full.returncode == 1
        errors = [line for line in full.stderr.splitlines() if line.strip()]
        assert errors[-1].startswith("Error: no space left") and "Traceback" not in full.stderr
        assert {
            p: p.read_bytes() for p in site.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
        } == before
        filler.unlink()
        again = subprocess.run(
            depot_command("build", "--repo", str(repo), "--site", str(site)), capture_output=True
        )
        assert again.returncode == 0, again.stderr

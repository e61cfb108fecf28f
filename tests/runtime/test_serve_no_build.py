"""`depot serve --no-build`: a node that serves site/ as another node builds it. It never
builds or writes site/ (not at start, not after an upload, not the TUF timestamp); an upload it
takes waits in repo/ until the building side's next build publishes it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from tests.support.nodes import Uploader
from tests.support.repos import run_depot
from tests.support.serving import point_base_url_at, serve_store
from tests.support.shipper import PASSWORD, USER, add_user, make_repo, ota_zip

FEED = "/api/v1/updater/los/bullhead/gapps/"
NAME = "Bliss-v14.2-bullhead-OFFICIAL-gapps-20200801.zip"


def tree(site: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(site).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(site.rglob("*"))
        if p.is_file()
    }


def test_a_node_without_a_site_does_not_build_one(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with serve_store(tmp_path, repo=repo, args=("--no-build",)) as served:
        assert httpx.get(served.url + "/healthz").json()["status"] == "ok"
    assert not (tmp_path / "site").exists()


def test_an_upload_waits_in_repo_for_the_building_side(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    add_user(tmp_path / "var")
    site = tmp_path / "site"
    point_base_url_at(repo, "http://127.0.0.1:1")  # serve_store points it at its own port again
    with serve_store(tmp_path, repo=repo, args=("--no-build",)) as served:
        assert not site.exists()  # the node did not build at start...
    built = run_depot("build", "--repo", str(repo), "--site", str(site))  # ...the building side did
    assert built.returncode == 0, built.stderr
    with serve_store(tmp_path, repo=repo, args=("--no-build",)) as served:
        before = tree(site)
        feed = httpx.get(served.url + FEED).json()["response"]
        data = ota_zip(tmp_path / NAME, size=200_000, seed="no-build")
        client = Uploader.login(served.url, USER, PASSWORD)
        upload_id = client.send([served.url], NAME, data, 64 * 1024)
        done = client.complete(served.url, upload_id, hashlib.sha256(data).hexdigest())
        assert done.status_code == 200, done.text
        assert (repo / "builds" / "bullhead" / NAME).read_bytes() == data  # stored in repo/
        assert tree(site) == before  # and site/ untouched: not this node's to write
        assert httpx.get(served.url + FEED).json()["response"] == feed
    rebuilt = run_depot("build", "--repo", str(repo), "--site", str(site))
    assert rebuilt.returncode == 0, rebuilt.stderr
    with serve_store(tmp_path, repo=repo, args=("--no-build",)) as served:
        names = [entry["filename"] for entry in httpx.get(served.url + FEED).json()["response"]]
        assert NAME in names

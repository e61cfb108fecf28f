"""The whole CI portal flow against `depot serve`, driven by the `depot` CLI like the store team.

token (CLI) → upload → validation passes → approve → release to DE and AT → the version is in
the static Android catalog and downloadable → withdraw removes it. Plus illegal transitions,
rejection, resolving a non-blocking finding on a live version, and token revocation.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from tests.support.apk_factory import build_apk, fixture_like
from tests.support.portal_client import PASSWORD, bearer, portal_store, upload, wait_validation
from tests.support.serving import ServedStore, depot_command

POLICY = '\n[portal]\nreview_permissions = ["android.permission.READ_CALENDAR"]\n'


def depot(store: ServedStore, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    where = ["--repo", str(store.repo), "--site", str(store.site), "--data", str(store.data)]
    return subprocess.run(
        depot_command(*args[:2], *where, *args[2:]), input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    # the flow starts from a store with no live Android app: the demo's own is taken out
    with portal_store(tmp_path_factory.mktemp("flow"), POLICY, without_live_apps=True) as served:
        yield served


@pytest.fixture(scope="module")
def client(store: ServedStore) -> httpx.Client:
    with store.client() as c:
        yield c


@pytest.fixture(scope="module")
def token(store: ServedStore) -> str:
    added = depot(store, "user", "add", "dev", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    created = depot(
        store, "ci-token", "create", "--user", "dev", "--app", "com.politedroid", "--expires-days", "30"
    )
    assert created.returncode == 0, created.stderr
    raw = created.stdout.strip().splitlines()[-1]
    assert raw.startswith("depot_ci_")
    listed = depot(store, "ci-token", "list", "--user", "dev")
    assert raw[:14] in listed.stdout and raw not in listed.stdout
    return raw


def catalog(client: httpx.Client) -> dict:
    response = client.get("/android/index.json")
    assert response.status_code == 200
    return response.json()


def test_full_flow_from_upload_to_live_and_back(client: httpx.Client, store: ServedStore, token: str) -> None:
    apk = fixture_like("com.politedroid_4.apk")  # READ_CALENDAR and RECEIVE_BOOT_COMPLETED
    created = upload(client, token, apk)
    assert created.status_code == 201, created.text
    vid = created.json()["version"]["id"]
    run = wait_validation(client, token, vid)
    assert run["status"] == "passed"
    [finding] = run["findings"]  # READ_CALENDAR is a review permission in this store: a warning
    assert (finding["code"], finding["severity"]) == ("permission_review", "warning")

    early = depot(store, "portal", "release", vid, "--countries", "DE,AT")
    assert early.returncode == 1 and "in_review" in early.stderr and "approved" in early.stderr

    approved = depot(store, "portal", "approve", vid)
    assert approved.returncode == 0, approved.stderr
    assert "approved" in approved.stdout
    released = depot(
        store, "portal", "release", vid, "--countries", "de,AT", "--vehicle-contexts", "sedan,suv"
    )
    assert released.returncode == 0, released.stderr

    version = client.get(f"/portal/api/versions/{vid}", headers=bearer(token)).json()
    assert version["status"] == "live" and version["open_issue_count"] == 1  # live with open issues
    release = client.get(f"/portal/api/versions/{vid}/release", headers=bearer(token)).json()
    assert release["live"] is True
    assert release["targets"] == {"countries": ["AT", "DE"], "vehicle_contexts": ["sedan", "suv"]}

    live_apk = store.repo / "android" / "com.politedroid-4.apk"
    assert live_apk.read_bytes() == apk
    sidecar = (store.repo / "android" / "com.politedroid-4.apk.toml").read_text()
    assert 'status = "live"' in sidecar and '"AT", "DE"' in sidecar

    index = catalog(client)
    [package] = index["packages"]
    assert package["package"] == "com.politedroid" and package["latest_version_code"] == 4
    assert sorted(c["country"] for c in index["countries"]) == ["AT", "DE"]
    de_url = urljoin(
        "/android/index.json", next(c["url"] for c in index["countries"] if c["country"] == "DE")
    )
    de_raw = client.get(de_url).content
    assert (
        hashlib.sha256(de_raw).hexdigest()
        == next(c for c in index["countries"] if c["country"] == "DE")["sha256"]
    )
    de = client.get(de_url).json()
    [entry] = de["packages"]
    [v] = entry["versions"]
    assert (v["version_code"], v["version_name"], v["size"]) == (4, "1.3", len(apk))
    assert v["sha256"] == hashlib.sha256(apk).hexdigest()
    assert v["targets"] == {"countries": ["AT", "DE"], "vehicle_contexts": ["sedan", "suv"]}
    download = client.get(urljoin(de_url, v["url"]))
    assert download.status_code == 200 and download.content == apk
    assert download.headers["content-type"] == "application/vnd.android.package-archive"
    page = client.get(urljoin("/android/index.json", package["url"])).json()
    assert [x["version_code"] for x in page["versions"]] == [4]

    resolved = depot(store, "portal", "resolve", finding["id"])
    assert resolved.returncode == 0, resolved.stderr
    assert client.get(f"/portal/api/versions/{vid}", headers=bearer(token)).json()["open_issue_count"] == 0
    again = depot(store, "portal", "resolve", finding["id"])
    assert again.returncode == 1 and "already resolved" in again.stderr

    withdrawn = depot(store, "portal", "withdraw", vid)
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert not live_apk.exists()
    assert not (store.repo / "android" / "com.politedroid-4.apk.toml").exists()
    assert catalog(client) == {**index, "packages": [], "countries": []}
    assert client.get(de_url).status_code == 404
    release = client.get(f"/portal/api/versions/{vid}/release", headers=bearer(token)).json()
    assert release == {"live": False, "targets": {"countries": [], "vehicle_contexts": []}, "released": None}
    assert client.get(f"/portal/api/versions/{vid}", headers=bearer(token)).json()["status"] == "approved"


def test_reject_and_illegal_transitions(client: httpx.Client, store: ServedStore, token: str) -> None:
    apk = build_apk(package="com.politedroid", version_code=10, permissions=())
    # signed by another key than the politedroid pin: validation fails with signer_changed
    vid = upload(client, token, apk).json()["version"]["id"]
    run = wait_validation(client, token, vid)
    assert [f["code"] for f in run["findings"]] == ["signer_changed"]
    refused = depot(store, "portal", "approve", vid)
    assert refused.returncode == 1
    assert "draft" in refused.stderr and "signer_changed" in refused.stderr
    rejected = depot(store, "portal", "reject", vid, "--reason", "signed with the wrong key")
    assert rejected.returncode == 0, rejected.stderr
    assert client.get(f"/portal/api/versions/{vid}", headers=bearer(token)).json()["status"] == "rejected"
    assert depot(store, "portal", "withdraw", vid).returncode == 1
    assert depot(store, "portal", "approve", "no-such-version").returncode == 1
    bad_target = depot(store, "portal", "release", vid, "--countries", "../etc")
    assert bad_target.returncode == 1 and "invalid target" in bad_target.stderr


def test_revoked_token_is_refused_at_once(client: httpx.Client, store: ServedStore, token: str) -> None:
    listed = depot(store, "ci-token", "list", "--user", "dev").stdout.splitlines()
    token_id = next(line.split("\t")[0] for line in listed[1:] if token[:14] in line)
    assert depot(store, "ci-token", "revoke", token_id).returncode == 0
    response = upload(client, token, build_apk(package="com.politedroid", version_code=11))
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_revoked"
    assert depot(store, "ci-token", "revoke", token_id).returncode == 1


def test_depot_build_reproduces_the_android_catalog_from_repo(store: ServedStore, tmp_path: Path) -> None:
    """repo/ is the source of truth: a clean build of a copy gives the same android/ tree."""
    result = subprocess.run(
        depot_command("build", "--repo", str(store.repo), "--site", str(tmp_path / "site")),
        capture_output=True,
    )
    assert result.returncode == 0
    served = sorted(p.relative_to(store.site) for p in (store.site / "android").rglob("*.json"))
    clean = sorted(p.relative_to(tmp_path / "site") for p in (tmp_path / "site" / "android").rglob("*.json"))
    assert served == clean
    for rel in served:
        assert (store.site / rel).read_bytes() == (tmp_path / "site" / rel).read_bytes()

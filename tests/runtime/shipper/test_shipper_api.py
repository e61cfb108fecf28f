"""The shipper dialect against a real `depot serve` on 127.0.0.1: the reference's acceptance
checks (section 5) for feeds, login, tokens, discovery, enable/disable, counters, counts and
counted downloads with HTTP Range."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time

import httpx
import pytest

from tests.support.database import store_database
from tests.support.serving import ServedStore, depot_command
from tests.support.shipper import ANGLER, BULLHEAD, DREAM, USER, login, served_fixtures, sha256

FEED = "/api/v1/updater/los/bullhead/gapps/"


store, client, auth = served_fixtures("shipper-api")


def downloads(store: ServedStore) -> list[tuple]:
    with store_database(store.data) as db:
        found = db.execute("SELECT file_name, download_type FROM shipper_downloads ORDER BY id").fetchall()
        return [tuple(row) for row in found]


def test_feed_happy_path(client: httpx.Client, store: ServedStore) -> None:
    response = client.get(FEED)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    entry = response.json()["response"][0]
    data = (store.repo / "builds/bullhead" / f"{BULLHEAD}.zip").read_bytes()
    assert entry == {
        "datetime": 1591574400,
        "filename": f"{BULLHEAD}.zip",
        "id": sha256(data),
        "size": len(data),
        "version": "v14",
        "variant": "gapps",
        "url": f"{store.url}/download_check/bullhead/{BULLHEAD}/",
        "romtype": "OFFICIAL",
    }


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/api/v1/updater/los/bullhead/vanilla/", 404, "No builds exist for the specified variant yet!"),
        ("/api/v1/updater/los/nonexistent/gapps/", 404, "The specified device does not exist!"),
        ("/api/v1/updater/los/bullhead/milkshake/", 400, "Wrong parameter. Try with the correct parameters."),
        ("/api/v1/updater/los/x86/gapps/", 400, "This endpoint is for arm devices only."),
        ("/api/v1/updater/los/x86_64/gapps/", 400, "This endpoint is for arm devices only."),
        ("/api/v1/updater/los/bullhead/go/gapps/", 400, "This endpoint is for x86_64 devices only."),
        ("/api/v1/updater/los/x86/go/gapps/", 404, "No builds exist for the specified variant yet!"),
        ("/api/v1/updater/los/x86/bass/gapps/", 400, "Wrong parameter. Try with the correct parameters."),
        ("/api/v1/general/build/latest/nonexistent/gapps/", 404, "The specified device does not exist!"),
        (
            "/api/v1/general/build/latest/bullhead/milkshake/",
            400,
            "Wrong parameter. Try with the correct parameters.",
        ),
        (
            "/api/v1/general/build/latest/bullhead/foss/",
            404,
            "No builds exist for the specified variant yet!",
        ),
    ],
)
def test_feed_errors(client: httpx.Client, url: str, status: int, message: str) -> None:
    response = client.get(url)
    assert (response.status_code, response.json()) == (status, {"message": message})


def test_login(client: httpx.Client) -> None:
    first = client.post("/api/v1/maintainers/login/", data={"username": USER, "password": "password"})
    assert first.status_code == 200
    assert first.json()["message"] == "Successfully logged in!"
    again = client.post("/api/v1/maintainers/login/", json={"username": USER, "password": "password"})
    assert again.status_code == 200  # a new token; the first stays valid
    for token in (first.json()["token"], again.json()["token"]):
        check = client.get("/api/v1/maintainers/token_check/", headers={"Authorization": f"Token {token}"})
        assert check.json() == {"username": USER}
    wrong = client.post("/api/v1/maintainers/login/", data={"username": USER, "password": "incorrect"})
    assert wrong.status_code == 404 and wrong.json()["error"] == "invalid_credential"
    blank = client.post("/api/v1/maintainers/login/", data={"username": USER})
    assert blank.status_code == 400 and blank.json()["error"] == "blank_username_or_password"


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "Authentication credentials were not provided."),
        ("Bearer abc", "Authentication credentials were not provided."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
        ("Token depot_ota_nope", "Invalid token."),
    ],
)
def test_token_errors(client: httpx.Client, header: str | None, detail: str) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/maintainers/token_check/", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert response.headers["www-authenticate"] == "Token"


def test_revoked_token_is_refused_at_once(client: httpx.Client, store: ServedStore) -> None:
    headers = login(client)
    assert client.get("/api/v1/maintainers/token_check/", headers=headers).status_code == 200
    with store_database(store.data) as db:
        db.execute("UPDATE tokens SET revoked = 1")
    response = client.get("/api/v1/maintainers/token_check/", headers=headers)
    assert response.status_code == 401 and response.json() == {"detail": "Invalid token."}


def test_discovery_without_trailing_slash(client: httpx.Client) -> None:
    headers = login(client)
    redirect = client.get("/api/v2/system/info")
    assert redirect.status_code == 301 and redirect.headers["location"] == "/api/v2/system/info/"
    info = client.get("/api/v2/system/info/").json()
    major, minor, _ = (int(p) for p in info["version"].split("."))
    assert (major, minor) >= (2, 37)
    assert info["shippy_compat_version"] == "2.27.0"
    assert info["shippy_upload_checksum_type"] == "sha256"
    assert info["shippy_upload_variants"]["gapps"] == "GApps"
    pattern_url = "/api/v1/maintainers/upload_filename_regex_pattern"
    assert client.get(pattern_url, headers=headers).status_code == 301
    pattern = client.get(pattern_url + "/", headers=headers).json()["pattern"]
    assert re.search(pattern, f"{BULLHEAD}.zip")["codename"] == "bullhead"
    assert client.get(pattern_url + "/").status_code == 401
    assert client.get("/api/v1/general/device/all").headers["location"] == "/api/v1/general/device/all/"
    assert (
        client.get("/api/v1/download/count/all?x=1").headers["location"] == "/api/v1/download/count/all/?x=1"
    )


def test_duplicate_check(client: httpx.Client) -> None:
    headers = login(client)
    url = "/api/v1/maintainers/build/duplicate_check/"
    assert client.post(url, headers=headers, data={"file_name": BULLHEAD}).json() == {"exists": True}
    assert client.post(url, headers=headers, data={"file_name": f"{BULLHEAD}.zip"}).json() == {"exists": True}
    assert client.post(url, headers=headers, data={"file_name": "invalid_build_file_name"}).json() == {
        "exists": False
    }
    assert client.post(url, headers=headers, data={"file_name": "../../depot.toml"}).json() == {
        "exists": False
    }
    missing = client.post(url, headers=headers, data={})
    assert missing.status_code == 400 and missing.json()["error"] == "missing_parameters"
    assert client.post(url, data={"file_name": BULLHEAD}).status_code == 401


def build_id(client: httpx.Client, stem: str) -> int:
    """A build without a build_id in its sidecar has the id derived from its place in repo/."""
    from builder.shipper.ota import derived_build_id

    return derived_build_id(stem.split("-")[2], f"{stem}.zip")


def test_enable_disable(client: httpx.Client, store: ServedStore) -> None:
    headers = login(client)
    url = "/api/v1/maintainers/build/enabled_status_modify/"
    bid = build_id(client, BULLHEAD)
    off = client.post(url, headers=headers, data={"build_id": bid, "enable": "False"})
    assert off.json() == {"message": "Successfully disabled the build!"}
    assert client.get(FEED).status_code == 404
    assert client.get("/api/v1/general/device/all/").json()["bullhead"]["variants"] == []
    assert "enabled = false" in (store.repo / "builds/bullhead" / f"{BULLHEAD}.zip.toml").read_text()
    assert client.get(f"/download_check/bullhead/{BULLHEAD}/").status_code == 404
    on = client.post(url, headers=headers, data={"build_id": bid, "enable": "True"})
    assert on.json() == {"message": "Successfully enabled the build!"}
    assert client.get(FEED).status_code == 200
    foreign = client.post(url, headers=headers, data={"build_id": build_id(client, DREAM), "enable": "False"})
    assert foreign.status_code == 401 and foreign.json()["error"] == "insufficient_permissions"
    assert client.post(url, headers=headers, data={"build_id": bid}).json()["error"] == "missing_parameters"
    bad = client.post(url, headers=headers, data={"build_id": "x", "enable": "True"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_parameters"
    unknown = client.post(url, headers=headers, data={"build_id": 5, "enable": "True"})
    assert unknown.status_code == 404 and unknown.json() == {"detail": "No Build matches the given query."}


def test_v2_and_v1_counters(client: httpx.Client, store: ServedStore) -> None:
    url = "/api/v2/download/build/counter/"
    before = len(downloads(store))
    ok = client.post(url, json={"file_name": ANGLER, "download_type": "update"})
    assert ok.json() == {"message": "The request was successful!"}
    assert downloads(store)[-1] == (ANGLER, "update")  # the type is stored, unlike upstream
    by_id = client.post(url, data={"build_id": build_id(client, ANGLER), "download_type": "download"})
    assert by_id.status_code == 200
    cases = [
        ({"file_name": ANGLER, "download_type": "invalid"}, 400, "invalid_download_type"),
        ({"file_name": "nope", "download_type": "download"}, 404, "invalid_build_name"),
        # shipper's file_name has no .zip; with it the build is not found, and nothing is counted
        ({"file_name": f"{ANGLER}.zip", "download_type": "download"}, 404, "invalid_build_name"),
        ({"build_id": 999999999, "download_type": "download"}, 404, "invalid_build_id"),
        ({"download_type": "download"}, 400, "missing_build_information"),
    ]
    for body, status, error in cases:
        response = client.post(url, json=body)
        assert (response.status_code, response.json()["error"]) == (status, error)
    assert client.post("/api/v1/download/build/counter/", data={"file_name": ANGLER}).status_code == 200
    assert client.post("/api/v1/download/build/counter/", data={}).json()["error"] == "missing_parameters"
    assert len(downloads(store)) == before + 3


def test_rolling_counts(client: httpx.Client, store: ServedStore) -> None:
    with store_database(store.data) as db:
        db.execute("DELETE FROM shipper_downloads")
        now = time.time()
        for days in (1, 3, 5, 9, 31):
            db.execute(
                "INSERT INTO shipper_downloads (time, codename, file_name, build_id, ip, download_type)"
                " VALUES (?, 'angler', ?, 1, '127.0.0.1', 'download')",
                [now - days * 86400, ANGLER],
            )
    counts = {p: client.get(f"/api/v1/download/count/{p}/").json() for p in ("day", "week", "month", "all")}
    assert counts == {"day": {"count": 0}, "week": {"count": 3}, "month": {"count": 4}, "all": {"count": 5}}
    assert client.get("/api/v1/download/count/year/").status_code == 404


def test_latest_and_magic_download(client: httpx.Client, store: ServedStore) -> None:
    latest = client.get("/api/v1/general/build/latest/bullhead/gapps/").json()
    assert latest["mirror_url"].endswith(f"/api/v1/general/build/magic_download/bullhead/{BULLHEAD}/")
    before = len(downloads(store))
    redirect = client.get(latest["mirror_url"])
    assert redirect.status_code == 302
    assert len(downloads(store)) == before + 1
    file = client.get(redirect.headers["location"])  # the redirect target does not count twice
    assert file.status_code == 200
    assert sha256(file.content) == latest["sha256"]
    assert len(downloads(store)) == before + 1
    assert client.get(f"/api/v1/general/build/magic_download/bullhead/{DREAM}/").status_code == 404


def test_download_with_range_resume(client: httpx.Client, store: ServedStore) -> None:
    url = f"/download_check/bullhead/{BULLHEAD}/"
    data = (store.repo / "builds/bullhead" / f"{BULLHEAD}.zip").read_bytes()
    before = len(downloads(store))
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert BULLHEAD in whole.headers["content-disposition"]
    resumed = client.get(url, headers={"Range": "bytes=1000-"})
    assert resumed.status_code == 206
    assert resumed.content == data[1000:]
    assert resumed.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert downloads(store)[before:] == [(BULLHEAD, "update")]  # the resume is the same download
    assert client.get(url.rstrip("/")).status_code == 301


@pytest.mark.parametrize(
    "url",
    [
        "/download_check/bullhead/..%2F..%2Fdepot.toml/",
        "/download_check/..%2Fbuilds/x/",
        "/download_check/bullhead/nope/",
        f"/download_check/angler/{BULLHEAD}/",
    ],
)
def test_download_refuses_what_is_not_a_build(client: httpx.Client, url: str) -> None:
    assert client.get(url).status_code == 404


def test_maintainer_lists(client: httpx.Client, store: ServedStore) -> None:
    done = subprocess.run(
        depot_command("user", "add", "jane", "--password-stdin", "--devices", "angler", "--full-name",
                      "Jane Doe", "--data", str(store.data)),
        input="jane-password\n", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    everyone = client.get("/api/v1/general/maintainer/all/").json()
    assert everyone[USER]["devices"] == ["bullhead"] and everyone[USER]["active"] is True
    # "name" is the full name, as shipper's get_full_name(): empty when unset, never the username
    assert everyone[USER]["name"] == "" and everyone["jane"]["name"] == "Jane Doe"
    assert "other_user" not in everyone
    active = client.get("/api/v1/general/maintainer/active/").json()
    assert "active" not in active[USER]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/maintainers/login/"),
        ("GET", "/api/v2/download/build/counter/"),
        ("PUT", "/api/v1/maintainers/build/duplicate_check/"),
        ("POST", "/api/v1/general/maintainer/all/"),
        ("DELETE", "/api/v1/updater/los/bullhead/gapps/"),
    ],
)
def test_a_wrong_method_is_drfs_405(client: httpx.Client, method: str, path: str) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.json() == {"detail": f'Method "{method}" not allowed.'}
    assert "OPTIONS" in answer.headers["allow"]


def test_route_table_alone_answers_errors_with_their_status(store: ServedStore) -> None:
    """Only the static mount, no shipper routes: the route table's status is honoured."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from runtime.static import StaticSite
    from tests.support.serving import serve_app

    static = StaticSite(store.site)
    app = Starlette(routes=[Route("/{path:path}", static.endpoint)])
    with serve_app(app) as url:
        vanilla = httpx.get(url + "/api/v1/updater/los/bullhead/vanilla/")
        assert (vanilla.status_code, vanilla.json()) == (
            404,
            {"message": "No builds exist for the specified variant yet!"},
        )
        x86 = httpx.get(url + "/api/v1/updater/los/x86/foss/")
        assert (x86.status_code, x86.json()) == (400, {"message": "This endpoint is for arm devices only."})
        assert httpx.get(url + FEED).status_code == 200


def test_runtime_fills_in_missing_checksum_sidecars(client: httpx.Client, store: ServedStore) -> None:
    sidecar = store.repo / "builds/angler" / f"{ANGLER}.zip.sha256"
    expected = sidecar.read_bytes()
    sidecar.unlink()
    headers = login(client)
    bid = build_id(client, BULLHEAD)
    url = "/api/v1/maintainers/build/enabled_status_modify/"
    assert client.post(url, headers=headers, data={"build_id": bid, "enable": "True"}).status_code == 200
    assert sidecar.read_bytes() == expected  # written by the runtime before its rebuild

"""The generated nginx block in front of a real `depot serve` (the `stack` of test_nginx.py), as a
hostile visitor meets it (issue 12): the browser policy on every answer, exactly once, whichever
location answers, and descriptions that carry no script whoever serves them."""

from __future__ import annotations

import subprocess

import httpx

from builder.device.module import pack_module
from tests.builder import test_nginx
from tests.runtime.browser_policy import assert_browser_policy
from tests.support.device_index import download_url, fetch_platform, package
from tests.support.qt import DEVICE, USER, USER_PASSWORD
from tests.support.serving import ServedStore, depot_command

pytestmark = test_nginx.pytestmark
stack = test_nginx.stack  # the same fixture: nginx on a free port in front of `depot serve`

HOSTILE = (
    "<p>Plays <strong>music</strong>.</p><script>window.pwned = 1</script>"
    '<img src=x onerror="window.pwned = 2"><a href="javascript:window.pwned = 3">js</a>'
    '<iframe src="http://203.0.113.9/"></iframe><a href="https://www.qt.io/">Qt</a>'
)
BAD = ("<script", "window.pwned", "onerror", "javascript", "<iframe", "<img", "203.0.113.9")


def build(store: ServedStore) -> None:
    args = ["build", "--repo", str(store.repo), "--site", str(store.site), "--data", str(store.data)]
    done = subprocess.run(depot_command(*args), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_kind_of_answer_carries_the_browser_policy_once(stack: tuple[ServedStore, str]) -> None:
    store, front = stack
    with httpx.Client(base_url=front) as client:
        platform = client.get("/device/index.json").json()["platforms"][0]["name"]
        index, shard_urls = fetch_platform(client, platform)
        blob = download_url(shard_urls[0], index["modules"][0]["versions"][0])
        answers = {
            "static page (no-cache location)": client.get("/index.html"),
            "folder index": client.get("/"),
            "static index": client.get("/device/index.json"),
            "device index shard": client.get(shard_urls[0]),
            "package file (immutable location)": client.get(blob),
            "range of a package file": client.get(blob, headers={"Range": "bytes=0-9"}),
            "static 404 route (error_page)": client.get("/api/v1/general/build/latest/angler/foss/"),
            "proxied": client.get("/healthz"),
            "proxied by query": client.get("/category/icon", params={"id": "-1"}),
            "proxied 404": client.get("/no/such/file"),
        }
        client.get("/hello", params={"platform": "NEPTUNE3", "version": "2"})
        client.get("/login", params={"username": USER, "password": USER_PASSWORD})
        bought = client.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).json()
        answers["Qt download"] = client.get(httpx.URL(bought["url"]).raw_path.decode())

    # a URL published after the block was generated: location / → runtime → X-Accel-Redirect
    pack_module(
        store.repo / "modules" / "late.0.1.0.pi64.tar.gz",
        {"bin/late": b"#!/bin/sh\n"},
        {"description": "Late"},
    )
    build(store)
    with httpx.Client(base_url=front) as client:
        late_index, late_shards = fetch_platform(client, "pi64")
    late = package(late_index, "late")["versions"][0]
    late_url = download_url(late_shards[0], late)
    direct = httpx.get(store.url + late_url)
    assert direct.headers["x-accel-redirect"].startswith("/_depot_site/")
    answers["handed back with X-Accel-Redirect"] = httpx.get(front + late_url)

    statuses = {what: a.status_code for what, a in answers.items()}
    assert statuses == {
        "static page (no-cache location)": 200,
        "folder index": 200,
        "static index": 200,
        "device index shard": 200,
        "package file (immutable location)": 200,
        "range of a package file": 206,
        "static 404 route (error_page)": 404,
        "proxied": 200,
        "proxied by query": 200,
        "proxied 404": 404,
        "Qt download": 200,
        "handed back with X-Accel-Redirect": 200,
    }
    assert len(answers["handed back with X-Accel-Redirect"].content) == late["size"]
    for answer in answers.values():
        assert_browser_policy(answer)
    # the locations with headers of their own still send them
    assert answers["package file (immutable location)"].headers["cache-control"].endswith("immutable")
    assert answers["static page (no-cache location)"].headers["cache-control"] == "no-cache"
    assert answers["device index shard"].headers["cache-control"] == "no-cache"


def test_a_hostile_description_is_harmless_through_nginx(stack: tuple[ServedStore, str]) -> None:
    store, front = stack
    sidecar = store.repo / "apps" / "com.example.plain.appkg.toml"
    lines = [line for line in sidecar.read_text().splitlines() if not line.startswith("description")]
    sidecar.write_text("\n".join([*lines, f"description = '''{HOSTILE}'''"]) + "\n")
    build(store)
    with httpx.Client(base_url=front) as client:
        static = client.get("/qt/descriptions/com.example.plain_All_.html")  # nginx's own location
        client.get("/hello", params={"platform": "NEPTUNE3", "version": "2"})
        dynamic = client.get("/app/description", params={"id": "com.example.plain"})  # the runtime
    for answer in (static, dynamic):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert "<strong>music</strong>" in answer.text and 'href="https://www.qt.io/"' in answer.text
        assert [bad for bad in BAD if bad in answer.text.lower()] == []
        assert_browser_policy(answer)


def test_nginx_takes_large_bodies_only_where_uploads_go(stack: tuple[ServedStore, str]) -> None:
    _store, front = stack
    big = b"x" * (2 << 20)
    refused = httpx.post(
        front + "/hello", content=big, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert refused.status_code == 413  # nginx's own answer: the runtime never sees the body
    login = httpx.post(front + "/portal/api/login", content=big, headers={"content-type": "application/json"})
    assert login.status_code == 413
    upload = httpx.post(front + "/upload", content=big, headers={"content-type": "application/octet-stream"})
    assert upload.status_code != 413 or upload.headers.get("server", "").startswith(
        "uvicorn"
    )  # reached Depot

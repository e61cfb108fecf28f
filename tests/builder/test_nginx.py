"""The generated nginx configuration, served by a real nginx in front of a real `depot serve`."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from builder.routes import load_routes
from tests.support.device_index import download_url, fetch_platform, shard_files
from tests.support.nginx import NGINX, generated_config, running_nginx
from tests.support.qt import DEVICE, NEPTUNE_ARCH, USER, USER_PASSWORD, add_user
from tests.support.serving import ServedStore, free_port, serve_store

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/setup-system)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("nginx")
    add_user(tmp / "var", USER, USER_PASSWORD)
    with serve_store(tmp, env={"DEPOT_ACCEL_REDIRECT": "/_depot_site/"}) as store:
        port = free_port()
        generated = generated_config(store.site, store.url.removeprefix("http://"), port)
        with running_nginx(tmp, generated, port, "/healthz") as url:
            yield store, url


def test_nginx_serves_what_the_runtime_serves(stack: tuple[ServedStore, str]) -> None:
    store, front = stack
    routes = {r["url"]: r for r in load_routes(store.site)}
    shards = ["/" + p for p in shard_files(store.site, "pi64")]  # the device index's shards too
    assert shards
    for path in ("/index.html", "/device/index.json", *shards, "/search.json"):
        proxied = httpx.get(front + path)
        assert proxied.status_code == 200
        assert proxied.content == (store.site / routes[path]["file"]).read_bytes()
        assert proxied.headers["content-type"].replace(" ", "") == routes[path]["type"].replace(" ", "")
        assert proxied.headers["cache-control"] == "no-cache"
    for folder, page in (("/", "index.html"), ("/modules/pi64/", "modules/pi64/index.html")):
        assert httpx.get(front + folder).content == (store.site / page).read_bytes()


def test_behind_nginx_the_runtime_hands_the_bytes_over(stack: tuple[ServedStore, str]) -> None:
    store, _front = stack
    direct = httpx.get(store.url + "/device/index.json")
    assert direct.headers["x-accel-redirect"] == "/_depot_site/device/index.json"
    assert direct.content == b""


def test_nginx_serves_package_files_with_ranges_and_immutable_caching(stack: tuple[ServedStore, str]) -> None:
    _store, front = stack
    index, shard_urls = fetch_platform(httpx, "pi64", front + "/device/index.json")
    version = index["modules"][0]["versions"][0]
    url = download_url(shard_urls[0], version)
    full = httpx.get(httpx.URL(url))
    assert full.status_code == 200
    assert hashlib.sha256(full.content).hexdigest() == version["sha256"]
    assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
    part = httpx.get(httpx.URL(url), headers={"Range": "bytes=4-"})
    assert part.status_code == 206
    assert part.content == full.content[4:]


def test_nginx_passes_dynamic_and_unknown_urls_to_the_runtime(stack: tuple[ServedStore, str]) -> None:
    _store, front = stack
    assert httpx.get(front + "/healthz").json() == {"status": "ok", "database": "ok", "disk": "ok"}
    missing = httpx.get(front + "/no/such/file")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}


def test_urls_the_runtime_builds_behind_nginx_carry_the_clients_host_and_port(
    stack: tuple[ServedStore, str],
) -> None:
    """Neptune's default store is on port 8514: the icon and purchase URLs must name that host
    and port, not nginx's upstream name or port 80, or Qt AM cannot fetch them."""
    _store, front = stack
    public = "store.example.com:8514"
    with httpx.Client(base_url=front, headers={"Host": public}) as client:
        hello = client.get(
            "/hello", params={"platform": "NEPTUNE3", "version": "2", "architecture": NEPTUNE_ARCH}
        )
        assert hello.json()["status"] == "ok"
        apps = client.get("/app/list").json()
        assert apps and all(a["iconUrl"].startswith(f"http://{public}/") for a in apps), apps
        icon = client.get(httpx.URL(apps[0]["iconUrl"]).raw_path.decode())
        assert icon.status_code == 200 and icon.content.startswith(b"\x89PNG")
        assert client.get("/login", params={"username": USER, "password": USER_PASSWORD}).json() == {
            "status": "ok"
        }
        purchase = client.get("/app/purchase", params={"id": apps[0]["id"], "device_id": DEVICE}).json()
        assert purchase["status"] == "ok", purchase
        assert purchase["url"].startswith(f"http://{public}/app/download/"), purchase
        download = client.get(httpx.URL(purchase["url"]).raw_path.decode())
        assert download.status_code == 200 and len(download.content) > 0

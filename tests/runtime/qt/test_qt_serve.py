"""The Qt deployment server dialect against a real `depot serve` on 127.0.0.1.

Replays what Neptune 3 UI does (reference section 6) and the reference's acceptance checks
(section 8), adapted where Depot does what the documentation promises instead of the bug.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid

import httpx
import pytest

from builder.routes import load_routes
from runtime.signing import ExpiringLinks
from tests.support.qt import (
    ADMIN,
    ADMIN_PASSWORD,
    DEVICE,
    NEPTUNE_ARCH,
    SECRET,
    USER,
    USER_PASSWORD,
    qt_store,
)
from tests.support.serving import ServedStore

KEYS = {
    "id", "name", "vendor", "briefDescription", "category", "category_id", "architecture",
    "version", "pkgformat", "purchaseId", "tags", "conflict_tags", "iconUrl",
}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    with qt_store(tmp_path_factory.mktemp("qt-served")) as served:
        yield served


def session(store: ServedStore) -> httpx.Client:
    return httpx.Client(base_url=store.url, timeout=10)


def hello(client: httpx.Client, **extra: str) -> str:
    params = {"platform": "NEPTUNE3", "version": "2", **extra}
    response = client.get("/hello", params=params)
    assert response.status_code == 200
    return response.json()["status"]


def login(client: httpx.Client, name: str = USER, password: str = USER_PASSWORD) -> None:
    assert client.get("/login", params={"username": name, "password": password}).json() == {"status": "ok"}


def ids(client: httpx.Client, **params: str) -> list[str]:
    response = client.get("/app/list", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return [e["id"] for e in response.json()]


# -- the Neptune 3 UI call sequence --------------------------------------------------------------


def test_neptune_call_sequence(store: ServedStore) -> None:
    """hello → login → category list → app list → purchase by purchaseId → download without cookies,
    with the query strings exactly as Neptune builds them (no URL encoding)."""
    with session(store) as neptune:
        url = (
            f"/hello?platform=NEPTUNE3&version=2&architecture={NEPTUNE_ARCH}"
            "&require_tag=build_target:desktop,qt:5.15.2"
        )
        assert neptune.get(url).json() == {"status": "ok"}
        login_url = f"/login?username={USER}&password={USER_PASSWORD}&imei=112163001487801"
        assert neptune.get(login_url).json() == {"status": "ok"}
        categories = neptune.get("/category/list").json()
        assert categories[0] == {"id": -1, "name": "All"}
        for category in categories:
            icon = neptune.get(f"/category/icon?id={category['id']}")
            assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
            assert icon.content.startswith(b"\x89PNG")
        apps = neptune.get("/app/list?filter=").json()
        assert [a["id"] for a in apps] == ["com.example.native", "com.example.plain", "com.example.tagged"]
        for app in apps:
            icon = neptune.get(app["iconUrl"])
            assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
        native = next(a for a in apps if a["id"] == "com.example.native")
        bought = neptune.get(f"/app/purchase?purchaseId={native['purchaseId']}&device_id={DEVICE}").json()
        assert bought["status"] == "ok" and bought["expiresIn"] == 600
        assert bought["url"].startswith(store.url + "/app/download/")
        notification_icon = neptune.get(f"/app/icon?id=com.example.native&architecture={NEPTUNE_ARCH}")
        assert notification_icon.status_code == 200
    # Qt Application Manager downloads on its own: no cookies at all
    package = httpx.get(bought["url"], timeout=10)
    assert package.status_code == 200
    assert package.content == (store.repo / "apps" / "com.example.native.appkg").read_bytes()
    assert package.headers["content-type"] == "application/octet-stream"


# -- acceptance checks (reference section 8) ---------------------------------------------------


def test_hello_statuses(store: ServedStore) -> None:
    with session(store) as c:
        assert hello(c) == "ok"
        for version in ("3", "0", "abc", "2.0", "-1", "300"):
            assert hello(c, version=version) == "incompatible-version"
        assert c.get("/hello", params={"platform": "NEPTUNE3"}).json() == {"status": "incompatible-version"}
        assert hello(c, version=" 2") == "ok"
        assert (
            c.get("/hello", params={"platform": "AM", "version": "1"}).json()["status"]
            == "incompatible-platform"
        )
        assert hello(c, platform="neptune3") == "incompatible-platform"


def test_hello_precedence(store: ServedStore) -> None:
    with session(store) as c:
        assert hello(c, architecture="x86_64") == "incompatible-architecture"
        assert hello(c, require_tag="bad.tag") == "malformed-tag"
        assert hello(c, require_tag="bad.tag", architecture="x86_64") == "incompatible-architecture"
        assert hello(c, require_tag="bad.tag", platform="AM") == "malformed-tag"
        assert hello(c, version="9", platform="AM") == "incompatible-platform"


def test_maintenance_wins_over_platform_and_version(tmp_path) -> None:
    from tests.support.qt import qt_store as fresh_store

    with fresh_store(tmp_path) as served:
        toml = served.repo / "depot.toml"
        toml.write_text(toml.read_text().replace("maintenance = false", "maintenance = true"))
        with session(served) as c:
            assert hello(c) == "maintenance"
            assert hello(c, platform="AM", version="7") == "maintenance"
            assert hello(c, architecture="x86_64") == "incompatible-architecture"
            assert ids(c) == ["com.example.plain"]  # only hello is affected


def test_category_list(store: ServedStore) -> None:
    response = httpx.get(store.url + "/category/list")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == [
        {"id": -1, "name": "All"},
        {"id": 1, "name": "Entertainment"},
        {"id": 2, "name": "Tools"},
    ]


def test_category_list_and_icon_answer_post_as_the_reference_does(store: ServedStore) -> None:
    got = httpx.get(store.url + "/category/list")
    posted = httpx.post(store.url + "/category/list")
    assert posted.status_code == 200 and posted.json() == got.json()
    icon = httpx.post(store.url + "/category/icon", data={"id": "-1"})
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
    assert icon.content == httpx.get(store.url + "/category/icon", params={"id": "-1"}).content


def test_an_unknown_kernel_keeps_the_binary_format_the_client_sent(store: ServedStore) -> None:
    """The reference's normalizeArch leaves the fourth part alone for a kernel it does not know,
    so a QNX client that reports an ELF ABI sees the native ELF packages."""
    with session(store) as c:
        assert hello(c, architecture="x86_64-little_endian-lp64-elf-qnx") == "ok"
        assert ids(c) == ["com.example.native", "com.example.plain"]


def test_architecture_filtering(store: ServedStore) -> None:
    with session(store) as c:
        assert hello(c) == "ok"
        assert ids(c) == ["com.example.plain"]
        assert hello(c, architecture=NEPTUNE_ARCH) == "ok"
        entries = c.get("/app/list").json()
        assert [e["id"] for e in entries] == ["com.example.native", "com.example.plain"]
        native, plain = entries
        assert native["architecture"] == "x86_64-little_endian-64-elf"
        for entry in entries:
            assert set(entry) == KEYS
            assert str(uuid.UUID(entry["purchaseId"])) == entry["purchaseId"]
        assert native["iconUrl"] == store.url + "/app/icons/com.example.native_x86_64-little_endian-64-elf_"
        assert plain["iconUrl"].endswith("/app/icons/com.example.plain_All_")
        # the real versions from info.yaml, not the reference's constant 0.0.0
        assert (native["version"], plain["version"]) == ("0.9.3", "1.0.0")
        assert plain == {
            **plain,
            "name": "Plain App",
            "vendor": "Qt",
            "category": "Entertainment",
            "category_id": 1,
            "pkgformat": 2,
            "tags": [],
            "conflict_tags": [],
            "briefDescription": "A QML-only app that runs on every architecture.",
        }
        assert hello(c, architecture="arm64-little_endian-lp64-linux") == "ok"
        assert ids(c) == ["com.example.plain"]


def test_tag_filtering(store: ServedStore) -> None:
    with session(store) as c:
        assert hello(c, require_tag="build_target:desktop,qt:5.15.2") == "ok"
        tagged = [e for e in c.get("/app/list").json() if e["id"] == "com.example.tagged"]
        assert len(tagged) == 1
        assert sorted(tagged[0]["tags"]) == ["build_target:desktop", "qt:5.15"]
        assert tagged[0]["conflict_tags"] == ["neptune"]  # the reference drops them: always []
        assert hello(c, tag="build_target:desktop", require_tag="QT:5.15") == "ok"  # both joined
        assert "com.example.tagged" in ids(c)
        for tags in ("qt:5.15", "qt,build_target", "qt:5,build_target:desktop"):
            assert hello(c, require_tag=tags) == "ok"
            assert "com.example.tagged" not in ids(c)
    with session(store) as fresh:  # no hello: no tag filtering
        assert ids(fresh) == ["com.example.plain", "com.example.tagged"]


def test_category_and_text_filters(store: ServedStore) -> None:
    with session(store) as c:
        assert hello(c, architecture=NEPTUNE_ARCH) == "ok"
        assert ids(c, category_id="2") == ["com.example.native"]
        assert ids(c, category_id="1") == ["com.example.plain"]
        assert ids(c, filter="plain") == ["com.example.plain"]
        assert ids(c, filter="PLAIN") == ["com.example.plain"]
        assert ids(c, filter="") == ["com.example.native", "com.example.plain"]
        # -1 means All, as documented (the reference answers [])
        assert ids(c, category_id="-1") == ["com.example.native", "com.example.plain"]
        assert ids(c, category_id="1", filter="native") == []
        for bad in ("0", "999", "abc", "1;drop"):
            assert ids(c, category_id=bad) == []


def test_login(store: ServedStore) -> None:
    with session(store) as c:
        assert c.get("/login", params={"username": USER}).json() == {"status": "missing-credentials"}
        assert c.get("/login", params={"password": "x"}).json() == {"status": "missing-credentials"}
        bad = {"username": USER, "password": "x"}
        assert c.get("/login", params=bad).json() == {"status": "authentication-failed"}
        nobody = {"username": "nobody", "password": "x"}
        assert c.get("/login", params=nobody).json() == {"status": "authentication-failed"}
        login(c)


def test_logout_really_logs_out(store: ServedStore) -> None:
    with session(store) as c:
        assert c.get("/logout").json() == {"status": "failed"}
        assert hello(c, require_tag="qt:5.15.2,build_target:desktop") == "ok"
        login(c)
        stolen = dict(c.cookies)
        assert (
            c.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).json()["status"]
            == "ok"
        )
        assert c.get("/logout").json() == {"status": "ok"}
        assert c.get("/logout").json() == {"status": "failed"}
        assert (
            c.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).status_code == 403
        )
        assert "com.example.tagged" in ids(c)  # hello's data survives the logout
    # a copy of the logged-in cookie is logged out too
    with httpx.Client(base_url=store.url, cookies=stolen) as replay:
        assert (
            replay.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).status_code
            == 403
        )


def test_forged_session_cookie_is_ignored(store: ServedStore) -> None:
    with httpx.Client(base_url=store.url, cookies={"depot_qt_session": "forged.value.sig"}) as c:
        assert ids(c) == ["com.example.plain", "com.example.tagged"]
        assert (
            c.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).status_code == 403
        )


def test_purchase(store: ServedStore) -> None:
    with session(store) as c:
        before = c.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE})
        assert before.status_code == 403 and before.text == "no login"
        assert hello(c) == "ok"
        login(c)
        assert c.get("/app/purchase", params={"id": "com.example.plain"}).json() == {
            "status": "failed",
            "error": "device_id required",
        }
        by_id = c.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).json()
        assert by_id["status"] == "ok" and by_id["expiresIn"] == 600
        assert re.fullmatch(re.escape(store.url) + r"/app/download/[A-Za-z0-9._-]+\.appkg", by_id["url"])
        purchase_id = c.get("/app/list").json()[0]["purchaseId"]
        by_purchase_id = c.get(
            "/app/purchase", params={"purchaseId": purchase_id, "device_id": DEVICE}
        ).json()
        assert by_purchase_id["status"] == "ok"
        neither = c.get("/app/purchase", params={"device_id": DEVICE}).json()
        assert neither["status"] == "failed" and neither["error"]
        unknown = c.get("/app/purchase", params={"id": "com.example.nope", "device_id": DEVICE}).json()
        assert unknown["status"] == "failed"
        # native packages need the architecture: this session said none
        hidden = c.get("/app/purchase", params={"id": "com.example.native", "device_id": DEVICE}).json()
        assert hidden["status"] == "failed"
        plain = (store.repo / "apps" / "com.example.plain.appkg").read_bytes()
        for url in (by_id["url"], by_purchase_id["url"]):
            assert httpx.get(url).content == plain


def test_download_supports_ranges(store: ServedStore) -> None:
    with session(store) as c:
        login(c)
        url = c.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).json()["url"]
    full = (store.repo / "apps" / "com.example.plain.appkg").read_bytes()
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == full[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(full)}"
    head = httpx.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(full)
    assert head.headers["etag"] == '"' + hashlib.sha256(full).hexdigest() + '"'


def _link(payload: dict, expires_in: float, now: float | None = None) -> str:
    return ExpiringLinks(SECRET, "qt-download").make(payload, expires_in, now=now)


def test_expired_tampered_and_foreign_links_are_refused(store: ServedStore) -> None:
    with session(store) as c:
        login(c)
        purchase_id = c.get("/app/list").json()[0]["purchaseId"]
        url = c.get("/app/purchase", params={"purchaseId": purchase_id, "device_id": DEVICE}).json()["url"]
    token = url.rsplit("/", 1)[1].removesuffix(".appkg")
    user_id = 1
    fresh = _link({"v": purchase_id, "u": user_id, "d": DEVICE}, 600)
    assert httpx.get(f"{store.url}/app/download/{fresh}.appkg").status_code == 200
    expired = _link({"v": purchase_id, "u": user_id, "d": DEVICE}, 600, now=time.time() - 3600)
    response = httpx.get(f"{store.url}/app/download/{expired}.appkg")
    assert response.status_code == 410 and response.json() == {
        "status": "failed",
        "error": "download link expired",
    }
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    response = httpx.get(f"{store.url}/app/download/{tampered}.appkg")
    assert response.status_code == 403 and response.json()["error"] == "invalid download link"
    foreign = ExpiringLinks("another-store-key", "qt-download").make(
        {"v": purchase_id, "u": 1, "d": DEVICE}, 600
    )
    assert httpx.get(f"{store.url}/app/download/{foreign}.appkg").status_code == 403
    # a link minted for another purpose (a session cookie) is not a download link
    other_purpose = ExpiringLinks(SECRET, "qt-session").make({"v": purchase_id, "u": 1, "d": DEVICE}, 600)
    assert httpx.get(f"{store.url}/app/download/{other_purpose}.appkg").status_code == 403
    gone = _link({"v": str(uuid.uuid4()), "u": user_id, "d": DEVICE}, 600)
    assert httpx.get(f"{store.url}/app/download/{gone}.appkg").status_code == 404
    no_user = _link({"v": purchase_id, "u": 999, "d": DEVICE}, 600)
    assert httpx.get(f"{store.url}/app/download/{no_user}.appkg").status_code == 403
    assert httpx.get(f"{store.url}/app/download/{token}").status_code == 404  # not the URL handed out


@pytest.mark.parametrize(
    "path",
    [
        "/app/download/..%2Fdepot.toml",
        "/app/download/../../depot.toml",
        "/app/download/%2E%2E%2F%2E%2E%2Fvar%2Fdepot.db",
        "/app/download/..%5Cdepot.toml",
        "/app/download/x.appkg",
        "/app/download/",
        "/app/icons/..%2F..%2Frepo%2Fdepot.toml",
    ],
)
def test_no_path_escapes_the_store(store: ServedStore, path: str) -> None:
    response = httpx.get(store.url + path)
    assert response.status_code in (403, 404)
    assert b"[qt]" not in response.content and b"SQLite" not in response.content


def test_icons_and_descriptions(store: ServedStore) -> None:
    with session(store) as c:
        for category_id in ("-1", "1", "2", "9999", "", "abc", "-5"):
            icon = c.get("/category/icon", params={"id": category_id})
            assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
        assert c.get("/category/icon").status_code == 200  # missing id: the error image, not a 500
        assert c.get("/category/icon?id=-1").content != c.get("/category/icon?id=9999").content
        assert c.get("/app/icon", params={"id": "com.example.native"}).status_code == 404
        icon = c.get("/app/icon", params={"id": "com.example.native", "architecture": NEPTUNE_ARCH})
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/png"
        assert c.get("/app/icon").status_code == 404
        description = c.get("/app/description", params={"id": "com.example.plain"})
        assert description.status_code == 200
        assert description.headers["content-type"] == "text/html; charset=utf-8"
        assert description.text == "<p>The <b>plain</b> demo app: one QML file, no native code.</p>"
        assert c.get("/app/description", params={"id": "nope"}).status_code == 404
        assert c.get("/app/description").status_code == 404


def test_admin_can_purchase_too(store: ServedStore) -> None:
    with session(store) as c:
        login(c, ADMIN, ADMIN_PASSWORD)
        assert (
            c.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).json()["status"]
            == "ok"
        )


def test_plain_static_server_view(store: ServedStore) -> None:
    """What a CDN serving site/ alone answers: the view of a client that never said hello."""
    import json

    site = store.site
    routes = {(r["url"], tuple(sorted((r.get("query") or {}).items()))): r for r in load_routes(site)}
    assert routes[("/category/list", ())]["type"] == "application/json"
    all_list = json.loads((site / routes[("/app/list", ())]["file"]).read_text())
    assert [e["id"] for e in all_list] == ["com.example.plain", "com.example.tagged"]
    assert all_list[0]["iconUrl"] == "/app/icons/com.example.plain_All_"
    minus_one = routes[("/app/list", (("category_id", "-1"),))]["file"]
    assert json.loads((site / minus_one).read_text()) == all_list
    tools = json.loads((site / routes[("/app/list", (("category_id", "2"),))]["file"]).read_text())
    assert tools == []
    assert ("/app/icons/com.example.tagged_All_build_target:desktop,qt:5.15neptune", ()) in routes
    assert ("/category/icon", (("id", "-1"),)) in routes

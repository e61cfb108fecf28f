"""Hostile input and hostile pages against the Qt dialect of a real `depot serve` (issue 12):
a description written to run script on the store's origin, and another site making a
visitor's browser log in or out."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from builder.qt.pack import pack_package
from tests.support.qt import ADMIN, ADMIN_PASSWORD, DEVICE, USER, USER_PASSWORD, qt_store
from tests.support.serving import ServedStore, depot_command

HOSTILE = (
    "<p>Plays <strong>music</strong>.</p><script>window.pwned = 1</script>"
    '<img src=x onerror="window.pwned = 2">'
    '<a href="javascript:window.pwned = 3">js link</a> <a href="JaVaScRiPt&#58;window.pwned = 4">js 2</a>'
    ' <a href="https://www.qt.io/">Qt</a>'
    '<iframe src="http://203.0.113.9/"></iframe>'
    '<p onclick="window.pwned = 5" style="background:url(http://203.0.113.9/x)">Click</p>'
    '<form action="http://203.0.113.9/"><input name="password"></form><style>p { color: red }</style>'
)
BAD = (
    "<script", "window.pwned", "onerror", "onclick", "javascript", "<iframe", "<img", "203.0.113.9",
    "style", "<form", "<input",
)  # fmt: skip
HELLO = {"platform": "NEPTUNE3", "version": "2"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    with qt_store(tmp_path_factory.mktemp("qt-hostile")) as served:
        yield served


def assert_harmless(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    body = response.text
    assert "<strong>music</strong>" in body and 'href="https://www.qt.io/"' in body and "Click" in body
    assert [bad for bad in BAD if bad in body.lower()] == []
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'" and "unsafe-inline" not in policy
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"


def description(store: ServedStore, app_id: str) -> httpx.Response:
    with httpx.Client(base_url=store.url) as client:
        client.get("/hello", params=HELLO)
        return client.get("/app/description", params={"id": app_id})


def test_an_uploaded_description_never_runs_script_on_the_store(store: ServedStore) -> None:
    package = pack_package("com.example.hostile")
    with httpx.Client(base_url=store.url, auth=(ADMIN, ADMIN_PASSWORD), timeout=30) as admin:
        fields = {"description": HOSTILE, "short-description": "brief", "category": "Tools", "vendor": "Qt"}
        files = {"package": ("hostile.appkg", package, "application/octet-stream")}
        assert admin.post("/upload", data=fields, files=files).json() == {"status": "ok"}
    assert_harmless(description(store, "com.example.hostile"))
    # the same description as published in site/, for nginx, a plain static server or a CDN
    assert_harmless(httpx.get(store.url + "/qt/descriptions/com.example.hostile_All_.html"))
    published = (store.site / "qt" / "descriptions" / "com.example.hostile_All_.html").read_text()
    assert [bad for bad in BAD if bad in published.lower()] == []


def test_a_description_dropped_into_repo_is_cleaned_when_published(store: ServedStore) -> None:
    sidecar = store.repo / "apps" / "com.example.plain.appkg.toml"
    lines = [line for line in sidecar.read_text().splitlines() if not line.startswith("description")]
    sidecar.write_text("\n".join([*lines, f"description = '''{HOSTILE}'''"]) + "\n")
    built = subprocess.run(
        depot_command(
            "build", "--repo", str(store.repo), "--site", str(store.site), "--data", str(store.data)
        ),
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    assert_harmless(description(store, "com.example.plain"))
    assert_harmless(httpx.get(store.url + "/qt/descriptions/com.example.plain_All_.html"))
    assert_harmless(httpx.get(store.url + "/app/description", params={"id": "com.example.plain"}))


# -- cross-site login and logout ------------------------------------------------------------------

REFUSED = {"status": "failed", "error": "cross-site request refused"}
CREDENTIALS = {"username": USER, "password": USER_PASSWORD}


def logged_in(client: httpx.Client) -> bool:
    """Whether the client's session may purchase (403 "no login" otherwise)."""
    purchase = client.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE})
    return purchase.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a file: page
        {"Sec-Fetch-Site": "cross-site"},  # an <img> or a top-level link from another site
        {"Origin": "http://127.0.0.1:1"},  # same host, another port: another origin
    ],
)
def test_another_site_cannot_log_a_visitor_in_or_out(store: ServedStore, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=store.url) as client:
        client.get("/hello", params=HELLO)
        login = client.get("/login", params=CREDENTIALS, headers=headers)
        assert (login.status_code, login.json()) == (403, REFUSED)
        assert "set-cookie" not in login.headers
        assert client.post("/login", data=CREDENTIALS, headers=headers).status_code == 403
        assert not logged_in(client)
        assert client.get("/login", params=CREDENTIALS).json() == {"status": "ok"}  # Neptune: no headers
        for method in ("GET", "POST"):
            logout = client.request(method, "/logout", headers=headers)
            assert (logout.status_code, logout.json()) == (403, REFUSED)
        assert logged_in(client)


def test_the_store_own_pages_and_qt_clients_still_log_in(store: ServedStore) -> None:
    own = store.url  # http://127.0.0.1:<port>, the Host the requests go to
    for headers in (
        {},
        {"Origin": own, "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ):
        with httpx.Client(base_url=store.url) as client:
            client.get("/hello", params=HELLO)
            assert client.get("/login", params=CREDENTIALS, headers=headers).json() == {"status": "ok"}
            assert logged_in(client)
            assert client.get("/logout", headers=headers).json() == {"status": "ok"}
            assert not logged_in(client)


def test_another_site_cannot_upload_with_a_browsers_cached_credentials(store: ServedStore) -> None:
    before = sorted(p.name for p in (store.repo / "apps").iterdir())
    fields = {"description": "x", "short-description": "x", "category": "Tools", "vendor": "Qt"}
    files = {"package": ("x.appkg", pack_package("com.example.csrf"), "application/octet-stream")}
    response = httpx.post(
        store.url + "/upload",
        data=fields,
        files=files,
        auth=(ADMIN, ADMIN_PASSWORD),
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert (response.status_code, response.json()) == (403, REFUSED)
    assert sorted(p.name for p in (store.repo / "apps").iterdir()) == before


def test_anonymous_post_bodies_are_capped(store: ServedStore) -> None:
    """A 200 MiB multipart part to /hello was spooled to disk, 150 fields of 1 MiB cost +151 MiB:
    a POST to the Qt endpoints is read under a cap first."""

    def stream():
        for _ in range(256):  # 16 MiB without a Content-Length
            yield b"x" * 65536

    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="platform"\r\n\r\n'.encode()
    with httpx.Client(base_url=store.url, timeout=30) as c:
        streamed = c.post(
            "/hello",
            content=(part for chunks in ([head], stream()) for part in chunks),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert streamed.status_code == 413 and streamed.json()["status"] == "failed"
        fields = {f"f{i}": "x" * 1024 for i in range(150)}
        many = c.post("/hello", data=fields)
        assert many.status_code in (400, 413) and many.json()["status"] == "failed"
        assert c.post("/hello", data={"platform": "NEPTUNE3", "version": "2"}).json()["status"] == "ok"

"""The rules behind issue 12's defences, case by case (the attacks themselves run against real
servers in test_runtime_hostile.py, qt/test_qt_hostile.py and builder/test_nginx_security.py)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from runtime.accesslog import redact_target
from runtime.security import is_cross_site


def request(host: str, origin: str | None = None, fetch_site: str | None = None) -> Request:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if fetch_site is not None:
        headers.append((b"sec-fetch-site", fetch_site.encode()))
    scope = {"type": "http", "method": "GET", "path": "/login", "headers": headers, "query_string": b""}
    return Request({**scope, "scheme": "http", "server": ("store", 80)})


@pytest.mark.parametrize(
    ("host", "origin", "fetch_site", "cross"),
    [
        ("store:8514", None, None, False),  # Neptune, Qt AM, curl
        ("store:8514", "http://store:8514", "same-origin", False),
        ("Store:8514", "http://STORE:8514", None, False),
        ("store", "https://store", None, False),  # TLS terminated in front
        ("store", "http://store:80", None, False),
        ("store:443", "https://store", None, False),
        ("store", None, "none", False),  # typed into the address bar
        ("store", None, "same-site", False),
        ("store:8514", "http://store:8515", None, True),
        ("store", "http://store:8080", None, True),
        ("store:443", "http://store", None, True),
        ("store", "http://evil.example", None, True),
        ("store", "http://store.evil.example", None, True),
        ("store", "null", None, True),
        ("store", "file://", None, True),
        ("store", "garbage", None, True),
        ("", "http://store", None, True),
        ("store", None, "cross-site", True),
        ("store", "http://store", "cross-site", True),
    ],
)
def test_what_counts_as_cross_site(
    host: str, origin: str | None, fetch_site: str | None, cross: bool
) -> None:
    assert is_cross_site(request(host, origin, fetch_site)) is cross


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/login?username=a&password=pw", "/login?username=a&password=***"),
        ("/login?username=a&passw%6Frd=pw", "/login?username=a&password=***"),
        ("/login?PassWord=pw&passwd=pw", "/login?PassWord=***&passwd=***"),
        ("/x?api%5Ftoken=t&my+secret=s&access_token=", "/x?api_token=***&my%20secret=***&access_token=***"),
        ("/x?a=password&b=token", "/x?a=password&b=token"),  # values are not keys
        ("/x?password", "/x?password=***"),
        ("/app/list?category_id=2&filter=x%20y", "/app/list?category_id=2&filter=x%20y"),
        ("/app/download/eyJ2IjoiMDQxYzAw.aBc.SiGnAtUrE.appkg", "/app/download/eyJ2Ijoi..."),
        ("/app/download/short", "/app/download/short"),
        ("/healthz", "/healthz"),
    ],
)
def test_what_the_access_log_keeps(target: str, logged: str) -> None:
    assert redact_target(target) == logged

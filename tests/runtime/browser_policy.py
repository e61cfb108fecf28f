"""The headers issue 12 asks for on every answer, checked the same way for `depot serve` and for
the generated nginx block: each exactly once, with the values the issue names."""

from __future__ import annotations

import httpx


def csp_directives(policy: str) -> dict[str, str]:
    return dict([*part.strip().split(" ", 1), ""][:2] for part in policy.split(";") if part.strip())


def assert_browser_policy(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    policies = response.headers.get_list("content-security-policy")
    assert len(policies) == 1, (where, policies)
    csp = csp_directives(policies[0])
    assert csp["default-src"] == "'self'", where
    assert csp["script-src"] == "'self'", where  # no 'unsafe-inline', no 'unsafe-eval', no hosts
    assert csp["style-src"] == "'self'", where
    assert csp["img-src"] == "'self' data:", where
    assert csp["object-src"] == "'none'", where
    assert csp["base-uri"] == "'none'", where
    assert csp["frame-ancestors"] == "'none'", where
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], where
    assert response.headers.get_list("x-frame-options") == ["DENY"], where
    assert response.headers.get_list("referrer-policy") == ["no-referrer"], where

"""Generate an nginx server block from the route table (:mod:`builder.routes`), so nginx serves
exactly what the runtime's static mount serves (same URLs, same files, same media types) and
passes every other request to ``depot serve``. Only the table's rows become locations: the
table's own files (routes.json, routes/*.json) are not routes, and nginx serves nothing of
site/ that no row names (the rest goes to the runtime, which does not serve them either)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from builder.routes import load_routes
from builder.webpolicy import SECURITY_HEADERS

IMMUTABLE_PREFIXES = ("files/", "assets/")
# The only URLs that take large bodies: Qt's staff upload, shipper's chunks, the portal's APKs.
UPLOAD_PREFIXES = ("/upload", "/api/v1/maintainers/chunked_upload/", "/portal/api/uploads/")

# The access log `depot stats import-log` reads (docs/console.md, "Download statistics"):
# nginx's "combined" format plus the Range header and the upstream address ("-" when nginx
# answered from site/ itself; an answer the runtime gave was counted by the runtime).
LOG_FORMAT = "depot_downloads"
ACCESS_LOG = "/var/log/nginx/depot-access.log"
LOG_FORMAT_LINE = (
    f'log_format {LOG_FORMAT} \'$remote_addr - $remote_user [$time_local] "$request" $status '
    '$body_bytes_sent "$http_referer" "$http_user_agent" "$http_range" "$upstream_addr"\';'
)


# Several runtime nodes (``depot nginx --node A --node B``): round robin, and a node that fails
# MAX_FAILS times within FAIL_TIMEOUT is left out for FAIL_TIMEOUT (nginx's passive checks). A
# request that fails to reach a node, or whose answer does not come, goes to the next one; nginx
# never does that for a POST once it was sent (no ``non_idempotent``). A chunk PUT, which nginx
# counts as idempotent, cannot be sent twice either: the upload locations stream bodies to the
# runtime (``proxy_request_buffering off``, with HTTP/1.1 so a chunked body streams as well),
# and nginx cannot resend a body it has started to stream. What is retried: any request that
# never reached a node (connection refused or timed out: how a dead node is skipped), and a GET
# or HEAD whose node failed before answering. (A PUT or DELETE outside the upload locations,
# which the runtime only refuses, may be retried as HTTP allows for idempotent methods.)
STREAM_CHUNKED = "        proxy_http_version 1.1;  # a chunked body streams too: never resent"
MAX_FAILS = 3
FAIL_TIMEOUT = "15s"
CONNECT_TIMEOUT = "5s"  # a node whose host is gone: the next node, not nginx's 60 s
NODE = re.compile(r"^(unix:/[^\s;{}'\"#]+|[A-Za-z0-9._-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?)$")


def check_node(node: str) -> str:
    """``HOST[:PORT]``, ``[IPv6][:PORT]`` or ``unix:/path``; anything else (which could end the
    directive and add others) is refused."""
    if not NODE.match(node):
        raise ValueError(f"{node!r} is not HOST:PORT, [IPv6]:PORT or unix:/PATH")
    return node


def _upstream(nodes: Sequence[str]) -> list[str]:
    if len(nodes) == 1:
        servers = [f"    server {nodes[0]};"]
    else:
        servers = [f"    server {node} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT};" for node in nodes]
    return ["upstream depot_runtime {", *servers, "}"]


def _failover(nodes: Sequence[str]) -> list[str]:
    """The server block's retry rule with several nodes (nothing for one: nowhere to go)."""
    if len(nodes) == 1:
        return []
    return [
        "    # a request that never reached a node, or got no answer, goes to the next node; never a",
        "    # POST that was sent, nor an upload whose body had started to stream (see the uploads)",
        "    proxy_next_upstream error timeout;",
        f"    proxy_connect_timeout {CONNECT_TIMEOUT};",
    ]


# Every location that proxies passes the client's own Host, port included, and how it reached
# nginx: the runtime builds absolute URLs from them (Qt's iconUrl and purchase url, feed links),
# and a device must be able to fetch what it is given. ``$host`` would drop the port (a store on
# :8514 would hand out :80 URLs) and the upstream's name ``depot_runtime`` resolves nowhere.
PROXY_HEADERS = (
    "proxy_set_header Host $depot_host;",
    "proxy_set_header X-Forwarded-Host $depot_host;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
)


# The browser policy of every answer (builder/webpolicy.py, the runtime sends the same). nginx
# drops the server block's add_header lines in a location that has add_header lines of its own,
# so each such location repeats them; `always` puts them on error answers too. A proxied answer
# carries the runtime's copies, which nginx hides so that each header is sent once, whatever
# location ends up answering (X-Accel-Redirect hands the body to /_depot_site/).
def _security_headers(indent: str) -> list[str]:
    return [f"{indent}add_header {name} {_quote(value)} always;" for name, value in SECURITY_HEADERS]


def _proxy(indent: str) -> list[str]:
    return [
        indent + "proxy_pass http://depot_runtime;",
        *(indent + h for h in PROXY_HEADERS),
        *(f"{indent}proxy_hide_header {name};" for name, _value in SECURITY_HEADERS),
    ]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_config(
    site: Path,
    upstream: str | Sequence[str],
    server_name: str = "_",
    listen: str = "80",
) -> str:
    """The server block for the route table of ``site`` (sharded or a schema-1 single file;
    FileNotFoundError when there is none); ``upstream`` is the runtime's address, or the
    addresses of several runtime nodes (an upstream with passive health checks and failover,
    above)."""
    nodes = [upstream] if isinstance(upstream, str) else list(upstream)
    if not nodes:
        raise ValueError("no runtime node to proxy to")
    for node in nodes:
        check_node(node)
    several = len(nodes) > 1
    plain: list[dict] = []
    with_query: dict[str, list[dict]] = {}
    for route in load_routes(site):
        if route.get("query"):
            with_query.setdefault(route["url"], []).append(route)
        else:
            plain.append(route)
    lines = [
        "# Generated by `depot nginx` from the route table (site/routes.json and the shards it names);",
        "# regenerate after a build that adds URLs.",
        *_upstream(nodes),
        LOG_FORMAT_LINE,
        "",
        "server {",
        f"    listen {listen};",
        f"    access_log {ACCESS_LOG} {LOG_FORMAT};",
        f"    server_name {server_name};",
        f"    root {site};",
        "    # Bodies are small everywhere but where uploads go (below): nginx refuses the rest",
        "    # before they reach the runtime, whoever sends them.",
        "    client_max_body_size 1m;",
        *_security_headers("    "),
        "    gzip on;",
        "    gzip_types application/json text/css text/javascript;",
        "    # the client's Host header as sent (with its port); the server name when it sent none",
        "    set $depot_host $http_host;",
        '    if ($depot_host = "") {',
        "        set $depot_host $host;",
        "    }",
        *_failover(nodes),
        "",
        "    # Downloads the runtime authorised (signed URLs, counted downloads) are handed back",
        "    # to nginx with X-Accel-Redirect: set DEPOT_ACCEL_REDIRECT=/_depot_site/ for depot serve.",
        "    location /_depot_site/ {",
        "        internal;",
        f"        alias {site}/;",
        "    }",
        "",
    ]
    for route in sorted(plain, key=lambda r: r["url"]):
        if route["url"] in with_query:
            continue  # a URL that also has query-string variants is answered by the runtime
        cache = (
            "public, max-age=31536000, immutable"
            if route["file"].startswith(IMMUTABLE_PREFIXES)
            else "no-cache"
        )
        if route.get("status", 200) != 200:
            # A static error body: nginx answers with the route's status and the file as its page.
            lines += [
                f"    location = {_quote(route['url'])} {{",
                f"        error_page {route['status']} /_depot_site/{route['file']};",
                f"        return {route['status']};",
                "    }",
            ]
            continue
        urls = [route["url"]]
        if route["url"].endswith("/index.html"):
            urls.append(route["url"].removesuffix("index.html"))  # /apps/x/ serves /apps/x/index.html
        for url in urls:
            lines += [
                f"    location = {_quote(url)} {{",
                "        default_type " + _quote(route["type"]) + ";",
                "        types { }",
                f'        add_header Cache-Control "{cache}";',
                *_security_headers("        "),
                f"        try_files /{route['file']} @depot;",
                "    }",
            ]
    for url, routes in sorted(with_query.items()):
        # nginx cannot select a file by query string with `location`; the runtime answers these.
        lines += [f"    location = {_quote(url)} {{", *_proxy("        "), "    }"]
        del routes
    lines += [
        "",
        "    location / {",
        *_proxy("        "),
        "    }",
        *(
            line
            for prefix in UPLOAD_PREFIXES
            for line in (
                f"    location ^~ {prefix} {{",
                *_proxy("        "),
                "        client_max_body_size 5g;",
                "        proxy_request_buffering off;  # streamed to the runtime, which caps and hashes it",
                *([STREAM_CHUNKED] if several else []),
                "    }",
            )
        ),
        "    location @depot {",
        *_proxy("        "),
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"

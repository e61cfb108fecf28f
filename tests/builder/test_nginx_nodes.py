"""`depot nginx --node …` in a real nginx, in front of fake nodes that record what reaches them:
round robin over the nodes from every proxying location, a dead node skipped, a GET whose node
died passed to the next node, and never a POST or an upload PUT sent to a second node once the
first one had it (the real nodes are tests/runtime/test_nodes.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from builder.nginx import nginx_config
from tests.support.nginx import NGINX
from tests.support.nodes import UPLOADS, FakeNode, Front, fake_nodes, nginx_in_front
from tests.support.serving import depot_command, free_port

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/setup-system)")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "routes.json").write_text(json.dumps({"routes": []}))
    return site


@pytest.fixture
def three(tmp_path: Path, site: Path) -> Iterator[tuple[list[FakeNode], Front]]:
    with (
        fake_nodes(3) as nodes,
        nginx_in_front(tmp_path / "nginx", site, [n.address for n in nodes]) as front,
    ):
        yield nodes, front


def total(nodes: list[FakeNode], method: str, path: str) -> int:
    return sum(node.paths(method).count(path) for node in nodes)


def test_one_node_is_the_block_it_always_was(site: Path) -> None:
    config = nginx_config(site, "127.0.0.1:8000")
    assert config == nginx_config(site, ["127.0.0.1:8000"])
    assert "upstream depot_runtime {\n    server 127.0.0.1:8000;\n}\n" in config
    assert "proxy_next_upstream" not in config and "max_fails" not in config


def test_the_generated_upstream(site: Path) -> None:
    config = nginx_config(site, ["10.0.0.1:8000", "10.0.0.2:8000", "[::1]:8000"])
    assert (
        "upstream depot_runtime {\n"
        "    server 10.0.0.1:8000 max_fails=3 fail_timeout=15s;\n"
        "    server 10.0.0.2:8000 max_fails=3 fail_timeout=15s;\n"
        "    server [::1]:8000 max_fails=3 fail_timeout=15s;\n}\n"
    ) in config
    assert config.count("proxy_next_upstream error timeout;") == 1  # the server's, every location's
    assert "non_idempotent" not in config
    proxies = config.count("proxy_pass ")
    assert proxies == config.count("proxy_pass http://depot_runtime;") and proxies >= 5
    uploads = config.split("location ^~ ")[1:]
    assert len(uploads) == 3
    for block in uploads:
        block = block.split("\n    }", 1)[0]
        assert "proxy_request_buffering off;" in block and "proxy_http_version 1.1;" in block


def test_the_command_takes_nodes_and_refuses_what_is_not_an_address(site: Path) -> None:
    def nginx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            depot_command("nginx", "--site", str(site), *args), capture_output=True, text=True, check=False
        )

    two = nginx("--node", "127.0.0.1:8001", "--node", "127.0.0.1:8002")
    assert two.returncode == 0, two.stderr
    assert "server 127.0.0.1:8001 max_fails=3" in two.stdout and "server 127.0.0.1:8002 max" in two.stdout
    assert nginx().stdout == nginx("--upstream", "127.0.0.1:8000").stdout  # the default, as before
    both = nginx("--upstream", "127.0.0.1:8000", "--node", "127.0.0.1:8001")
    assert both.returncode != 0 and "either --upstream or --node" in both.stderr
    for bad in ("127.0.0.1:8001; include /etc/passwd", "a:1 backup", "x{", ""):
        refused = nginx("--node", bad)
        assert refused.returncode != 0 and "is not HOST:PORT" in refused.stderr, bad


def test_round_robin_over_the_nodes_from_every_location(three: tuple[list[FakeNode], Front]) -> None:
    nodes, front = three
    for path in ("/rr/page", UPLOADS + "rr/"):  # location / and an upload location
        answered = [httpx.get(front.url + path).text for _ in range(6)]
        assert sorted(answered) == sorted(n.name for n in nodes for _ in range(2)), answered
        assert [total([n], "GET", path) for n in nodes] == [2, 2, 2]
    posted = {httpx.post(front.url + UPLOADS + "rr/", content=b"x").text for _ in range(3)}
    assert posted == {n.name for n in nodes}


def test_a_get_the_node_took_and_dropped_goes_to_the_next_node(three: tuple[list[FakeNode], Front]) -> None:
    nodes, front = three
    answer = httpx.get(front.url + "/drop/page", timeout=30)
    assert answer.status_code == 502  # every node dropped it: nginx tried each once
    # nginx's own record of its tries ($upstream_addr lists every node it passed the request to)
    # is the judge; what the fake nodes recorded must agree with it: none was sent it twice.
    # (CI once saw a fake node not record a try; the error log says what nginx saw then.)
    errors = (front.access_log.parent / "error.log").read_text(errors="replace")
    tried = front.logged('"GET /drop/page ')
    assert len(tried) == 1, tried
    addresses = [a.strip() for a in tried[0].rsplit('"', 2)[-2].split(",")]
    assert sorted(addresses) == sorted(n.address for n in nodes), (addresses, errors)
    assert all(total([n], "GET", "/drop/page") <= 1 for n in nodes), errors


@pytest.mark.parametrize(
    ("method", "path", "chunked"),
    [
        ("POST", "/drop/form", False),  # location /: the body is buffered, but a POST is never resent
        ("POST", UPLOADS + "drop/", False),  # shippy's completion
        ("PUT", UPLOADS + "drop/", False),  # a chunk: idempotent to nginx, but its body streams
        ("PUT", UPLOADS + "drop/", True),  # the same, with a chunked request body
    ],
)
def test_a_request_with_a_body_is_never_sent_to_a_second_node(
    three: tuple[list[FakeNode], Front], method: str, path: str, chunked: bool
) -> None:
    nodes, front = three
    body = b"chunk bytes " * 1000
    content = iter([body[:5000], body[5000:]]) if chunked else body
    answer = httpx.request(method, front.url + path, content=content)
    assert answer.status_code == 502
    assert total(nodes, method, path) == 1, [n.received for n in nodes]
    assert [r.body for n in nodes for r in n.received if r.path == path] == [body]


def test_a_dead_node_is_skipped_even_for_posts(tmp_path: Path, site: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: the connection is refused
    with (
        fake_nodes(2) as alive,
        nginx_in_front(tmp_path / "nginx", site, [dead, *(n.address for n in alive)]) as front,
    ):
        answers = [httpx.post(front.url + UPLOADS + "x/", content=b"body") for _ in range(6)]
        answers += [httpx.put(front.url + UPLOADS + "x/", content=b"body") for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 12
        assert {a.text for a in answers} == {"fake1", "fake2"}
        assert total(alive, "POST", UPLOADS + "x/") == 6 and total(alive, "PUT", UPLOADS + "x/") == 6
        # nginx's log names the dead node where it tried it first, and who answered
        tried = front.logged(UPLOADS + "x/", count=12)
        assert any(dead in line for line in tried)
        assert set(front.upstreams("POST", UPLOADS) + front.upstreams("PUT", UPLOADS)) == {
            n.address for n in alive
        }

"""Three real `depot serve` nodes (processes on free ports) on one store: the same repo/, site/
and data folder, one PostgreSQL database, behind a real nginx running what `depot nginx --node …`
generates (round robin). What one node did, every other node knows: an upload's chunks may land
on any node and it is published once; a Qt login made on one node buys on another; failed logins
and request rates count once, whichever node takes them; concurrent uploads on different nodes
each publish once (the build lock); and a node killed with SIGKILL in the middle of a chunk
loses nothing the client cannot resend elsewhere.

Nothing is timed: the waits only end a broken run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from builder.routes import load_routes
from runtime.database import BUILD_LOCK, connect
from runtime.ratelimit import stored_key
from tests.support.nginx import NGINX
from tests.support.nodes import (
    UPLOADS,
    Front,
    Node,
    Store,
    Uploader,
    nginx_in_front,
    running_nodes,
    start_node,
    stop_node,
    wait_for,
    wait_until,
)
from tests.support.postgres import PostgresCluster
from tests.support.qt import DEVICE, NEPTUNE_ARCH
from tests.support.serving import copy_demo_repo, free_port, point_base_url_at
from tests.support.shipper import ota_zip, sha256

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/setup-system)"),
]

MB = 1_000_000
FEED = "/api/v1/updater/los/bullhead/gapps/"
PASSWORD = "node-test-password"
QT_USER, LIMITED, RACER = "qtuser", "limited", "racer"
MAINTAINERS = ("m_direct", "m_front", "m_kill", "m_rate", "m_c1", "m_c2", "m_c3")
USER_RATE = 20  # shipper requests per maintainer and day (every test's maintainer uses fewer)
# Day-long windows, so that a window boundary cannot fall inside the module in practice.
ENV = {
    "DEPOT_LOGIN_ACCOUNT_RATE": "3/day",  # failures per (account, address)
    "DEPOT_LOGIN_ADDRESS_RATE": "off",
    "DEPOT_SHIPPER_ANON_RATE": "off",
    "DEPOT_SHIPPER_USER_RATE": f"{USER_RATE}/day",
}


@dataclass
class Cluster:
    store: Store
    nodes: list[Node]
    front: Front
    folder: Path

    def feed_names(self, url: str | None = None) -> list[str]:
        answer = httpx.get((url or self.front.url) + FEED, timeout=60)
        assert answer.status_code == 200, answer.text
        return [entry["filename"] for entry in answer.json()["response"]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("nodes")
    database = postgres.create_database("nodes")
    try:
        repo = copy_demo_repo(folder / "repo")
        front_port = free_port()
        point_base_url_at(repo, f"http://127.0.0.1:{front_port}")  # the feeds' links: through nginx
        store = Store(repo, folder / "site", folder / "var", database, ENV)
        # all three at once on an empty database, data folder and site: they race for the
        # schema, secret.key and the first build, and must agree
        with running_nodes(store, folder, 3) as nodes:
            store.add_user(QT_USER, PASSWORD)
            store.add_user(LIMITED, PASSWORD)
            store.add_user(RACER, PASSWORD)
            for name in MAINTAINERS:
                store.add_user(name, PASSWORD, devices="bullhead")
            addresses = [node.address for node in nodes]
            with nginx_in_front(folder / "nginx", store.site, addresses, port=front_port) as front:
                yield Cluster(store, nodes, front, folder)
            for node in nodes:
                assert_no_failed_build(node)
    finally:
        postgres.drop_database(database)


def assert_no_failed_build(node: Node) -> None:
    log = node.log_text()
    for bad in ("the catalog was not rebuilt", "Traceback", "ERROR"):
        assert bad not in log, f"{node.name}: {bad!r} in its log:\n{log[-6000:]}"


def assert_published_once(cluster: Cluster, name: str, data: bytes, upload_id: str) -> None:
    """The build is in repo/builds once, intact, with its checksum; the feed lists it once, on
    every node and through nginx alike; the upload and its scratch file are gone."""
    repo = cluster.store.repo
    copies = sorted(p.relative_to(repo).as_posix() for p in repo.rglob(name))
    assert copies == [f"builds/bullhead/{name}"]
    published = repo / "builds" / "bullhead" / name
    assert hashlib.sha256(published.read_bytes()).hexdigest() == sha256(data)
    assert published.read_bytes() == data
    assert (repo / "builds" / "bullhead" / f"{name}.sha256").read_text() == f"{sha256(data)}  {name}\n"
    assert cluster.feed_names().count(name) == 1
    for node in cluster.nodes:
        assert cluster.feed_names(node.url).count(name) == 1, node.name
    for _ in cluster.nodes:  # the feed's download link, through nginx: each node in turn serves it
        served = httpx.get(f"{cluster.front.url}/download_check/bullhead/{name[:-4]}/", timeout=60)
        assert served.status_code == 200 and served.content == data
    scratch = cluster.store.data / "shipper-uploads"
    assert not (scratch / f"{upload_id}.part").exists()
    assert query(cluster, "SELECT count(*) FROM shipper_uploads WHERE id = ?", [upload_id]) == 0


def query(cluster: Cluster, sql: str, params: Sequence[object] = ()) -> Any:
    """One value from the shared database, read the way a fourth node would."""
    with closing(connect(cluster.store.database)) as db:
        return db.value(sql, params)


def build_name(day: str) -> str:
    return f"Bliss-v15-bullhead-OFFICIAL-gapps-2021{day}.zip"


# -- chunked uploads across nodes -------------------------------------------------------------------


def test_chunks_sent_to_different_nodes_publish_the_build_once(cluster: Cluster, tmp_path: Path) -> None:
    nodes = cluster.nodes
    name = build_name("0301")
    data = ota_zip(tmp_path / name, size=3 * MB + 12_345, seed="direct")
    client = Uploader.login(nodes[0].url, "m_direct", PASSWORD)
    # chunk n to node n % 3 (the first starts the upload on node1), with 4 chunks
    upload_id = client.send([n.url for n in nodes], name, data, chunk=MB)
    for node in nodes[1:]:
        assert f"{UPLOADS}{upload_id}/" in node.requests("PUT", UPLOADS), node.name
    assert nodes[0].requests("PUT", UPLOADS).count(f"{UPLOADS}{upload_id}/") == 1  # the fourth chunk
    assert client.offset(nodes[2].url, upload_id) == len(data)
    done = client.complete(nodes[1].url, upload_id, sha256(data))  # completed on yet another node
    assert done.status_code == 200, done.text
    assert done.json()["message"] == "Build has been uploaded for device LG Nexus 5X (bullhead)!"
    assert_published_once(cluster, name, data, upload_id)
    # completing again, anywhere, publishes nothing more
    again = client.complete(nodes[2].url, upload_id, sha256(data))
    assert again.status_code == 404
    assert_published_once(cluster, name, data, upload_id)


def test_chunks_through_nginx_round_robin_land_on_every_node(cluster: Cluster, tmp_path: Path) -> None:
    front = cluster.front
    name = build_name("0302")
    data = ota_zip(tmp_path / name, size=3 * MB, seed="front")
    client = Uploader.login(front.url, "m_front", PASSWORD)
    # six chunks, all to nginx; every other one's body chunked (no Content-Length), which nginx
    # streams to the node too (HTTP/1.1 to the upstream)
    upload_id = client.send([front.url], name, data, chunk=500_000, chunked=True)
    done = client.complete(front.url, upload_id, sha256(data))
    assert done.status_code == 200, done.text
    # nginx's log names the node of each request (it logs a request after answering it: wait for
    # the lines); the nodes' own logs agree
    chunk = f"{UPLOADS}{upload_id}/"
    wait_until(lambda: len(front.upstreams("PUT", chunk)) == 5, what="nginx logging the chunks")
    chunk_nodes = front.upstreams("PUT", chunk)  # five: the first chunk has no id in its URL yet
    assert set(chunk_nodes) == {node.address for node in cluster.nodes}
    for node in cluster.nodes:
        took = node.requests("PUT", chunk)
        assert len(took) == chunk_nodes.count(node.address), node.name
    assert_published_once(cluster, name, data, upload_id)


def test_concurrent_uploads_on_different_nodes_each_publish_once(cluster: Cluster, tmp_path: Path) -> None:
    """Three maintainers upload at once, each chunk to another node, and complete at once on
    three different nodes: three rebuilds race for the build lock. Every build is published
    once; each client sees its build in the feed of the node that answered it."""
    nodes = cluster.nodes
    jobs = []
    for k, user in enumerate(("m_c1", "m_c2", "m_c3")):
        name = build_name(f"04{k + 10}")
        jobs.append((k, user, name, ota_zip(tmp_path / name, size=2 * MB + 1000 * k, seed=f"concurrent{k}")))

    def upload(job: tuple[int, str, str, bytes]) -> tuple[str, str, bytes, str, list[str]]:
        k, user, name, data = job
        client = Uploader.login(nodes[k].url, user, PASSWORD)
        order = [nodes[(k + j) % 3].url for j in range(3)]
        upload_id = client.send(order, name, data, chunk=700_000)
        finishing = nodes[(k + 1) % 3]
        done = client.complete(finishing.url, upload_id, sha256(data))
        assert done.status_code == 200, done.text
        return name, upload_id, data, finishing.url, cluster.feed_names(finishing.url)

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(upload, jobs))
    for name, upload_id, data, _url, seen in results:
        assert seen.count(name) == 1  # the answer came after the build that holds it
        assert_published_once(cluster, name, data, upload_id)
    assert_site_consistent(cluster)
    for node in nodes:
        assert_no_failed_build(node)


def assert_site_consistent(cluster: Cluster) -> None:
    """Every route of site/routes.json names a file that is there, the feed file is what nginx
    and every node answer, and no build temp or scratch file is left over."""
    site = cluster.store.site
    routes = load_routes(site)
    for route in routes:
        assert (site / route["file"]).is_file(), route
    feed_file = next(r["file"] for r in routes if r["url"] == FEED and not r.get("query"))
    expected = json.loads((site / feed_file).read_bytes())
    assert httpx.get(cluster.front.url + FEED).json() == expected
    for node in cluster.nodes:
        assert httpx.get(node.url + FEED).json() == expected, node.name
    assert sorted(p.name for p in (cluster.store.data / "shipper-uploads").iterdir()) == []
    names = [e["filename"] for e in expected["response"]]
    assert len(names) == len(set(names))


# -- Qt sessions ---------------------------------------------------------------------------------------


def test_a_qt_login_on_one_node_buys_on_another(cluster: Cluster) -> None:
    one, two, three = (node.url for node in cluster.nodes)
    hello = httpx.get(
        one + "/hello", params={"platform": "NEPTUNE3", "version": "2", "architecture": NEPTUNE_ARCH}
    )
    assert hello.json() == {"status": "ok"}
    cookie = {"depot_qt_session": hello.cookies["depot_qt_session"]}
    login = httpx.get(two + "/login", params={"username": QT_USER, "password": PASSWORD}, cookies=cookie)
    assert login.json() == {"status": "ok"}
    cookie = {"depot_qt_session": login.cookies["depot_qt_session"]}  # now naming the login
    bought = httpx.get(
        three + "/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}, cookies=cookie
    )
    assert bought.json()["status"] == "ok", bought.text
    download = httpx.get(one + httpx.URL(bought.json()["url"]).raw_path.decode())  # the link works anywhere
    assert download.status_code == 200
    assert download.content == (cluster.store.repo / "apps" / "com.example.plain.appkg").read_bytes()
    # and through nginx, whichever node answers
    for _ in range(3):
        again = httpx.get(
            cluster.front.url + "/app/purchase",
            params={"id": "com.example.plain", "device_id": DEVICE},
            cookies=cookie,
        )
        assert again.json()["status"] == "ok"
    # a logout on one node logs the cookie out on every node (the session row is gone)
    assert httpx.get(one + "/logout", cookies=cookie).json() == {"status": "ok"}
    for url in (one, two, three):
        refused = httpx.get(
            url + "/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}, cookies=cookie
        )
        assert refused.status_code == 403


# -- limits ----------------------------------------------------------------------------------------------


def rate_count(cluster: Cluster, key: str) -> int:
    return int(query(cluster, "SELECT count FROM rate_limits WHERE key = ?", [stored_key(key)]) or 0)


def test_failed_logins_count_once_across_nodes(cluster: Cluster) -> None:
    """DEPOT_LOGIN_ACCOUNT_RATE=3/day: three failures in all, one per node, lock the account
    on every node (not three per node)."""
    for node in cluster.nodes:
        failed = qt_login(node.url, LIMITED, "wrong")
        assert failed.json() == {"status": "authentication-failed"}, node.name  # counted, not refused
    assert rate_count(cluster, f"login-pair:{LIMITED}:127.0.0.1") == 3
    for url in [node.url for node in cluster.nodes] + [cluster.front.url]:
        refused = qt_login(url, LIMITED, PASSWORD)  # the right password, but locked
        assert refused.json()["status"] == "authentication-failed"
        assert "too many failed logins" in refused.json()["error"]
        assert int(refused.headers["retry-after"]) >= 1
        shippy = httpx.post(
            url + "/api/v1/maintainers/login/", data={"username": LIMITED, "password": PASSWORD}
        )
        assert shippy.status_code == 429
    assert rate_count(cluster, f"login-pair:{LIMITED}:127.0.0.1") == 3  # refusals are not counted


def test_concurrent_failed_logins_on_all_nodes_get_three_checks_in_all(cluster: Cluster) -> None:
    """Eighteen wrong passwords at once, six on each node: three are checked (and counted), the
    other fifteen refused unchecked. (The limit used to be checked before and counted after the
    password check, so every concurrent attempt was checked: 18 guesses where 3 were allowed.)"""
    urls = [node.url for node in cluster.nodes] * 6
    with ThreadPoolExecutor(len(urls)) as pool:
        answers = [a.json() for a in pool.map(lambda url: qt_login(url, RACER, "wrong"), urls)]
    checked = [a for a in answers if a == {"status": "authentication-failed"}]
    refused = [a for a in answers if "too many failed logins" in a.get("error", "")]
    assert (len(checked), len(refused)) == (3, 15), answers
    assert rate_count(cluster, f"login-pair:{RACER}:127.0.0.1") == 3
    assert "too many failed logins" in qt_login(cluster.front.url, RACER, PASSWORD).json()["error"]


def qt_login(url: str, name: str, password: str) -> httpx.Response:
    return httpx.get(url + "/login", params={"username": name, "password": password}, timeout=60)


def test_a_maintainers_request_rate_counts_once_across_nodes(cluster: Cluster) -> None:
    """DEPOT_SHIPPER_USER_RATE=20/day for one maintainer's token, used on three nodes at once:
    twenty requests in all are answered, every other one is throttled, on every node."""
    client = Uploader.login(cluster.nodes[0].url, "m_rate", PASSWORD)
    urls = [node.url for node in cluster.nodes] * 10

    def check(url: str) -> int:
        return httpx.get(
            url + "/api/v1/maintainers/token_check/", headers=client.auth, timeout=60
        ).status_code

    with ThreadPoolExecutor(len(urls)) as pool:
        statuses = list(pool.map(check, urls))
    assert (statuses.count(200), statuses.count(429)) == (USER_RATE, len(urls) - USER_RATE), statuses
    for url in [node.url for node in cluster.nodes] + [cluster.front.url]:
        throttled = httpx.get(url + "/api/v1/maintainers/token_check/", headers=client.auth)
        assert throttled.status_code == 429, url
        assert int(throttled.headers["retry-after"]) >= 1
    user_id = query(cluster, "SELECT id FROM users WHERE name = ?", ["m_rate"])
    assert rate_count(cluster, f"shipper:user:{user_id}") == len(urls) + 4  # every request counts


# -- a node killed in the middle of a chunk --------------------------------------------------------------


def test_a_node_killed_mid_chunk_and_the_upload_finished_elsewhere(cluster: Cluster, tmp_path: Path) -> None:
    """A fourth node on the same store takes the start of an upload and part of its next chunk,
    and is killed (SIGKILL) while the chunk's bytes arrive. The client asks nginx (the dead node
    and two live ones behind it) where the upload stands, resends from there and completes:
    the build is published intact, once."""
    store = cluster.store
    victim = wait_for(start_node(store, "victim", cluster.folder))
    try:
        addresses = [victim.address, cluster.nodes[0].address, cluster.nodes[1].address]
        with nginx_in_front(tmp_path / "nginx", store.site, addresses) as front:
            name = build_name("0501")
            data = ota_zip(tmp_path / name, size=3 * MB + 777, seed="kill")
            client = Uploader.login(victim.url, "m_kill", PASSWORD)
            first = client.put(victim.url, name, data[:MB], 0, len(data))
            assert first.status_code == 200, first.text
            upload_id = first.json()["id"]
            part = store.data / "shipper-uploads" / f"{upload_id}.part"
            # the rest of the file as one chunk, of which 800 kB are sent: the victim writes
            # some of them to the part file, beyond the acknowledged offset
            conn = client.start_chunk_cut_off(victim, name, data, MB, upload_id, sent=800_000)
            try:
                wait_until(lambda: part.stat().st_size > MB, what="the victim writing the chunk")
                victim.kill()
            finally:
                conn.close()
            assert part.stat().st_size > MB  # bytes nobody acknowledged are in the file
            offset = client.offset(front.url, upload_id)
            assert offset == MB  # the cut-off chunk never counted
            client.send([front.url], name, data, chunk=MB, upload_id=upload_id, start=offset)
            done = client.complete(front.url, upload_id, sha256(data))
            assert done.status_code == 200, done.text
        # nginx has stopped, its log is whole: everything after the kill was answered by a live
        # node (the offset, three chunks, the completion), some after trying the dead one first
        answered = [*front.upstreams("GET", UPLOADS), *front.upstreams("PUT", UPLOADS)]
        answered += front.upstreams("POST", UPLOADS)
        assert len(answered) == 1 + 3 + 1, front.access_log.read_text()
        assert victim.address not in answered
        assert_published_once(cluster, name, data, upload_id)
    finally:
        stop_node(victim)


# -- the build lock ------------------------------------------------------------------------------------


def test_a_starting_node_builds_under_the_build_lock(cluster: Cluster) -> None:
    """The build `depot serve` runs before it serves takes the nodes' build lock as every other
    build does: while another node holds it (here: the test), a node that starts waits for it
    instead of writing site/ beside that node's build."""
    holder = connect(cluster.store.database)
    try:
        holder.execute("SELECT pg_advisory_lock(?)", [BUILD_LOCK])
        late = start_node(cluster.store, "late", cluster.folder)
        try:
            wait_until(lambda: waiting_for_build_lock(cluster) == 1, what="the starting node waiting")
            with pytest.raises(httpx.TransportError):
                httpx.get(late.url + "/healthz")  # not serving: still before its build
            holder.execute("SELECT pg_advisory_unlock(?)", [BUILD_LOCK])
            wait_for(late)
            assert waiting_for_build_lock(cluster) == 0
            assert_no_failed_build(late)
        finally:
            stop_node(late)
    finally:
        holder.close()


def waiting_for_build_lock(cluster: Cluster) -> int:
    """Sessions of the store's database that wait for the build lock."""
    return int(
        query(
            cluster,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND objid = ?",
            [BUILD_LOCK & 0xFFFF_FFFF],
        )
    )

"""Hostile clients against a real `depot serve` on 127.0.0.1 (issue 12, "Hostile clients get
nothing"): the browser policy on every answer, a guessable signing key, a database others can
read, secrets in the access log, and clients that open connections and never finish a request."""

from __future__ import annotations

import os
import resource
import socket
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.runtime.browser_policy import assert_browser_policy
from tests.support.device_index import download_url, fetch_platform
from tests.support.qt import DEVICE, SECRET, USER, USER_PASSWORD, add_user
from tests.support.serving import (
    ServedStore,
    copy_demo_repo,
    depot_command,
    free_port,
    point_base_url_at,
    serve_store,
    stop,
    wait_until_up,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ServedStore:
    tmp = tmp_path_factory.mktemp("hostile")
    add_user(tmp / "var", USER, USER_PASSWORD)
    with serve_store(tmp, env={"DEPOT_SECRET_KEY": SECRET}) as served:
        yield served


def qt_download_url(client: httpx.Client) -> str:
    client.get("/hello", params={"platform": "NEPTUNE3", "version": "2"})
    assert client.get("/login", params={"username": USER, "password": USER_PASSWORD}).json() == {
        "status": "ok"
    }
    bought = client.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).json()
    assert bought["status"] == "ok", bought
    return bought["url"]


# -- 11: the browser policy on every answer ------------------------------------------------------


def test_every_answer_carries_the_browser_policy(store: ServedStore) -> None:
    with store.client() as client:
        platform = client.get("/device/index.json").json()["platforms"][0]["name"]
        index, shard_urls = fetch_platform(client, platform)
        blob = download_url(shard_urls[0], index["modules"][0]["versions"][0])
        answers = [
            client.get("/"),
            client.get("/index.html"),
            client.head("/index.html"),
            client.get("/device/index.json"),
            client.get(shard_urls[0]),  # a shard of the device index
            client.get(blob),  # a package file, streamed from disk
            client.get(blob, headers={"Range": "bytes=0-9"}),
            client.get("/healthz"),
            client.get("/no/such/file"),
            client.post("/device/index.json"),  # 405
            client.get("/api/v1/general/build/latest/angler/foss/"),  # a static 404 body
            client.get("/category/icon", params={"id": "-1"}),
            client.get("/app/purchase", params={"id": "com.example.plain"}),  # 403 "no login", HTML
            client.get("/app/download/forged.appkg"),
        ]
        download = client.get(qt_download_url(client))
        answers.append(download)
    statuses = [a.status_code for a in answers]
    assert statuses == [200, 200, 200, 200, 200, 200, 206, 200, 404, 405, 404, 200, 403, 403, 200], statuses
    for answer in answers:
        assert_browser_policy(answer)
    assert answers[5].headers["content-length"] == str(len(answers[5].content))  # still a whole file
    assert download.headers["content-type"] == "application/octet-stream" and len(download.content) > 0


# -- 14: a signing key anyone could guess ---------------------------------------------------------


def run_serve(tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    repo = tmp / "repo" if (tmp / "repo").exists() else copy_demo_repo(tmp / "repo")
    args = ["serve", "--repo", str(repo), "--site", str(tmp / "site"), "--data", str(tmp / "var")]
    return subprocess.run(
        depot_command(*args, "--port", str(free_port())),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,  # the old code served for ever with any key
    )


@pytest.mark.parametrize("key", ["x", "k" * 31, "é" * 15])
def test_a_short_secret_key_stops_the_start_with_one_line(tmp_path: Path, key: str) -> None:
    """A key of `x` let anyone forge a download link (issue 12); 32 bytes are the least."""
    result = run_serve(tmp_path, {"DEPOT_SECRET_KEY": key})
    assert result.returncode == 1
    assert result.stdout == ""  # refused before the build, before listening
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: environment variable DEPOT_SECRET_KEY is")
    assert "at least 32" in lines[0]


def test_a_short_key_file_stops_the_start_too(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir(mode=0o700)
    (tmp_path / "var" / "secret.key").write_text("short\n")
    env = {k: v for k, v in os.environ.items() if k != "DEPOT_SECRET_KEY"}
    result = subprocess.run(
        depot_command(
            "serve", "--repo", str(copy_demo_repo(tmp_path / "repo")), "--site", str(tmp_path / "site"),
            "--data", str(tmp_path / "var"), "--port", str(free_port()),
        ),
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "secret.key holds a key of 5 bytes" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_key_of_32_bytes_is_enough(tmp_path: Path) -> None:
    with serve_store(tmp_path, env={"DEPOT_SECRET_KEY": "k" * 32}) as served:
        assert httpx.get(served.url + "/healthz").json() == {"status": "ok", "database": "ok", "disk": "ok"}


# -- 15: the database is the runtime's alone ----------------------------------------------------


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def database_files(data: Path) -> dict[str, int]:
    return {p.name: mode(p) for p in sorted(data.glob("depot.db*"))}


@pytest.mark.sqlite_only  # the SQLite file itself
def test_depot_user_add_makes_a_private_folder_and_database(tmp_path: Path) -> None:
    data = tmp_path / "deep" / "var"
    with umask(0o022):
        add_user(data, USER, USER_PASSWORD)
    assert mode(data) == 0o700
    assert database_files(data) == {"depot.db": 0o600}  # SQLite removed its WAL at the last close


@pytest.mark.sqlite_only  # the SQLite file itself
def test_depot_serve_keeps_the_database_and_its_wal_private(tmp_path: Path) -> None:
    with umask(0o022), serve_store(tmp_path, env={"DEPOT_SECRET_KEY": SECRET}) as served:
        with served.client() as client:  # a write, so the WAL holds something
            assert client.get(
                "/login", params={"username": "nobody", "password": "wrong-password"}
            ).json() == {"status": "authentication-failed"}
        assert mode(served.data) == 0o700
        files = database_files(served.data)
    assert files == {"depot.db": 0o600, "depot.db-shm": 0o600, "depot.db-wal": 0o600}


@pytest.mark.sqlite_only  # the SQLite file itself
def test_an_existing_readable_database_is_made_private(tmp_path: Path) -> None:
    """A data folder an older Depot left with a 0644 depot.db (umask 022)."""
    data = tmp_path / "var"
    data.mkdir()
    with umask(0o022):
        sqlite3.connect(data / "depot.db").close()
        assert mode(data / "depot.db") == 0o644
        add_user(data, USER, USER_PASSWORD)
    assert database_files(data) == {"depot.db": 0o600}


# -- 16: no secret in the log ------------------------------------------------------------------

PASSWORD = "hunter2secret"


def test_the_access_log_shows_no_password_secret_or_download_token(tmp_path: Path) -> None:
    add_user(tmp_path / "var", USER, USER_PASSWORD)
    with serve_store(tmp_path, env={"DEPOT_SECRET_KEY": SECRET}) as served, served.client() as client:
        # percent-encoded: the application reads `password`, so it is a login attempt
        sneaky = client.get(f"/login?username=a&passw%6Frd={PASSWORD}")
        assert sneaky.json() == {"status": "authentication-failed"}
        client.get(f"/login?username=a&PassWord={PASSWORD}&password={PASSWORD}")
        client.get(f"/hello?platform=NEPTUNE3&api%5Ftoken={PASSWORD}&my+secret={PASSWORD}&passwd={PASSWORD}")
        url = qt_download_url(client)
        assert client.get(url).status_code == 200
        token = httpx.URL(url).path.removeprefix("/app/download/").removesuffix(".appkg")
        assert len(token) > 40
    log = served.log.read_text()
    assert PASSWORD not in log and USER_PASSWORD not in log
    assert token not in log and token.rsplit(".", 1)[-1] not in log  # not even its signature
    assert '"GET /login?username=a&password=*** HTTP/1.1" 200' in log  # the request is logged
    assert f"/app/download/{token[:8]}..." in log  # which download, not the link itself


# -- 5: clients that never finish a request ------------------------------------------------------

PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def raise_own_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else min(needed, hard), hard)
        )


@contextmanager
def served_with_open_file_limit(tmp: Path, env: dict[str, str], nofile: int | None) -> Iterator[str]:
    """`depot serve` as a real process, optionally with at most ``nofile`` open files: the same
    exhaustion as 1,050 sockets against the usual 1,024, with fewer sockets."""
    repo = copy_demo_repo(tmp / "repo")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    point_base_url_at(repo, url)

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    args = ["serve", "--repo", str(repo), "--site", str(tmp / "site"), "--data", str(tmp / "var")]
    with (tmp / "serve.log").open("wb") as out:
        process = subprocess.Popen(
            depot_command(*args, "--port", str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DEPOT_SECRET_KEY": SECRET, **env},
            cwd=tmp,
            preexec_fn=limit,
        )
    try:
        wait_until_up(url + "/healthz", process)
        yield url
    finally:
        stop(process)


@contextmanager
def slow_clients(url: str, count: int) -> Iterator[list[socket.socket]]:
    port = httpx.URL(url).port
    assert port is not None
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(PARTIAL_HEAD)  # and never the rest
            sockets.append(s)
        yield sockets
    finally:
        for s in sockets:
            s.close()


def healthz_answers_within(url: str, seconds: float) -> float | None:
    """Seconds until /healthz answered 200, or None if it did not within ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            time.sleep(0.1)
    return None


def closed_by_the_server(s: socket.socket, wait: float) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_unfinished_request_heads_cannot_take_every_descriptor(tmp_path: Path) -> None:
    """300 connections that never finish their head, against a server allowed 256 open files:
    before, the server could accept nothing more (not even /healthz) while they stayed open."""
    raise_own_open_file_limit(1024)
    with (
        served_with_open_file_limit(tmp_path, {"DEPOT_HEADER_TIMEOUT": "2"}, nofile=256) as url,
        slow_clients(url, 300) as sockets,
    ):
        took = healthz_answers_within(url, 10)
        assert took is not None, "the server stopped answering"
        assert all(closed_by_the_server(s, 5) for s in sockets)
        assert healthz_answers_within(url, 2) is not None
    log = (tmp_path / "serve.log").read_text()
    assert "at most 128 connections" in log  # 256 files: half of them kept for files and the database


def test_a_connection_must_finish_its_request_head_in_time(tmp_path: Path) -> None:
    raise_own_open_file_limit(1024)
    with served_with_open_file_limit(tmp_path, {"DEPOT_HEADER_TIMEOUT": "2"}, nofile=None) as url:
        port = httpx.URL(url).port
        assert port is not None
        kept_alive = socket.create_connection(("127.0.0.1", port), timeout=5)
        with kept_alive, slow_clients(url, 300) as sockets:
            took = healthz_answers_within(url, 2)  # under the cap: answered at once
            assert took is not None and took < 2
            # a kept-alive connection gets the same deadline for its next head
            kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while not answer.endswith(b'"disk":"ok"}'):
                answer += kept_alive.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            kept_alive.sendall(PARTIAL_HEAD)
            opened = time.monotonic()
            assert all(closed_by_the_server(s, 5) for s in sockets)
            assert closed_by_the_server(kept_alive, 5)
            assert time.monotonic() - opened < 5

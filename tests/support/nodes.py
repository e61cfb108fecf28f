"""Several real `depot serve` nodes on one store: the same repo/, site/ and data folder, one
PostgreSQL database, each node a process of its own on a free port of 127.0.0.1; the nginx
block `depot nginx --node …` generates in front of them; a shippy-style chunked-upload client
that sends each request to the node it is told to; fake upstreams that show what nginx retries.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.nginx import running_nginx
from tests.support.serving import depot_command, free_port, stop, wait_until_up

UPLOADS = "/api/v1/maintainers/chunked_upload/"
NGINX_LOG = "/var/log/nginx/depot-access.log"


# -- the nodes -------------------------------------------------------------------------------------


@dataclass
class Store:
    """What every node shares: the folders and the database."""

    repo: Path
    site: Path
    data: Path
    database: str
    env: dict[str, str] = field(default_factory=dict)  # the environment every node gets

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env, "DEPOT_DATABASE_URL": self.database}

    def add_user(self, name: str, password: str, devices: str = "", staff: bool = False) -> None:
        """`depot user add` into the shared database."""
        args = ["user", "add", name, "--password-stdin", "--devices", devices, "--data", str(self.data)]
        done = subprocess.run(
            depot_command(*args, *(["--staff"] if staff else [])),
            input=password + "\n",
            capture_output=True,
            text=True,
            env=self.environment(),
            check=False,
        )
        assert done.returncode == 0, done.stderr


@dataclass
class Node:
    name: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def requests(self, method: str, path_prefix: str) -> list[str]:
        """The targets of ``method`` requests under ``path_prefix`` in the node's access log."""
        pattern = re.compile(rf'"{method} ({re.escape(path_prefix)}\S*) HTTP/[\d.]+" (\d+)')
        return [m.group(1) for m in pattern.finditer(self.log_text())]

    def kill(self) -> None:
        """kill -9: no shutdown step runs, nothing is flushed or released but by the kernel."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def start_node(store: Store, name: str, folder: Path, *extra: str) -> Node:
    """`depot serve` on a free port (not waited for: see :func:`wait_for`)."""
    port = free_port()
    log = folder / f"{name}.log"
    args = ["serve", "--repo", str(store.repo), "--site", str(store.site), "--data", str(store.data)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            depot_command(*args, "--database", store.database, "--port", str(port), *extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=store.environment(),
            cwd=folder,
        )
    return Node(name, port, process, log)


def wait_for(node: Node) -> Node:
    try:
        wait_until_up(node.url + "/healthz", node.process, timeout=120)
    except (RuntimeError, TimeoutError) as exc:
        raise AssertionError(f"{node.name} did not come up: {exc}\n{node.log_text()[-4000:]}") from exc
    return node


def stop_node(node: Node) -> None:
    if node.process.poll() is None:
        stop(node.process)


@contextmanager
def running_nodes(store: Store, folder: Path, count: int) -> Iterator[list[Node]]:
    """``count`` nodes started at once (they race for secret.key, the schema and the first
    build, as nodes of a real deployment do); all stopped afterwards."""
    nodes: list[Node] = []
    try:
        for n in range(count):
            nodes.append(start_node(store, f"node{n + 1}", folder))
        for node in nodes:
            wait_for(node)
        yield nodes
    finally:
        for node in nodes:
            stop_node(node)


# -- nginx in front ---------------------------------------------------------------------------------


def nodes_config(site: Path, addresses: Sequence[str], port: int, access_log: Path) -> str:
    """What `depot nginx --node A --node B …` prints, its access log moved to ``access_log``."""
    args = ["nginx", "--site", str(site), "--listen", f"127.0.0.1:{port}"]
    for address in addresses:
        args += ["--node", address]
    block = subprocess.run(depot_command(*args), capture_output=True, text=True, check=True).stdout
    assert f"access_log {NGINX_LOG} " in block
    return block.replace(NGINX_LOG, str(access_log))


@dataclass
class Front:
    """nginx in front of the nodes: its URL and its access log (``$upstream_addr`` last)."""

    url: str
    access_log: Path

    def logged(self, text: str, count: int = 1, timeout: float = 10) -> list[str]:
        """The access log's lines that contain ``text``, waited for until there are ``count``:
        nginx writes a line after it has sent the answer, so a client can hold the answer
        before the line is there."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.access_log.read_text().splitlines() if text in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def upstreams(self, method: str, path_prefix: str) -> list[str]:
        """For each logged ``method`` request under ``path_prefix``: the node that answered
        (the last address of ``$upstream_addr``, after any it tried first)."""
        found = []
        for line in self.access_log.read_text().splitlines():
            match = re.search(rf'"{method} ({re.escape(path_prefix)}\S*) HTTP/[\d.]+" .*"([^"]*)"$', line)
            if match:
                found.append(match.group(2).split(",")[-1].strip())
        return found


@contextmanager
def nginx_in_front(
    folder: Path, site: Path, addresses: Sequence[str], port: int | None = None, ready: str = "/healthz"
) -> Iterator[Front]:
    """nginx on ``port`` (a free one when None) with the block generated for ``addresses``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = folder / "access.log"
    with running_nginx(folder, nodes_config(site, addresses, port, log), port, ready) as url:
        yield Front(url, log)


# -- a shippy-style client that picks the node of every request -----------------------------------


class Uploader:
    """drf-chunked-upload's protocol as shippy speaks it, one request per call, each sent to
    the base URL given (a node, or nginx)."""

    def __init__(self, token: str) -> None:
        self.auth = {"Authorization": f"Token {token}"}

    @staticmethod
    def login(url: str, user: str, password: str) -> Uploader:
        answer = httpx.post(url + "/api/v1/maintainers/login/", data={"username": user, "password": password})
        assert answer.status_code == 200, answer.text
        return Uploader(answer.json()["token"])

    def put(
        self,
        url: str,
        name: str,
        data: bytes,
        start: int,
        total: int,
        upload_id: str | None = None,
        chunked: bool = False,
    ) -> httpx.Response:
        """One chunk; ``chunked``: its body sent with ``Transfer-Encoding: chunked`` (no length)."""
        headers = {**self.auth, "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}"}
        target = f"{url}{UPLOADS}{upload_id}/" if upload_id else url + UPLOADS
        if not chunked:
            return httpx.put(
                target, headers=headers, data={"filename": name}, files={"file": ("file", data)}, timeout=60
            )
        head, tail = multipart(name)
        headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
        pieces = [head, *(data[at : at + 65536] for at in range(0, len(data), 65536)), tail]
        return httpx.put(target, headers=headers, content=iter(pieces), timeout=60)

    def offset(self, url: str, upload_id: str) -> int:
        answer = httpx.get(f"{url}{UPLOADS}{upload_id}/", headers=self.auth, timeout=60)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["offset"])

    def complete(self, url: str, upload_id: str, sha256: str) -> httpx.Response:
        return httpx.post(
            f"{url}{UPLOADS}{upload_id}/", headers=self.auth, data={"sha256": sha256}, timeout=300
        )

    def send(
        self,
        urls: Sequence[str],
        name: str,
        data: bytes,
        chunk: int,
        upload_id: str | None = None,
        start: int = 0,
        chunked: bool = False,
    ) -> str:
        """The chunks of ``data`` from ``start`` on, the n-th to ``urls[n % len(urls)]``;
        returns the upload id. ``chunked``: every other chunk's body is sent without a length."""
        n = 0
        while start < len(data):
            piece = data[start : start + chunk]
            answer = self.put(
                urls[n % len(urls)], name, piece, start, len(data), upload_id, chunked and n % 2 == 1
            )
            assert answer.status_code == 200, answer.text
            upload_id = answer.json()["id"]
            assert answer.json()["offset"] == start + len(piece)
            start, n = start + len(piece), n + 1
        assert upload_id is not None
        return upload_id

    def start_chunk_cut_off(
        self, node: Node, name: str, data: bytes, start: int, upload_id: str, sent: int
    ) -> socket.socket:
        """A chunk PUT of ``data[start:]`` whose head and first ``sent`` body bytes have gone
        out, the rest not (yet): the open socket, for the caller to close."""
        head_part, tail = multipart(name)
        body = head_part + data[start:] + tail
        request = (
            f"PUT {UPLOADS}{upload_id}/ HTTP/1.1\r\nHost: {node.address}\r\n"
            f"Authorization: {self.auth['Authorization']}\r\n"
            f"Content-Range: bytes {start}-{len(data) - 1}/{len(data)}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        conn = socket.create_connection(("127.0.0.1", node.port), timeout=60)
        conn.sendall(request + body[: len(head_part) + sent])
        return conn


BOUNDARY = "depotnodesboundary"


def multipart(name: str) -> tuple[bytes, bytes]:
    """What comes before and after the chunk's bytes in shippy's form (filename, then file)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="filename"\r\n\r\n{name}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="file"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode(), f"\r\n--{BOUNDARY}--\r\n".encode()


# -- fake upstreams: what nginx sends where ---------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    body: bytes


class FakeNode:
    """An HTTP server on a free port that records every request it reads whole. A path that
    contains ``/drop`` is read to its end and then the connection is closed without an answer
    (a node that dies after taking the request); any other is answered 200 with the node's
    name as the body."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [r.path for r in self.received if method is None or r.method == method]

    def _serve(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                method, path, body = _read_request(conn)
            except (OSError, ValueError):
                return
            with self._lock:
                self.received.append(Received(method, path, body))
            if "/drop" in path:
                return  # closed without a word
            answer = self.name.encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )

    def close(self) -> None:
        self._stopped = True
        self._socket.close()


def _read_request(conn: socket.socket) -> tuple[str, str, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            raise ValueError("the connection ended inside the head")
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(rest) < size:
            piece = conn.recv(65536)
            if not piece:
                raise ValueError("the connection ended inside the body")
            rest += piece
        return method, path, rest
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            piece = conn.recv(65536)
            if not piece:
                raise ValueError("the connection ended inside the chunked body")
            rest += piece
        return method, path, _dechunk(rest)
    return method, path, b""


def _dechunk(raw: bytes) -> bytes:
    out, at = b"", 0
    while True:
        end = raw.index(b"\r\n", at)
        size = int(raw[at:end].split(b";")[0], 16)
        if size == 0:
            return out
        out += raw[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


@contextmanager
def fake_nodes(count: int) -> Iterator[list[FakeNode]]:
    with ExitStack() as stack:
        nodes = []
        for n in range(count):
            node = FakeNode(f"fake{n + 1}")
            stack.callback(node.close)
            nodes.append(node)
        yield nodes


def wait_until(check: Callable[[], bool], timeout: float = 60, what: str = "the condition") -> None:
    """Poll ``check()`` until it is true; fail after ``timeout`` seconds (only so that a broken
    run ends: nothing is measured)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)

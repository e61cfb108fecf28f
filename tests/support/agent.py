"""Helpers for the device agent's tests: a store, an agent process, and a proxy that can pause
or cut a download at an exact byte, so intermediate states are observed without timing luck."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from builder.device.module import pack_module
from tests.support.serving import depot_command, free_port, wait_until_up

PLATFORM = "pi64"


def write_store_settings(repo: Path) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "depot.toml").write_text(
        '[store]\nname = "Agent Test Store"\n\n[device]\nplatforms = [\n'
        '  { name = "pi64", description = "test boards" },\n]\n',
        encoding="utf-8",
    )


def make_module(
    repo: Path, name: str, version: str, files: dict[str, bytes] | None = None, **manifest: Any
) -> Path:
    files = files or {
        f"bin/{name}": f"#!/bin/sh\necho {name} {version}\n".encode(),
        "VERSION": version.encode(),
    }
    return pack_module(
        repo / "modules" / f"{name}.{version}.{PLATFORM}.tar.gz",
        files,
        {"name": name, "version": version, "platform": PLATFORM, **manifest},
    )


def make_firmware(repo: Path, name: str, version: str, payload: bytes) -> Path:
    path = repo / "firmware" / f"{name}.{version}.{PLATFORM}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


class AgentProcess:
    """A real `depot agent` subprocess that can be SIGKILLed and started again on the same root.

    Unless ``extra`` names an ``--inbox`` (or ``tmp_inbox`` is false), the test's ``tmp`` folder
    is the agent's inbox, so the module files tests write there can be given to
    install_local_file."""

    def __init__(
        self,
        tmp: Path,
        store: str,
        root: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        tmp_inbox: bool = True,
    ) -> None:
        extra_list = list(extra)
        if tmp_inbox and "--inbox" not in extra_list:
            extra_list += ["--inbox", str(tmp)]
        self.tmp, self.store, self.root, self.extra = tmp, store, root, extra_list
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.headers: dict[str, str] = {}
        self.log = tmp / f"agent-{self.port}.log"

    def start(self, wait_path: str = "/app_store/packages") -> AgentProcess:
        argv = depot_command(
            "agent", "--store", self.store, "--root", str(self.root), "--port", str(self.port),
            "--retry-delay", "0.05", *self.extra,
        )  # fmt: skip
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, cwd=self.tmp
        )
        out.close()
        if wait_path:
            try:
                wait_until_up(self.url + wait_path, self.process)
            except BaseException:  # do not leave an agent running behind a failed test
                self.stop()
                raise
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    # -- API shortcuts --------------------------------------------------------------------

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.get(self.url + "/app_store" + path, headers=headers, timeout=10, **kwargs)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        """A POST as the robot's UI sends it: a JSON body with ``Content-Type: application/json``."""
        return httpx.post(self.url + "/app_store" + path, json=body, headers=self.headers, timeout=10)

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Any request, headers and body exactly as given (for what a hostile client sends)."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + "/app_store" + path, headers=headers, timeout=10, **kwargs)

    def vm_hwm(self) -> int:
        """The agent process's peak resident memory in bytes (VmHWM of /proc/<pid>/status)."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(kib) * 1024

    def packages(self, firmware: bool = False) -> dict[str, dict]:
        response = self.get("/firmware/packages" if firmware else "/packages")
        assert response.status_code == 200, response.text
        return {p["name"]: p for p in response.json()}

    def package(self, name: str, firmware: bool = False) -> dict:
        return self.packages(firmware)[name]

    def task(self, job: str, task_id: int) -> dict:
        return next(t for t in self.get(f"/jobs/{job}/tasks").json() if t["id"] == task_id)

    def wait_task(self, job: str, task_id: int, timeout: float = 60) -> dict:
        return wait_for(
            lambda: (t := self.task(job, task_id))["status"] in ("succeeded", "failed") and t,
            timeout,
            f"{job} task {task_id}",
        )

    def log_text(self, job: str, task_id: int) -> str:
        return self.get(f"/jobs/{job}/tasks/{task_id}/log").text


@contextlib.contextmanager
def agent_process(
    tmp: Path,
    store: str,
    root: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    tmp_inbox: bool = True,
) -> Iterator[AgentProcess]:
    agent = AgentProcess(tmp, store, root, *extra, env=env, tmp_inbox=tmp_inbox).start()
    try:
        yield agent
    finally:
        agent.stop()


class Proxy:
    """A TCP proxy in front of a store. On connections that fetch ``/files/`` it can pause after
    ``pause_after`` response bytes until ``release()``, or drop the connection once after
    ``cut_after`` bytes. It records every request head it forwards."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[str] = []
        self.pause_after: int | None = None
        self.cut_after: int | None = None
        self.paused = threading.Event()
        self._gate = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self) -> None:
        self.pause_after = None
        self._gate.set()

    def close(self) -> None:
        self._closed = True
        self._gate.set()
        self.listener.close()

    def file_requests(self) -> list[str]:
        return [r for r in self.requests if " /files/" in r.split("\r\n", 1)[0]]

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        is_file = threading.Event()

        def pump_up() -> None:
            buffer = b""
            try:
                while data := client.recv(65536):
                    buffer += data
                    while b"\r\n\r\n" in buffer:
                        head, buffer = buffer.split(b"\r\n\r\n", 1)
                        text = head.decode("latin-1")
                        with self._lock:
                            self.requests.append(text)
                        if " /files/" in text.split("\r\n", 1)[0]:
                            is_file.set()
                    upstream.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

        threading.Thread(target=pump_up, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                if is_file.is_set():
                    if self.cut_after is not None and sent + len(data) >= self.cut_after:
                        client.sendall(data[: self.cut_after - sent])
                        self.cut_after = None
                        raise ConnectionAbortedError
                    if self.pause_after is not None and sent + len(data) >= self.pause_after:
                        head = data[: self.pause_after - sent]
                        client.sendall(head)
                        sent += len(head)
                        data = data[len(head) :]
                        self.paused.set()
                        self._gate.wait()
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def plain_http_server(folder: Path) -> Iterator[str]:
    """Python's http.server on ``folder``: a store that ignores Range (always 200, whole file)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def installed_tree(root: Path, name: str) -> dict[str, bytes]:
    """The files of a module's current release, as the device sees them."""
    current = root / "modules" / name / "current"
    out = {}
    for dirpath, _dirs, files in os.walk(current, followlinks=False):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(current))] = p.read_bytes()
    return out


class ScriptedServer:
    """An HTTP server on ``host`` (127.0.0.1, or 127.0.0.2 for "another host") that answers each
    path from ``routes`` (path → (status, headers, body); 404 otherwise) and records the path of
    every request it gets, so a test can assert that nothing was ever fetched from it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, tuple[int, dict[str, str | None], bytes]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                status, headers, body = server.routes.get(self.path, (404, {}, b"not here"))
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **headers}.items():
                    if value is not None:  # None: leave the header out (a body ended by closing)
                        self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(OSError):  # the agent may hang up past its cap
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, path: str, body: bytes, status: int = 200, **headers: str | None) -> None:
        """Answer ``path`` with ``body``; header names are given with ``_`` for ``-``."""
        self.routes[path] = (status, {k.replace("_", "-"): v for k, v in headers.items()}, body)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.routes[path] = (status, {"Location": location}, b"")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def device_index(
    modules: dict[str, bytes],
    url_of: Callable[[str], str] | None = None,
    version: str = "1.0",
    schema: int = 2,
    unpacked_size: int | None = None,
) -> tuple[bytes, dict[str, bytes]]:
    """A hand-written device index, for the tests whose store must be one the builder would
    never make (a hostile store, archives the builder refuses): for modules ``name → tarball``
    (one version each), the entry ``device/index.json`` and the files it names (site path →
    bytes), with correct sizes and checksums. Schema 2 is the builder's layout
    (docs/device-index.md): a shard per bucket that has a module,
    ``device/pi64/<bucket>.<sha16>.json``; schema 1 is an older Depot's, one platform index
    ``device/pi64/index.json``. ``url_of(name)`` gives each module's URL (default: relative
    ``../../files/<name>.<version>.pi64.tar.gz``, resolved against the file that names it)."""
    import hashlib
    import json

    from tests.support.device_index import device_bucket

    buckets: dict[str, list[dict[str, Any]]] = {}
    for name, data in sorted(modules.items()):
        file = f"{name}.{version}.{PLATFORM}.tar.gz"
        release: dict[str, Any] = {
            "version": version,
            "filename": file,
            "url": url_of(name) if url_of else f"../../files/{file}",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if unpacked_size is not None:
            release["unpacked_size"] = unpacked_size
        entry = {"name": name, "latest_version": version, "optional": False, "versions": [release]}
        buckets.setdefault(device_bucket(name) if schema >= 2 else "", []).append(entry)

    def row(path: str, body: bytes) -> dict[str, Any]:
        url = path.removeprefix("device/")
        return {"url": url, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    files: dict[str, bytes] = {}
    if schema < 2:
        body = json.dumps(
            {"schema": schema, "platform": PLATFORM, "modules": buckets.get("", []), "firmware": []}
        ).encode()
        files[f"device/{PLATFORM}/index.json"] = body
        line = {"name": PLATFORM, **row(f"device/{PLATFORM}/index.json", body)}
    else:
        shards = []
        for bucket in sorted(buckets):
            shard = {"schema": schema, "platform": PLATFORM, "shard": bucket}
            body = json.dumps({**shard, "modules": buckets[bucket], "firmware": []}).encode()
            path = f"device/{PLATFORM}/{bucket}.{hashlib.sha256(body).hexdigest()[:16]}.json"
            files[path] = body
            shards.append({"shard": bucket, **row(path, body)})
        line = {"name": PLATFORM, "description": "test boards", "shards": shards}
    entry_body = json.dumps({"schema": schema, "store": "Agent Test Store", "platforms": [line]}).encode()
    return entry_body, files


def serve_device_index(server: ScriptedServer, entry: bytes, files: dict[str, bytes]) -> None:
    """Serve a device index from :func:`device_index` on ``server``."""
    server.serve("/device/index.json", entry, Content_Type="application/json")
    for path, body in files.items():
        server.serve("/" + path, body, Content_Type="application/json")


def write_device_index(folder: Path, entry: bytes, files: dict[str, bytes]) -> None:
    """Write a device index from :func:`device_index` into a site folder ``folder``."""
    for path, body in {"device/index.json": entry, **files}.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(body)

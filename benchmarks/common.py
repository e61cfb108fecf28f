"""What every benchmark here needs the same way: free ports, `depot` processes started,
waited for and stopped, and the machine a figure was measured on (for docs/benchmarks.md)."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def depot_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime.cli", *args]


def wait_up(url: str, process: subprocess.Popen | None = None, timeout: float = 60) -> None:
    """Until ``url`` answers (anything below 500), or the process exits, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """``sig``, then SIGKILL after 15 s: a benchmark never leaves a server behind."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def machine() -> dict[str, str]:
    """The CPUs, Python, kernel, time and load average a run was measured with."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def nginx_main_conf(conf: Path, processes: int) -> str:
    """nginx.conf of a benchmark's own nginx in the folder ``conf``, around its depot.conf."""
    return f"""
user root;
daemon off;
worker_processes {processes};
pid {conf}/nginx.pid;
error_log {conf}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {conf}/body;
    proxy_temp_path {conf}/proxy;
    fastcgi_temp_path {conf}/fastcgi;
    uwsgi_temp_path {conf}/uwsgi;
    scgi_temp_path {conf}/scgi;
    include {conf}/depot.conf;
}}
"""


class Conn:
    """HTTP/1.1 over one keep-alive socket (the body pieces go out with sendall)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(
        self, method: str, path: str, headers: dict[str, str], body: list[bytes] | list[bytes | memoryview]
    ) -> tuple[int, bytes]:
        length = sum(len(p) for p in body)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Length: {length}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.sock.sendall(head.encode())
        for piece in body:
            self.sock.sendall(piece)
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        data = response.read()
        if response.getheader("connection", "").lower() == "close" or response.will_close:
            self.close()
            self._connect()
        return response.status, data

    def close(self) -> None:
        self.sock.close()

"""Helpers to run real servers on 127.0.0.1 for integration tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from tests.support.paths import DEMO_REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


@dataclass
class ServedStore:
    url: str
    repo: Path
    site: Path
    data: Path
    process: subprocess.Popen
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


def depot_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime.cli", *args]


def copy_demo_repo(dest: Path) -> Path:
    shutil.copytree(DEMO_REPO, dest)
    return dest


def point_base_url_at(repo: Path, url: str) -> None:
    """Make ``[store] base_url`` of the store's depot.toml the address the test serves it on
    (OTA feeds carry absolute URLs), unless the test set an OTA base of its own."""
    toml = repo / "depot.toml"
    text = toml.read_text(encoding="utf-8") if toml.exists() else ""
    if re.search(r"(?m)^\[ota\][^\[]*^base_url\s*=", text):
        return
    line = f'base_url = "{url}"'
    if re.search(r"(?m)^\[store\]", text):
        lines, in_store, done = [], False, False
        for raw in text.splitlines():
            if raw.startswith("["):
                if in_store and not done:
                    lines.append(line)
                    done = True
                in_store = raw.strip() == "[store]"
            elif in_store and re.match(r"base_url\s*=", raw):
                raw, done = line, True
            lines.append(raw)
        if in_store and not done:
            lines.append(line)
        text = "\n".join(lines) + "\n"
    else:
        text = f"[store]\n{line}\n\n" + text
    toml.write_text(text, encoding="utf-8")


@contextmanager
def serve_store(
    tmp: Path, repo: Path | None = None, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[ServedStore]:
    """Run `depot serve` as a real process on a free port (with ``args`` added); stop it
    afterwards."""
    repo = repo or copy_demo_repo(tmp / "repo")
    site, data, log = tmp / "site", tmp / "var", tmp / "serve.log"
    port = free_port()
    point_base_url_at(repo, f"http://127.0.0.1:{port}")
    folders = ("--repo", str(repo), "--site", str(site), "--data", str(data))
    with log.open("wb") as out:
        process = subprocess.Popen(
            depot_command("serve", *folders, "--port", str(port), *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=tmp,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process)
        yield ServedStore(url, repo, site, data, process, log)
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after ten seconds: a server under test always ends."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serve_app(app) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)

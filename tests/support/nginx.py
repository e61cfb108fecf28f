"""A real nginx running what `depot nginx` generates, on a free port of 127.0.0.1."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.serving import depot_command, wait_until_up

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def generated_config(site: Path, upstream: str, port: int) -> str:
    """The server block `depot nginx` prints for ``site`` in front of ``upstream``."""
    return subprocess.run(
        depot_command("nginx", "--site", str(site), "--upstream", upstream, "--listen", f"127.0.0.1:{port}"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@contextmanager
def running_nginx(tmp: Path, server_block: str, port: int, ready_path: str) -> Iterator[str]:
    """nginx with ``server_block`` (checked with ``nginx -t`` first) until the block ends; yields
    its base URL once ``ready_path`` answers. Stopped gracefully (SIGQUIT), so logs are flushed."""
    assert NGINX is not None, "nginx is not installed (scripts/setup-system)"
    (tmp / "depot.conf").write_text(server_block)
    (tmp / "nginx.conf").write_text(
        f"""
user root;
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/depot.conf;
}}
"""
    )
    check = subprocess.run([NGINX, "-t", "-c", str(tmp / "nginx.conf")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf")], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + ready_path, process)
        yield url
    finally:
        process.send_signal(signal.SIGQUIT)
        process.wait(timeout=10)

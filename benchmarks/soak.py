#!/usr/bin/env python3
"""Soak: a real `depot serve` under mixed traffic for a while, watched for drift.

Starts `depot serve` on a copy of the demo store (127.0.0.1 only), then runs mixed traffic from
a few client threads: the static catalog, the device index as a device reads it (the entry, then
the shards it names), Qt hello/list/login/purchase and downloads with Range, shipper feeds,
counters and logins, portal logins, a rebuild now and then.
Every `--sample` seconds it records, for the last window: requests, errors (any 5xx, transport
error or short body), p50/p99 latency; and for the server process: RSS, open file descriptors,
the size of depot.db-wal. At the end it writes the table and the drift (last window against the
first) into docs/benchmarks.md between the ``soak`` markers.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--sample 30] [--clients 4]

Loopback only, bounded in time; the traffic stops by itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
USER, PASSWORD = "soak", "soak-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def depot(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], text=True, check=True, **kwargs)  # type: ignore[call-overload,no-any-return]


class Window:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors = 0

    def add(self, seconds: float, ok: bool) -> None:
        with self.lock:
            self.latencies.append(seconds)
            if not ok:
                self.errors += 1

    def take(self) -> tuple[list[float], int]:
        with self.lock:
            out, errors = self.latencies, self.errors
            self.latencies, self.errors = [], 0
        return out, errors


def whole(r: httpx.Response) -> bool:
    """No server error and the whole body its Content-Length announced."""
    return r.status_code < 500 and int(r.headers.get("content-length", len(r.content))) == len(r.content)


def traffic(url: str, window: Window, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=30) as c:
        c.get(
            "/hello",
            params={
                "platform": "NEPTUNE3",
                "version": "2",
                "architecture": "x86_64-little_endian-lp64-linux",
            },
        )
        c.get("/login", params={"username": USER, "password": PASSWORD})
        while not stop.is_set():
            kind = rng.random()
            started = time.perf_counter()
            ok = True
            try:
                if kind < 0.28:
                    r = c.get(rng.choice(["/", "/search.json", "/category/list"]))
                elif kind < 0.35:
                    # what a device does: the entry, then every shard it names for its platform
                    r = c.get("/device/index.json")
                    if r.status_code == 200:
                        line = next(p for p in r.json()["platforms"] if p["name"] == "pi64")
                        for shard in line["shards"]:
                            answer = c.get(urljoin("/device/index.json", shard["url"]))
                            ok = ok and whole(answer)
                elif kind < 0.55:
                    r = c.get("/app/list")
                elif kind < 0.65:
                    r = c.get(
                        "/app/purchase", params={"id": "com.example.plain", "device_id": "00-11-22-33-44-55"}
                    )
                    if r.status_code == 200 and r.json().get("url"):
                        r = c.get(
                            httpx.URL(r.json()["url"]).raw_path.decode(), headers={"Range": "bytes=0-1023"}
                        )
                elif kind < 0.8:
                    r = c.get("/api/v1/updater/los/bullhead/gapps/")
                elif kind < 0.9:
                    r = c.post(
                        "/api/v2/download/build/counter/", json={"build_id": 1, "download_type": "update"}
                    )
                else:
                    r = c.post("/portal/api/login", json={"name": USER, "password": PASSWORD})
                ok = ok and whole(r)
            except httpx.HTTPError:
                ok = False
            window.add(time.perf_counter() - started, ok)


def process_figures(pid: int, data: Path) -> tuple[int, int, int]:
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    wal = data / "depot.db-wal"
    return rss, fds, wal.stat().st_size if wal.exists() else 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="depot-soak-"))
    repo, site, data = work / "repo", work / "site", work / "var"
    shutil.copytree(ROOT / "repo", repo)
    depot("user", "add", USER, "--password-stdin", "--staff", "--devices", "bullhead", "--data", str(data),
          input=PASSWORD + "\n", capture_output=True)  # fmt: skip
    port = free_port()
    unlimited = ("SHIPPER_ANON", "SHIPPER_USER", "LOGIN_ACCOUNT", "LOGIN_ADDRESS", "LOGIN_ACCOUNT_GLOBAL")
    env = {**os.environ, **{f"DEPOT_{n}_RATE": "off" for n in unlimited}}
    env["DEPOT_SECRET_KEY"] = "soak-" + "k" * 40
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", "--repo", str(repo), "--site", str(site), "--data",
         str(data), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    window, stop = Window(), threading.Event()
    threads = [
        threading.Thread(target=traffic, args=(url, window, stop, i), daemon=True)
        for i in range(args.clients)
    ]
    for t in threads:
        t.start()
    rows = []
    deadline = time.monotonic() + args.minutes * 60
    sidecar = repo / "modules" / "ax.2.6.4.pi64.tar.gz.toml"
    n = 0
    try:
        while time.monotonic() < deadline:
            time.sleep(min(args.sample, max(0.0, deadline - time.monotonic())))
            n += 1
            sidecar.write_text(f'description = "soak window {n}"\n')  # one rebuild per window
            depot("build", "--repo", str(repo), "--site", str(site), "-q", capture_output=True)
            latencies, errors = window.take()
            rss, fds, wal = process_figures(server.pid, data)
            rows.append(
                (
                    n,
                    len(latencies),
                    errors,
                    percentile(latencies, 0.5),
                    percentile(latencies, 0.99),
                    rss,
                    fds,
                    wal,
                )
            )
            print(f"window {n}: {len(latencies)} requests, {errors} errors, p99 {rows[-1][4] * 1000:.1f} ms, "
                  f"RSS {rss / 2**20:.1f} MiB, {fds} fds, WAL {wal / 1024:.0f} KiB", flush=True)  # fmt: skip
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    first, last = rows[0], rows[-1]
    total_errors = sum(r[2] for r in rows)
    lines = [
        BEGIN,
        f"Soak of {args.minutes:g} minutes, {args.clients} clients, windows of {args.sample:g} s, "
        f"{dt.date.today().isoformat()}, Python {platform.python_version()}, {os.cpu_count()} cores "
        "(shared machine).",
        "",
        f"- requests: {sum(r[1] for r in rows)}, errors: {total_errors}",
        f"- p99 latency drift (last window / first): {last[4] / first[4]:.2f}" if first[4] else "- p99: n/a",
        f"- RSS: {first[5] / 2**20:.1f} → {last[5] / 2**20:.1f} MiB; descriptors: {first[6]} → {last[6]}; "
        f"WAL: {first[7] / 1024:.0f} → {last[7] / 1024:.0f} KiB",
        "",
        "| window | requests | errors | p50 ms | p99 ms | RSS MiB | fds | WAL KiB |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3] * 1000:.1f} | {r[4] * 1000:.1f} | "
            f"{r[5] / 2**20:.1f} | {r[6]} | {r[7] / 1024:.0f} |"
            for r in rows
        ),
        END,
    ]
    print("\n".join(lines))
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text(encoding="utf-8")
        block = "\n".join(lines)
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
        else:
            text = (
                text.rstrip()
                + "\n\n## Soak: `depot serve` under mixed traffic (`benchmarks/soak.py`)\n\n"
                + block
                + "\n"
            )
        doc.write_text(text, encoding="utf-8")
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())

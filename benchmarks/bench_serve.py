#!/usr/bin/env python3
"""Requests per second of `depot serve` (1 and 2 workers) beside nginx, on the same files, in one run.

The store is the demo store (`repo/`) plus 200 generated pi64 modules, so that pi64's device
index (16 shards, about 80 KiB in all) has shards of a few KiB; it is built into a temporary
site. Then, one after
the other, never two at once:

- `depot serve` with 1 worker, then with `--workers 2`;
- nginx with the server block `depot nginx` generates (the static URLs are nginx's own), once
  with `worker_processes 1` and once with 2 (the machine's cores);
- optionally (`--baseline REV`) `depot serve` as it was at git revision REV (`git archive`, run
  from a temporary folder with the same interpreter), for the before/after ratio.

Each is loaded with `wrk -t2 -c16 -d<seconds>s` per URL when wrk is installed (`scripts/setup-bench`),
else with a small asyncio keep-alive client of this file (16 connections). URLs: a small icon
(`/app/icons/...`, 169 bytes), `/category/list`, the largest shard of the pi64 device index
(the URL `device/index.json` names), `/app/list` and
`/app/purchase` (with a Qt session cookie). Loopback only, bounded in time. The figures go into
docs/benchmarks.md between the ``serve`` markers, with the goals met or missed:

- static answers through `depot serve` alone at >= 25 % of nginx's requests per second;
- `/app/purchase` at >= 20x the Qt reference server (Django 4.0.6 + gunicorn, 2 workers).
  No Django figure is recorded in docs/benchmarks.md; the issue's measurement is used: Depot's
  `/app/purchase` did 8 to 10x Django's, so Django's figure is the baseline's divided by 8 (the
  highest estimate of Django, the strictest test), which needs `--baseline`; the Django icon
  figure of the issue, about 1,000 requests per second, is shown beside the icon row.

    .venv/bin/python benchmarks/bench_serve.py [--seconds 5] [--baseline REV] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import depot_cmd, free_port, nginx_main_conf, stop, wait_up  # noqa: E402
from builder.device.module import pack_module  # noqa: E402
from builder.routes import load_routes  # noqa: E402

BEGIN, END = "<!-- serve:begin -->", "<!-- serve:end -->"
USER, PASSWORD = "bench", "bench-password"
DEVICE = "00-11-22-33-44-55"
SECRET = "bench-secret-key-of-at-least-32-bytes-long"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
DJANGO_ICONS = 1000.0  # req/s, the measurement of the Qt reference server's /app/icons
PURCHASE_OVER_DJANGO = (8.0, 10.0)  # the issue: Depot's /app/purchase was 8-10x Django's, before
STATIC_GOAL, PURCHASE_GOAL = 0.25, 20.0


# -- the store ---------------------------------------------------------------------------------


def make_store(tmp: Path) -> tuple[Path, Path, Path]:
    repo, site, data = tmp / "repo", tmp / "site", tmp / "var"
    shutil.copytree(ROOT / "repo", repo)
    for i in range(200):
        payload = f"bench module {i}\n".encode() * 4
        pack_module(
            repo / "modules" / f"bench{i:03d}.1.{i % 7}.0.pi64.tar.gz",
            {f"bin/bench{i:03d}": b"#!/bin/sh\necho " + payload, "README": payload},
            {"name": f"bench{i:03d}", "version": f"1.{i % 7}.0", "platform": "pi64"},
        )
    subprocess.run(
        depot_cmd("user", "add", USER, "--password-stdin", "--data", str(data)),
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        depot_cmd("build", "--repo", str(repo), "--site", str(site)), check=True, capture_output=True
    )
    return repo, site, data


def largest_shard(site: Path, platform: str = "pi64") -> str:
    """The site path of the largest shard the device index entry names for ``platform``."""
    entry = json.loads((site / "device" / "index.json").read_bytes())
    line = next(p for p in entry["platforms"] if p["name"] == platform)
    row = max(line["shards"], key=lambda r: r["size"])
    return posixpath.normpath(posixpath.join("device", row["url"]))


def urls_of(site: Path) -> dict[str, str]:
    routes = load_routes(site)
    icon = next(r["url"] for r in routes if r["url"].startswith("/app/icons/com.example.plain"))
    return {
        "small icon (169 B)": icon,
        "/category/list": "/category/list",
        "pi64 device index shard": "/" + largest_shard(site),
        "/app/list": "/app/list",
        "/app/purchase": f"/app/purchase?id=com.example.plain&device_id={DEVICE}",
    }


STATIC = ("small icon (169 B)", "/category/list", "pi64 device index shard")


# -- servers -----------------------------------------------------------------------------------


@contextmanager
def depot_serve(
    tmp: Path, repo: Path, site: Path, data: Path, workers: int, code: Path | None = None
) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DEPOT_SECRET_KEY": SECRET}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    args = ["serve", "--repo", str(repo), "--site", str(site), "--data", str(data), "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    log = tmp / f"serve-{workers}-{'base' if code else 'now'}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            depot_cmd(*args), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=code or tmp
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url + "/healthz", process)
        yield url
    finally:
        stop(process)


@contextmanager
def nginx(tmp: Path, site: Path, upstream: str, processes: int) -> Iterator[str]:
    assert NGINX is not None
    port = free_port()
    conf = tmp / f"nginx-{processes}"
    conf.mkdir(exist_ok=True)
    generated = subprocess.run(
        depot_cmd("nginx", "--site", str(site), "--upstream", upstream, "--listen", f"127.0.0.1:{port}"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (conf / "depot.conf").write_text(generated)
    (conf / "nginx.conf").write_text(nginx_main_conf(conf, processes))
    process = subprocess.Popen([NGINX, "-c", str(conf / "nginx.conf")], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url + "/category/list", process)
        yield url
    finally:
        stop(process, signal.SIGQUIT)


def session_cookie(url: str) -> str:
    with httpx.Client(base_url=url, timeout=10) as client:
        answer = client.get("/login", params={"username": USER, "password": PASSWORD})
        assert answer.json() == {"status": "ok"}, answer.text
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


# -- load --------------------------------------------------------------------------------------


def wrk_load(url: str, seconds: float, cookie: str | None) -> tuple[float, int]:
    """(requests per second, answers that were not 2xx or failed)."""
    args = ["wrk", "-t2", "-c16", f"-d{seconds:g}s", "--latency"]
    if cookie:
        args += ["-H", f"Cookie: {cookie}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?(\d+)"):
        match = re.search(pattern, out)
        if match:
            bad += sum(int(n) for n in re.findall(r"\d+", match.group(0).split(":", 1)[1]))
    return rate, bad


async def _client(
    host: str, port: int, target: str, cookie: str | None, until: float, counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n" + (f"Cookie: {cookie}\r\n" if cookie else "")
    request = (head + "\r\n").encode()
    try:
        while time.monotonic() < until:
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            counts[0 if status_line.split(b" ")[1].startswith(b"2") else 1] += 1
    finally:
        writer.close()


def python_load(url: str, seconds: float, cookie: str | None) -> tuple[float, int]:
    parsed = httpx.URL(url)
    target = parsed.raw_path.decode()
    counts = [0, 0]

    async def run() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(parsed.host, parsed.port or 80, target, cookie, until, counts) for _ in range(16))
        )

    start = time.monotonic()
    asyncio.run(run())
    return sum(counts) / (time.monotonic() - start), counts[1]


def load(url: str, seconds: float, cookie: str | None = None) -> tuple[float, int]:
    return (wrk_load if shutil.which("wrk") else python_load)(url, seconds, cookie)


# -- the run -----------------------------------------------------------------------------------


def measure_depot(
    tmp: Path, store: tuple[Path, Path, Path], urls: dict[str, str], workers: int, seconds: float, code=None
) -> dict[str, tuple[float, int]]:
    figures = {}
    with depot_serve(tmp, *store, workers=workers, code=code) as url:
        cookie = session_cookie(url)
        for name, path in urls.items():
            load(url + path, 1, cookie)  # warm-up: caches, connections, the session row
            figures[name] = load(url + path, seconds, cookie)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per URL and server")
    parser.add_argument("--baseline", default=None, help="also measure depot serve at this git revision")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    if NGINX is None:
        print("nginx is not installed (scripts/setup-bench)", file=sys.stderr)
        return 1
    tool = "wrk -t2 -c16" if shutil.which("wrk") else "the asyncio client of bench_serve.py (16 connections)"
    load_before = os.getloadavg()
    results: dict[str, dict[str, tuple[float, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="depot-bench-serve-") as folder:
        tmp = Path(folder)
        store = make_store(tmp)
        urls = urls_of(store[1])
        index_size = (store[1] / largest_shard(store[1])).stat().st_size
        baseline_rev = None
        if args.baseline:
            baseline_rev = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            code = tmp / "baseline"
            code.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.baseline, "builder", "runtime"],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
            results[f"depot serve at {baseline_rev} (before)"] = measure_depot(
                tmp, store, urls, 1, args.seconds, code
            )
        results["depot serve, 1 worker"] = measure_depot(tmp, store, urls, 1, args.seconds)
        results["depot serve --workers 2"] = measure_depot(tmp, store, urls, 2, args.seconds)
        with depot_serve(tmp, *store, workers=1) as upstream:
            for processes in (1, 2):
                with nginx(tmp, store[1], upstream.removeprefix("http://"), processes) as front:
                    figures = {}
                    for name in STATIC:
                        load(front + urls[name], 1)
                        figures[name] = load(front + urls[name], args.seconds)
                    results[f"nginx, {processes} worker{'s' if processes > 1 else ''}"] = figures
    text = report(results, urls, index_size, args.seconds, tool, baseline_rev, load_before, os.getloadavg())
    print(text)
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        page = doc.read_text(encoding="utf-8")
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in page and END in page:
            page = page[: page.index(BEGIN)] + block + page[page.index(END) + len(END) :]
        else:
            page = page.rstrip("\n") + "\n\n" + block + "\n"
        doc.write_text(page, encoding="utf-8")
    return 0


def fmt(rate: float) -> str:
    return f"{rate:,.0f}"


def report(
    results: dict[str, dict[str, tuple[float, int]]],
    urls: dict[str, str],
    index_size: int,
    seconds: float,
    tool: str,
    baseline_rev: str | None,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> str:
    servers = list(results)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {now} on {os.cpu_count()} CPUs, CPython {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {load_before[0]:.2f} at the start, "
        f"{load_after[0]:.2f} at the end (a shared machine: the load generator, the server and other "
        f"work share the CPUs). Load: {tool}, {seconds:g} s per URL after 1 s of warm-up, keep-alive, "
        f"127.0.0.1 only. The pi64 device index shard is its largest, {index_size / 1024:.1f} KiB (the "
        "demo store plus 200 generated modules, in 16 shards). Requests per second; errors "
        "(non-2xx or socket errors) in brackets when there were any.",
        "",
        "Reproduce with `scripts/setup-bench && .venv/bin/python benchmarks/bench_serve.py"
        + (f" --baseline {baseline_rev}" if baseline_rev else "")
        + "`.",
        "",
        "| URL | " + " | ".join(servers) + " |",
        "|---" * (len(servers) + 1) + "|",
    ]
    for name in urls:
        cells = []
        for server in servers:
            figure = results[server].get(name)
            if figure is None:
                cells.append("(proxied)")
            else:
                cells.append(fmt(figure[0]) + (f" ({figure[1]} errors)" if figure[1] else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    one, two = results["depot serve, 1 worker"], results["depot serve --workers 2"]
    ng1, ng2 = results["nginx, 1 worker"], results["nginx, 2 workers"]
    lines += ["", "### Goals", "", "| goal | measured | |", "|---|---|---|"]
    for name in STATIC:
        best = max(one[name][0], two[name][0])
        like = min(one[name][0] / ng1[name][0], two[name][0] / ng2[name][0])
        against_best = best / max(ng1[name][0], ng2[name][0])
        lines.append(
            f"| {name}: depot serve >= 25 % of nginx, same processes (1 vs 1, 2 vs 2) | "
            f"{one[name][0] / ng1[name][0]:.0%} and {two[name][0] / ng2[name][0]:.0%} | "
            + ("met" if like >= STATIC_GOAL else "**missed**")
            + " |"
        )
        lines.append(
            f"| {name}: best depot serve >= 25 % of best nginx | {fmt(best)} / "
            f"{fmt(max(ng1[name][0], ng2[name][0]))} = {against_best:.0%} | "
            + ("met" if against_best >= STATIC_GOAL else "**missed**")
            + " |"
        )
    purchase = max(one["/app/purchase"][0], two["/app/purchase"][0])
    base_name = next((s for s in servers if s.endswith("(before)")), None)
    if base_name is not None:
        before = results[base_name]["/app/purchase"][0]
        django_high = before / PURCHASE_OVER_DJANGO[0]
        django_low = before / PURCHASE_OVER_DJANGO[1]
        ratio = purchase / django_high
        lines.append(
            f"| /app/purchase >= 20x Django (Django estimated from the baseline: {fmt(before)} / 8 to 10 = "
            f"{fmt(django_low)} to {fmt(django_high)}) | {fmt(purchase)} = {ratio:.1f}x to "
            f"{purchase / django_low:.1f}x | " + ("met" if ratio >= PURCHASE_GOAL else "**missed**") + " |"
        )
        lines.append(f"| /app/purchase against the baseline {baseline_rev} | {purchase / before:.1f}x | |")
    else:
        lines.append(
            "| /app/purchase >= 20x Django | needs `--baseline` (no Django figure recorded) | not measured |"
        )
    icon = max(one[STATIC[0]][0], two[STATIC[0]][0])
    django = f"~{fmt(DJANGO_ICONS)}, the issue"
    lines.append(f"| small icon against Django's /app/icons ({django}) | {icon / DJANGO_ICONS:.0f}x | |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

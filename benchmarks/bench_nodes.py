#!/usr/bin/env python3
"""Several `depot serve` nodes on PostgreSQL against one node on SQLite, behind one nginx, in one run.

Four set-ups, one after the other (never two at once), on the same repo/ and site/ (the demo
store, built once), each with a fresh data folder and, for PostgreSQL, a fresh database in one
throwaway cluster (tests/support/postgres.py):

- one node on SQLite (``var/depot.db``);
- 1, 2 and 3 nodes on PostgreSQL (``depot serve --database postgresql://…``; the first node
  builds, the others run ``--no-build``, docs/operations.md's second deployment).

Every set-up is reached through one nginx (2 worker processes) with the server block
`depot nginx` generates, its upstream listing every node (round robin: ``depot nginx --node``
when the CLI has it, else the benchmark writes the servers into the generated upstream). Three
loads, each after 1 s of warm-up:

- **Qt ``/app/purchase``** (a session cookie from ``/login``): reads the session and its user;
  ``wrk -t2 -c16``;
- **download counter**: ``POST /api/v1/download/build/counter/`` with ``file_name`` (shipper's
  updater call), which inserts one ``shipper_downloads`` row per request; the counted GET
  downloads (runtime/downloads.py) are summed in memory and written every 5 s, so they would not
  show the database's cost. ``wrk -t2 -c16`` with a Lua script; afterwards the rows are counted
  and compared with the 2xx answers;
- **chunked upload** (shipper protocol, tokens, ``DEPOT_SHIPPER_USER_RATE=off``): 4 client
  threads, each sending uploads of 16 MB in 1 MB chunks back to back on one keep-alive
  connection (an account may hold 4 unfinished uploads, so the uploads take turns over 96
  seeded accounts; they are never completed, which would rebuild the catalog, and their part
  files are removed after the last chunk); then one 64 MB upload in 1 MB chunks on one
  connection, which shows what round robin does to one upload's running SHA-256.

Besides requests per second, the CPU time the nodes and the PostgreSQL server (postmaster and
backends) spent during each load, per request. Loopback only; every process (nodes, nginx,
PostgreSQL) is stopped at the end, also on failure or Ctrl-C. The figures go into
docs/benchmarks.md between the ``nodes`` markers (``--no-write``: print only). Two rounds by
default, in ABBA order (SQLite, 1, 2, 3 nodes, then 3, 2, 1, SQLite), each set-up's best round
reported: on a shared machine, noise only ever slows a run. About 3 minutes.

    .venv/bin/python benchmarks/bench_nodes.py [--seconds 5] [--rounds 2] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import Conn, depot_cmd, free_port, machine, nginx_main_conf, stop, wait_up  # noqa: E402

BEGIN, END = "<!-- nodes:begin -->", "<!-- nodes:end -->"
HEADING = "## Several nodes on PostgreSQL (issue 16)"
SECRET = "bench-nodes-secret-key-of-at-least-32-bytes"
QT_USER, QT_PASSWORD = "bench", "bench-password-123"
DEVICE = "00-11-22-33-44-55"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
ENV = {
    "DEPOT_SECRET_KEY": SECRET,
    "DEPOT_SHIPPER_ANON_RATE": "off",
    "DEPOT_SHIPPER_USER_RATE": "off",
    "DEPOT_LOGIN_ACCOUNT_RATE": "off",
    "DEPOT_LOGIN_ADDRESS_RATE": "off",
    "DEPOT_LOGIN_ACCOUNT_GLOBAL_RATE": "off",
}
BUILD = "Bliss-v14-bullhead-OFFICIAL-gapps-20200601"  # a build of the demo store (repo/builds/)
COUNTER = "/api/v1/download/build/counter/"
UPLOADS = "/api/v1/maintainers/chunked_upload/"
MB = 1_000_000
CHUNK, CHUNKS = MB, 16  # the concurrent uploads: 16 MB each, in 1 MB chunks
UPLOAD_CLIENTS = 4
BIG_CHUNKS = 64  # the single upload: 64 MB in 1 MB chunks
MAINTAINERS = 96  # accounts with a token each; 4 unfinished uploads allowed per account
OPEN_UPLOADS = 4
LOADS = ("purchase", "counter", "upload", "big upload")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- CPU time of process trees -----------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds of the process and of its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    return int(fields[1]), ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of the processes ``roots`` and of every descendant still alive (a reaped one
    is in its parent's cutime/cstime)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            stats[int(entry)] = found
    children: dict[int, list[int]] = {}
    for pid, (parent, _cpu) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total


# -- the store ---------------------------------------------------------------------------------


def make_store(tmp: Path) -> tuple[Path, Path]:
    repo, site = tmp / "repo", tmp / "site"
    shutil.copytree(ROOT / "repo", repo)
    subprocess.run(
        depot_cmd("build", "--repo", str(repo), "--site", str(site)), check=True, capture_output=True, cwd=tmp
    )
    return repo, site


@dataclass
class Seeded:
    tokens: list[str]  # one shipper token per maintainer account


def seed(data: Path, url: str) -> Seeded:
    """The Qt user and the maintainers, with a shipper token each, in a new store database."""
    from runtime.accounts import Accounts
    from runtime.clock import now_iso
    from runtime.dialects import load_dialects
    from runtime.shipper.common import TOKEN_PURPOSE
    from runtime.storage import open_database
    from runtime.tokens import Tokens

    load_dialects()
    db = open_database(data, url)
    try:
        accounts = Accounts(db)
        accounts.add(QT_USER, QT_PASSWORD)
        first = accounts.add("maint000", QT_PASSWORD, staff=True)
        password_hash = db.value("SELECT password_hash FROM users WHERE id = ?", [first.id])
        tokens = [Tokens(db).create(first.id, TOKEN_PURPOSE, name="bench")[1]]
        for i in range(1, MAINTAINERS):  # the same password hash: one scrypt, not 96
            db.table("users").insert(
                {
                    "name": f"maint{i:03d}",
                    "password_hash": password_hash,
                    "staff": 1,
                    "devices": "[]",
                    "created": now_iso(),
                }
            )
            user = accounts.get(f"maint{i:03d}")
            assert user is not None
            tokens.append(Tokens(db).create(user.id, TOKEN_PURPOSE, name="bench")[1])
        return Seeded(tokens)
    finally:
        db.close()


def count_rows(data: Path, url: str, table: str) -> int:
    from runtime.storage import open_database

    db = open_database(data, url)
    try:
        return int(db.value(f"SELECT count(*) FROM {table}"))
    finally:
        db.close()


# -- servers -----------------------------------------------------------------------------------


def node_env() -> dict[str, str]:
    env = {**os.environ, **ENV}
    env.pop("DEPOT_DATABASE_URL", None)  # the SQLite node uses var/depot.db; the others say --database
    return env


@contextlib.contextmanager
def nodes(
    tmp: Path, repo: Path, site: Path, data: Path, url: str, count: int, label: str
) -> Iterator[list[tuple[str, subprocess.Popen]]]:
    """``count`` nodes on one database; the first builds, the others run --no-build."""
    started: list[tuple[str, subprocess.Popen]] = []
    try:
        for i in range(count):
            port = free_port()
            args = ["serve", "--repo", str(repo), "--site", str(site), "--data", str(data)]
            args += ["--host", "127.0.0.1", "--port", str(port)]
            if url:
                args += ["--database", url]
            if i:
                args.append("--no-build")
            with (tmp / f"{label}-node{i + 1}.log").open("wb") as out:
                process = subprocess.Popen(
                    depot_cmd(*args), stdout=out, stderr=subprocess.STDOUT, env=node_env(), cwd=tmp
                )
            started.append((f"127.0.0.1:{port}", process))
            wait_up(f"http://127.0.0.1:{port}/healthz", process)
        yield started
    finally:
        for _address, process in started:
            stop(process)


def nginx_block(site: Path, upstreams: list[str], port: int) -> tuple[str, str]:
    """The server block `depot nginx` generates for these nodes, and how the upstream was made."""
    helptext = subprocess.run(depot_cmd("nginx", "--help"), capture_output=True, text=True, check=True).stdout
    base = ["nginx", "--site", str(site), "--listen", f"127.0.0.1:{port}"]
    if "--node" in helptext:
        args = base + [a for address in upstreams for a in ("--node", address)]
        how = "`depot nginx --node …`"
        block = subprocess.run(depot_cmd(*args), capture_output=True, text=True, check=True).stdout
    else:  # `depot nginx` without --node yet: its one-server upstream, with every node listed
        args = [*base, "--upstream", upstreams[0]]
        block = subprocess.run(depot_cmd(*args), capture_output=True, text=True, check=True).stdout
        servers = "".join(f"    server {address};\n" for address in upstreams)
        block, n = re.subn(r"(upstream depot_runtime \{\n)(?:\s*server [^\n]*\n)+", r"\1" + servers, block)
        assert n == 1, "no upstream block in the output of depot nginx"
        how = "`depot nginx --upstream` with the nodes written into its upstream block by the benchmark"
    for address in upstreams:
        assert address in block, f"{address} is not in the generated upstream"
    # the access log goes to /var/log/nginx in production; here nowhere (the same for every set-up)
    block = re.sub(r"^(\s*)access_log [^;]*;", r"\1access_log off;", block, flags=re.MULTILINE)
    return block, how


@contextlib.contextmanager
def nginx(tmp: Path, site: Path, upstreams: list[str], label: str) -> Iterator[tuple[str, int, str]]:
    assert NGINX is not None
    port = free_port()
    conf = tmp / f"nginx-{label}"
    conf.mkdir()
    block, how = nginx_block(site, upstreams, port)
    (conf / "depot.conf").write_text(block)
    (conf / "nginx.conf").write_text(nginx_main_conf(conf, 2))
    check = subprocess.run([NGINX, "-t", "-c", str(conf / "nginx.conf")], capture_output=True, text=True)
    if check.returncode:
        raise RuntimeError(f"nginx -t: {check.stderr}")
    process = subprocess.Popen([NGINX, "-c", str(conf / "nginx.conf")], stderr=subprocess.DEVNULL)
    try:
        wait_up(f"http://127.0.0.1:{port}/category/list", process)
        yield f"http://127.0.0.1:{port}", process.pid, how
    finally:
        stop(process, signal.SIGQUIT)


def session_cookie(url: str) -> str:
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = client.get("/login", params={"username": QT_USER, "password": QT_PASSWORD})
        assert answer.json() == {"status": "ok"}, answer.text
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


# -- loads -------------------------------------------------------------------------------------


@dataclass
class Load:
    rate: float  # requests (chunks) per second
    requests: int  # answered in the measured window
    good: int  # 2xx among them
    seconds: float
    cpu_nodes: float = float("nan")  # CPU seconds of the nodes in the window
    cpu_pg: float = float("nan")  # of the PostgreSQL server
    mb_s: float = float("nan")  # uploads: MB of chunks per second
    errors: list[str] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return self.requests - self.good


def wrk(url: str, seconds: float, header: str | None = None, script: Path | None = None) -> Load:
    args = ["wrk", "-t2", "-c16", f"-d{seconds:g}s"]
    if header:
        args += ["-H", header]
    if script:
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = 0
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if match:
        bad += int(match.group(1))
    errors = []
    match = re.search(r"Socket errors:[^\n]*", out)
    if match:
        errors.append(match.group(0).strip())
    return Load(rate, requests, requests - bad, seconds, errors=errors)


BOUNDARY = "depotbenchnodes0123456789"
PAYLOAD = os.urandom(CHUNK)
PRE_FILE = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\n'
    "Content-Type: application/octet-stream\r\n\r\n"
).encode()
POST_FILE = f"\r\n--{BOUNDARY}--\r\n".encode()


def chunk_body(filename: str | None) -> list[bytes]:
    pre = b""
    if filename:
        pre = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="filename"\r\n\r\n{filename}\r\n'.encode()
        )
    return [pre + PRE_FILE, PAYLOAD, POST_FILE]


class Uploader:
    """Chunked uploads from the seeded accounts: each upload takes one of the 4 unfinished-upload
    slots of an account (``slots``, a queue of tokens)."""

    def __init__(self, port: int, data: Path, tokens: list[str]) -> None:
        self.port, self.parts = port, data / "shipper-uploads"
        self.slots: queue.SimpleQueue[str] = queue.SimpleQueue()
        for _ in range(OPEN_UPLOADS):
            for token in tokens:
                self.slots.put(token)
        self.names = iter(range(10**9))
        self.lock = threading.Lock()

    def upload(self, conn: Conn, chunks: int, until: float, counts: list[int], errors: list[str]) -> bool:
        """One upload of ``chunks`` chunks; stops at ``until`` (monotonic). False: stop there."""
        try:
            token = self.slots.get_nowait()
        except queue.Empty:
            errors.append("out of upload slots (accounts)")
            return False
        with self.lock:
            name = f"Bliss-v14-bullhead-OFFICIAL-gapps-bench{next(self.names):06d}.zip"
        total = chunks * CHUNK
        upload_id = None
        for i in range(chunks):
            if time.monotonic() >= until:
                return False
            headers = {
                "Authorization": f"Token {token}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Content-Range": f"bytes {i * CHUNK}-{(i + 1) * CHUNK - 1}/{total}",
            }
            path = f"{UPLOADS}{upload_id}/" if upload_id else UPLOADS
            status, answer = conn.request("PUT", path, headers, chunk_body(None if upload_id else name))
            counts[0] += 1
            if status != 200:
                counts[1] += 1
                errors.append(
                    f"chunk {i + 1} of upload {upload_id}: {status} {answer[:160].decode(errors='replace')}"
                )
                return len(errors) < 20
            upload_id = json.loads(answer)["id"]
        with contextlib.suppress(FileNotFoundError):  # never completed: keep the disk use down
            (self.parts / f"{upload_id}.part").unlink()
        return True

    def run(self, clients: int, chunks: int, seconds: float) -> tuple[int, int, float, list[str]]:
        """(chunks answered, of them not 200, seconds, errors) of ``clients`` threads."""
        counts = [[0, 0] for _ in range(clients)]
        errors: list[str] = []
        began = time.monotonic()
        until = began + seconds

        def client(mine: list[int]) -> None:
            conn = Conn(self.port)
            try:
                while time.monotonic() < until and self.upload(conn, chunks, until, mine, errors):
                    pass
            except Exception as exc:  # a dropped connection: say so, the others go on
                errors.append(f"client: {exc!r}")
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in counts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - began
        return sum(c[0] for c in counts), sum(c[1] for c in counts), took, errors

    def single(self, chunks: int) -> tuple[int, int, float, list[str]]:
        counts, errors = [0, 0], []
        conn = Conn(self.port)
        began = time.monotonic()
        try:
            self.upload(conn, chunks, began + 600, counts, errors)
        finally:
            conn.close()
        return counts[0], counts[1], time.monotonic() - began, errors


# -- one set-up --------------------------------------------------------------------------------


@dataclass
class Round:
    """One set-up's figures in one round (its own nodes, data folder and database)."""

    loads: dict[str, Load] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    counter_rows: int = 0
    counter_answers: tuple[int, int] = (0, 0)  # (2xx, all) over warm-up and measurement


@dataclass
class Setup:
    label: str
    engine: str
    nodes: int
    rounds: list[Round] = field(default_factory=list)
    upstream: str = ""

    def best(self, key: str) -> Load:
        """The round with the highest figure: noise on a shared machine only ever slows a run."""
        return max((r.loads[key] for r in self.rounds), key=lambda load: figure(load, key))


def measured(do: Callable[[], Load], node_pids: list[int], pg_pid: int | None) -> Load:
    nodes_before = tree_cpu(node_pids)
    pg_before = tree_cpu([pg_pid]) if pg_pid else 0.0
    result = do()
    result.cpu_nodes = tree_cpu(node_pids) - nodes_before
    result.cpu_pg = tree_cpu([pg_pid]) - pg_before if pg_pid else float("nan")
    return result


def run_setup(
    setup: Setup, number: int, tmp: Path, repo: Path, site: Path, cluster: Any, seconds: float, script: Path
) -> None:
    label = setup.label.replace(" ", "-").replace(",", "") + f"-round{number}"
    rnd = Round()
    setup.rounds.append(rnd)
    data = tmp / f"var-{label}"
    url = cluster.create_database("bench") if setup.engine == "postgresql" else ""
    seeded = seed(data, url)
    pg_pid = cluster.process.pid if setup.engine == "postgresql" else None
    with nodes(tmp, repo, site, data, url, setup.nodes, label) as running:
        for address, _process in running:
            health = httpx.get(f"http://{address}/healthz", timeout=10).json()
            if health.get("status") != "ok":
                raise RuntimeError(f"{address}/healthz: {health}")
        # the engine: only the SQLite node has a database file in the data folder
        if (data / "depot.db").exists() != (setup.engine == "sqlite"):
            raise RuntimeError(f"{setup.label}: var/depot.db exists: {(data / 'depot.db').exists()}")
        pids = [process.pid for _address, process in running]
        with nginx(tmp, site, [a for a, _p in running], label) as (front, _nginx_pid, how):
            setup.upstream = how
            cookie = session_cookie(front)
            purchase = f"{front}/app/purchase?id=com.example.plain&device_id={DEVICE}"
            log(f"  {setup.label} (round {number}): /app/purchase")
            wrk(purchase, 1, f"Cookie: {cookie}")
            rnd.loads["purchase"] = measured(
                lambda: wrk(purchase, seconds, f"Cookie: {cookie}"), pids, pg_pid
            )
            log(f"  {setup.label} (round {number}): download counter")
            before = count_rows(data, url, "shipper_downloads")
            warm = wrk(front + COUNTER, 1, script=script)
            rnd.loads["counter"] = measured(
                lambda: wrk(front + COUNTER, seconds, script=script), pids, pg_pid
            )
            time.sleep(0.5)  # requests wrk cut off at its end may still be inserting
            rnd.counter_rows = count_rows(data, url, "shipper_downloads") - before
            counted = rnd.loads["counter"]
            rnd.counter_answers = (warm.good + counted.good, warm.requests + counted.requests)
            log(f"  {setup.label} (round {number}): chunked uploads")
            uploader = Uploader(int(front.rsplit(":", 1)[1]), data, seeded.tokens)
            uploader.run(UPLOAD_CLIENTS, CHUNKS, 1)

            def uploads() -> Load:
                n, bad, took, errors = uploader.run(UPLOAD_CLIENTS, CHUNKS, seconds)
                load = Load(n / took, n, n - bad, took, errors=errors[:3])
                load.mb_s = (n - bad) * CHUNK / MB / took
                return load

            rnd.loads["upload"] = measured(uploads, pids, pg_pid)

            def big() -> Load:
                n, bad, took, errors = uploader.single(BIG_CHUNKS)
                load = Load(n / took, n, n - bad, took, errors=errors[:3])
                load.mb_s = (n - bad) * CHUNK / MB / took
                return load

            log(f"  {setup.label} (round {number}): one {BIG_CHUNKS} MB upload")
            rnd.loads["big upload"] = measured(big, pids, pg_pid)
        for i, (_address, process) in enumerate(running):
            if process.poll() is not None:
                rnd.notes.append(f"node {i + 1} exited with {process.returncode} during the run")
    # what the nodes logged besides access lines and start-up
    for i in range(setup.nodes):
        text = (tmp / f"{label}-node{i + 1}.log").read_text(errors="replace")
        tracebacks = text.count("Traceback (most recent call last)")
        warnings = [line for line in text.splitlines() if re.search(r"\b(ERROR|WARNING|CRITICAL)\b", line)]
        if tracebacks or warnings:
            first = warnings[0][:200] if warnings else ""
            # the exception that ended the first traceback: its last line
            ending = re.search(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)+(\S.*)", text)
            rnd.notes.append(
                f"node {i + 1} logged {tracebacks} tracebacks and {len(warnings)} error/warning lines"
                + (f" (first: `{first}`)" if first else "")
                + (f" (the first traceback ends in `{ending.group(1)[:200]}`)" if ending else "")
            )
    shutil.rmtree(data, ignore_errors=True)


# -- the report --------------------------------------------------------------------------------


def fmt(rate: float) -> str:
    return f"{rate:,.0f}"


ROWS = {
    "purchase": "Qt `/app/purchase` (session + user read), req/s",
    "counter": f"download counter `POST {COUNTER}` (1 row inserted), req/s",
    "upload": f"chunked upload, {UPLOAD_CLIENTS} clients, {CHUNKS} MB uploads in 1 MB chunks: "
    "chunks/s (= MB/s)",
    "big upload": f"one {BIG_CHUNKS} MB upload in 1 MB chunks, one connection: MB/s",
}


def figure(load: Load, key: str) -> float:
    return load.mb_s if key == "big upload" else load.rate


def cell(load: Load, base: Load | None, key: str) -> str:
    value = figure(load, key)
    text = f"{value:,.0f}"
    if base is not None and figure(base, key):
        text += f" ({value / figure(base, key):.2f}x)"
    if load.bad:
        text += f" [{load.bad} not 2xx]"
    return text


def report(setups: list[Setup], info: dict[str, str], seconds: float, pg_version: str) -> str:
    base = setups[0]
    rounds = len(base.rounds)
    order = " (SQLite, PostgreSQL with 1, 2, 3 nodes, then the other way, and so on)" if rounds > 1 else ""
    lines = [
        f"Measured {info['date']} on {info['cpus']} CPUs ({info['cpu']}), {info['python']}, {info['os']}, "
        f"{pg_version}; load average (1, 5, 15 min) {info['load']} at the start, {info['load_end']} at the "
        "end (a shared machine: wrk, nginx, the nodes, PostgreSQL and other sessions' work share the "
        f"two cores). Load: wrk -t2 -c16 for {seconds:g} s per URL (the uploads: {UPLOAD_CLIENTS} Python "
        f"threads for {seconds:g} s) after 1 s of warm-up, 127.0.0.1, always through nginx "
        f"(2 workers, {base.upstream}; no upstream keep-alive, as generated). One `depot serve` process "
        "per node. PostgreSQL is the tests' throwaway cluster (`fsync=off`, `synchronous_commit=off`: a "
        "commit does not wait for the disk, nor does SQLite's in WAL mode with `synchronous=NORMAL`). "
        f"{rounds} round{'s' if rounds > 1 else ''}{order}, each set-up with new nodes, a new data "
        "folder and a new database; the tables show each set-up's best round, in brackets its ratio "
        "to the SQLite node's best.",
        "",
        "Reproduce with `scripts/setup-bench && .venv/bin/python benchmarks/bench_nodes.py`.",
        "",
        "| load | " + " | ".join(s.label for s in setups) + " |",
        "|---" * (len(setups) + 1) + "|",
    ]
    for key, title in ROWS.items():
        cells = [cell(s.best(key), None if s is base else base.best(key), key) for s in setups]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "CPU time per request (chunk) in the same rounds, in µs: the nodes together / the PostgreSQL "
        "server (postmaster and backends). Other work on the machine is not in these, but it slows "
        "them (shared caches, more switches).",
        "",
        "| load | " + " | ".join(s.label for s in setups) + " |",
        "|---" * (len(setups) + 1) + "|",
    ]
    for key in ROWS:
        cells = []
        for s in setups:
            load = s.best(key)
            per_node = load.cpu_nodes / max(load.requests, 1) * 1e6
            per_pg = load.cpu_pg / max(load.requests, 1) * 1e6 if load.cpu_pg == load.cpu_pg else None
            cells.append(f"{per_node:,.0f} / " + ("-" if per_pg is None else f"{per_pg:,.0f}"))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if rounds > 1:
        lines += [
            "",
            "Every round (requests, chunks or MB per second), for the spread:",
            "",
            "| load | " + " | ".join(s.label for s in setups) + " |",
            "|---" * (len(setups) + 1) + "|",
        ]
        for key in ROWS:
            cells = [" / ".join(f"{figure(r.loads[key], key):,.0f}" for r in s.rounds) for s in setups]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "Checks:", ""]
    for s in setups:
        pairs = ", ".join(f"{r.counter_rows:,} / {r.counter_answers[0]:,}" for r in s.rounds)
        missing = any(r.counter_rows < r.counter_answers[0] for r in s.rounds)
        lines.append(
            f"- {s.label}: download counter, rows inserted / 2xx answers, per round: {pairs} ("
            + ("**rows missing**" if missing else "every answer has its row")
            + "; the requests wrk cuts off at its end, up to 16 per wrk run, add rows without answers)"
        )
        for number, r in enumerate(s.rounds, 1):
            for key in ROWS:
                for error in r.loads[key].errors:
                    lines.append(f"- {s.label}, round {number}: {key}: `{error[:200]}`")
            for note in r.notes:
                lines.append(f"- {s.label}, round {number}: {note}")
    return "\n".join(lines)


INTRO = """\
Throughput of the dynamic endpoints with the runtime's state in PostgreSQL, with 1, 2 and 3
`depot serve` nodes on one database behind one nginx upstream (round robin), beside one node on
SQLite, in one run (`benchmarks/bench_nodes.py`; its docstring says what each load does). The
figures are written between the markers; the reading under them is by hand, of the run shown.
"""


def write_docs(body: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{INTRO}\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    path.write_text(head + BEGIN + "\n" + body + "\n" + END + tail, encoding="utf-8")


# -- the run -----------------------------------------------------------------------------------


def interrupted(signum: int, _frame: object) -> None:
    """SIGTERM ends the run like Ctrl-C, so every finally stops what it started."""
    raise KeyboardInterrupt(f"signal {signum}")


def show_logs(tmp: Path) -> None:
    for path in sorted(tmp.glob("*.log")) + sorted(tmp.glob("nginx-*/error.log")):
        tail = path.read_text(errors="replace")[-1500:]
        log(f"--- {path.name} (end) ---\n{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per endpoint and set-up")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, in ABBA order (default 2)")
    parser.add_argument(
        "--no-write", "--no-docs", action="store_true", help="print, do not touch docs/benchmarks.md"
    )
    parser.add_argument("--only", nargs="+", help=argparse.SUPPRESS)  # e.g. --only sqlite "2 nodes"
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs) at the end")
    args = parser.parse_args(argv)
    if NGINX is None or shutil.which("wrk") is None:
        log("nginx and wrk are needed (scripts/setup-bench)")
        return 1
    from tests.support.postgres import start_cluster

    signal.signal(signal.SIGTERM, interrupted)
    info = machine()
    setups = [
        Setup("SQLite, 1 node", "sqlite", 1),
        Setup("PostgreSQL, 1 node", "postgresql", 1),
        Setup("PostgreSQL, 2 nodes", "postgresql", 2),
        Setup("PostgreSQL, 3 nodes", "postgresql", 3),
    ]
    if args.only:  # a subset, to look into one (the docs are not written then)
        setups = [s for s in setups if any(word.lower() in s.label.lower() for word in args.only)]
        args.no_write = True
    tmp = Path(tempfile.mkdtemp(prefix="depot-bench-nodes-"))
    cluster = None
    try:
        log("building the store")
        repo, site = make_store(tmp)
        script = tmp / "counter.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = "file_name={BUILD}"\n'
            'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        )
        log("starting PostgreSQL")
        cluster = start_cluster()
        if isinstance(cluster, str):
            log(cluster)
            cluster = None
            return 1
        with cluster._admin() as conn:  # the version, for the report
            pg_version = "PostgreSQL " + str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
        for number in range(1, args.rounds + 1):  # ABBA: the drift of a noisy machine evens out
            for setup in setups if number % 2 else setups[::-1]:
                log(f"{setup.label}, round {number}")
                run_setup(setup, number, tmp, repo, site, cluster, args.seconds, script)
        info["load_end"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except BaseException:
        show_logs(tmp)
        if cluster is not None and not isinstance(cluster, str):
            log("--- PostgreSQL (end) ---\n" + cluster.log_tail(1500))
        raise
    finally:
        if cluster is not None:
            cluster.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    body = report(setups, info, args.seconds, pg_version)
    print(body)
    if not args.no_write:
        write_docs(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

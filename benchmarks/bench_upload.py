#!/usr/bin/env python3
"""Uploads at disk speed: shipper's chunked protocol, Qt ``POST /upload`` and the portal's CI
upload against a real `depot serve` on 127.0.0.1, with the rate limits off.

For each size (200 MB; 2 GB with ``--big``) and chunk size (1 MB, shippy's, and 8 MB) a client
of its own sends the chunks back to back over one keep-alive connection (raw sockets, so the
client costs little), then completes the upload. It reports the chunk phase's throughput, the
completion's time (which includes the catalog rebuild the runtime runs before it answers), and
the server's memory: ``VmHWM`` (peak RSS, reset through ``/proc/<pid>/clear_refs`` before each
upload) minus ``VmRSS`` before it. References: SHA-256 of the same bytes in this process, and
writing them to a file in the data folder with one fsync. The real shippy runs the 200 MB upload
too when `scripts/setup-shippy` installed it. Qt and the portal receive one 200 MB body each
(not a valid package: what is measured is the receiving, which ends in the validation's refusal).

    .venv/bin/python benchmarks/bench_upload.py [--big] [--no-shippy] [--no-docs] [--work /tmp/x]

Figures go into docs/benchmarks.md between the ``upload`` markers. Loopback only, bounded in
time; the scratch folder is removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import Conn, free_port, machine  # noqa: E402

BEGIN, END = "<!-- upload:begin -->", "<!-- upload:end -->"
MB = 1_000_000
BASE = "/api/v1/maintainers/chunked_upload/"
USER, PASSWORD = "bench", "bench-password-123"
NO_LIMITS = {
    "DEPOT_SHIPPER_ANON_RATE": "off",
    "DEPOT_SHIPPER_USER_RATE": "off",
    "DEPOT_LOGIN_ACCOUNT_RATE": "off",
    "DEPOT_LOGIN_ADDRESS_RATE": "off",
    "DEPOT_LOGIN_ACCOUNT_GLOBAL_RATE": "off",
    "DEPOT_SECRET_KEY": "bench-secret-key-of-at-least-32-bytes!!",
}
GOALS = {8 * MB: 200.0, 1 * MB: 150.0}  # MB/s of the chunk phase
RSS_GOAL_2GB = 50 * 1024**2


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def depot(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "runtime.cli", *args], text=True, check=True, cwd=ROOT, **kwargs
    )


def proc_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far: what the server spent,
    whatever else the machine was doing."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Memory:
    """Peak RSS of the server during one measurement: VmHWM after resetting it, minus VmRSS
    before (falls back to sampling VmRSS when the kernel does not reset VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = 0
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Memory:
        with contextlib.suppress(OSError):  # resets VmHWM (Linux 4.0 and later)
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.before = proc_kib(self.pid, "VmRSS")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(proc_kib(self.pid, "VmRSS"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max([proc_kib(self.pid, "VmHWM"), *self.samples])
        self.growth = max(0, self.peak - self.before)


def multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes) -> tuple[str, list[Any]]:
    boundary = uuid.uuid4().hex
    pre = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    pre += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return f"multipart/form-data; boundary={boundary}", [pre, data, f"\r\n--{boundary}--\r\n".encode()]


def make_zip(path: Path, size: int) -> None:
    """A stored (uncompressed) zip of about ``size`` bytes, written in blocks (no 2 GB in memory)."""
    block = os.urandom(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("META-INF/com/android/metadata", "pre-device=bullhead\n")
        info = zipfile.ZipInfo("payload.bin", date_time=(2020, 1, 1, 0, 0, 0))
        with archive.open(info, "w", force_zip64=True) as out:
            left = size - 4096
            while left > 0:
                piece = block[: min(left, len(block))]
                out.write(piece)
                left -= len(piece)


@dataclass
class ChunkRun:
    label: str
    size: int
    chunk: int
    upload_s: float
    finalize_s: float
    growth: int
    status: int
    client: str = "bench client"
    cpu_s: float = float("nan")  # the server's CPU time during the chunk phase

    @property
    def rate(self) -> float:
        return self.size / MB / self.upload_s


@dataclass
class Figures:
    chunked: list[ChunkRun] = field(default_factory=list)
    refs: dict[int, dict[str, float]] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Server:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.repo, self.site, self.data = work / "repo", work / "site", work / "var"
        shutil.copytree(ROOT / "repo", self.repo)
        self.port = free_port()
        toml = self.repo / "depot.toml"
        text = toml.read_text()
        text = text.replace(
            'base_url = "http://127.0.0.1:8000"', f'base_url = "http://127.0.0.1:{self.port}"'
        )
        toml.write_text(text)
        env = {**os.environ, **NO_LIMITS}
        depot(
            "user",
            "add",
            USER,
            "--password-stdin",
            "--staff",
            "--data",
            str(self.data),
            input=PASSWORD + "\n",
            capture_output=True,
            env=env,
        )
        self.log = (work / "serve.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runtime.cli",
                "serve",
                "--repo",
                str(self.repo),
                "--site",
                str(self.site),
                "--data",
                str(self.data),
                "--port",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("depot serve did not start; see " + str(work / "serve.log"))
            time.sleep(0.1)

    def token(self) -> str:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = f"username={USER}&password={PASSWORD}"
        c.request(
            "POST", "/api/v1/maintainers/login/", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        return str(json.loads(c.getresponse().read())["token"])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def chunked_upload(server: Server, token: str, path: Path, name: str, chunk: int) -> ChunkRun:
    size = path.stat().st_size
    raw = Conn(server.port)
    auth = {"Authorization": f"Token {token}"}
    upload_id = None
    fd = os.open(path, os.O_RDONLY)
    try:
        with Memory(server.process.pid) as memory:
            cpu_began = cpu_seconds(server.process.pid)
            began = time.perf_counter()
            offset = 0
            while offset < size:
                data = os.pread(fd, chunk, offset)
                ctype, body = multipart({"filename": name}, "file", "file", data)
                headers = {
                    **auth,
                    "Content-Type": ctype,
                    "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{size}",
                }
                url = f"{BASE}{upload_id}/" if upload_id else BASE
                status, answer = raw.request("PUT", url, headers, body)
                if status != 200:
                    raise RuntimeError(f"chunk at {offset}: {status} {answer[:300]!r}")
                upload_id = json.loads(answer)["id"]
                offset += len(data)
            uploaded = time.perf_counter()
            cpu = cpu_seconds(server.process.pid) - cpu_began
            digest = sha256_of(path)
            form = f"sha256={digest}".encode()
            status, answer = raw.request(
                "POST",
                f"{BASE}{upload_id}/",
                {**auth, "Content-Type": "application/x-www-form-urlencoded"},
                [form],
            )
            done = time.perf_counter()
    finally:
        os.close(fd)
        raw.close()
    if status != 200:
        raise RuntimeError(f"completion: {status} {answer[:300]!r}")
    return ChunkRun(
        f"{size / MB:.0f} MB",
        size,
        chunk,
        uploaded - began,
        done - uploaded,
        memory.growth,
        status,
        cpu_s=cpu,
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def references(path: Path, data_dir: Path) -> dict[str, float]:
    """SHA-256 of the bytes in this process (from the page cache), and a plain write + fsync."""
    sha256_of(path)  # warm the page cache
    began = time.perf_counter()
    sha256_of(path)
    hashed = time.perf_counter() - began
    target = data_dir / "bench-reference.tmp"
    began = time.perf_counter()
    with path.open("rb") as src, target.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    written = time.perf_counter() - began
    target.unlink()
    return {"sha256_s": hashed, "write_s": written}


def shippy_run(server: Server, token: str, path: Path, name: str, work: Path) -> ChunkRun | None:
    python = ROOT / ".venv-shippy/bin/python"
    if not python.exists():
        return None
    home, folder = work / "shippy-home", work / "shippy-work"
    home.mkdir()
    folder.mkdir()
    target = folder / name
    os.link(path, target)
    digest = sha256_of(path)
    (folder / f"{name}.sha256sum").write_text(f"{digest}  {name}\n")
    (home / ".shippy.ini").write_text(
        f"[shippy]\nserver = http://127.0.0.1:{server.port}\ntoken = {token}\n"
        "UploadWithoutPrompt = true\nDisableBuildOnUpload = false\ndebug = false\n"
    )
    harness = (
        "import sys, sentry_sdk; sentry_sdk.init = lambda *a, **k: None; "
        "import shippy.__main__ as m; m.check_shippy_update = lambda: None; "
        "sys.argv = ['shippy', '-y']; m.main()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    with Memory(server.process.pid) as memory:
        began = time.perf_counter()
        done = subprocess.run(
            [str(python), "-c", harness],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        took = time.perf_counter() - began
    if done.returncode != 0:
        log(f"shippy failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    size = path.stat().st_size
    # shippy's run is one figure: chunks, its own SHA-256 of the file, completion
    return ChunkRun(
        f"{size / MB:.0f} MB",
        size,
        MB,
        took,
        float("nan"),
        memory.growth,
        200 if done.returncode == 0 else done.returncode,
        client="real shippy (whole run)",
    )


def qt_upload(server: Server, path: Path) -> dict[str, Any]:
    raw = Conn(server.port)
    data = path.read_bytes()
    fields = {"description": "d", "short-description": "s", "category": "Tools", "vendor": "Qt"}
    with open(server.repo / "depot.toml") as f:
        text = f.read()
    if 'name = "Tools"' not in text:
        fields["category"] = text.split("categories", 1)[1].split('name = "', 1)[1].split('"', 1)[0]
        fields["vendor"] = text.split("vendors", 1)[1].split('name = "', 1)[1].split('"', 1)[0]
    ctype, body = multipart(fields, "package", "big.appkg", data)
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    try:
        with Memory(server.process.pid) as memory:
            began = time.perf_counter()
            status, answer = raw.request(
                "POST", "/upload", {"Authorization": f"Basic {basic}", "Content-Type": ctype}, body
            )
            took = time.perf_counter() - began
    finally:
        raw.close()
        del data, body
    return {
        "what": "Qt POST /upload",
        "size": path.stat().st_size,
        "s": took,
        "growth": memory.growth,
        "answer": f"{status} {answer[:80].decode(errors='replace')}",
    }


def portal_upload(server: Server, path: Path) -> dict[str, Any]:
    import runtime.portal.endpoints  # noqa: F401  (the portal's schema)
    from runtime.accounts import Accounts
    from runtime.storage import open_database
    from runtime.tokens import Tokens

    db = open_database(server.data)
    try:
        user = Accounts(db).get(USER)
        assert user is not None
        token = Tokens(db).create(user.id, "ci", name="bench", scope="")[1]
    finally:
        db.close()
    raw = Conn(server.port)
    data = path.read_bytes()
    ctype, body = multipart({}, "apk", "app.apk", data)
    try:
        with Memory(server.process.pid) as memory:
            began = time.perf_counter()
            status, answer = raw.request(
                "POST",
                "/portal/api/uploads/ci",
                {"Authorization": f"Bearer {token}", "Content-Type": ctype},
                body,
            )
            took = time.perf_counter() - began
    finally:
        raw.close()
        del data, body
    return {
        "what": "portal POST /portal/api/uploads/ci",
        "size": path.stat().st_size,
        "s": took,
        "growth": memory.growth,
        "answer": f"{status} {answer[:80].decode(errors='replace')}",
    }


def mib(n: float) -> str:
    return f"{n / 1024**2:.1f} MiB"


def render(fig: Figures, command: str) -> str:
    i = fig.info
    lines = [
        f"Measured {i['date']} on {i['cpus']} CPUs ({i['cpu']}), {i['python']}, {i['os']}; load average "
        f"(1, 5, 15 min) {i['load']} at the start, {i['load_end']} at the end (a shared machine: other work "
        "competes for the CPUs and the disk). A real `depot serve` on 127.0.0.1, rate limits off, the "
        "scratch folder under /tmp. Reproduce with:",
        "",
        "```sh",
        command,
        "```",
        "",
        "### Goals",
        "",
        "| goal | measured | |",
        "|---|---|---|",
    ]
    for run in fig.chunked:
        if run.client != "bench client":
            continue
        goal = GOALS.get(run.chunk)
        if goal is not None:
            ok = run.rate >= goal
            lines.append(
                f"| chunk phase ≥ {goal:.0f} MB/s in {run.chunk // MB} MB chunks ({run.label}) | "
                f"{run.rate:.0f} MB/s ({run.rate / goal:.2f}x the goal) | {'met' if ok else '**missed**'} |"
            )
    for run in fig.chunked:
        if run.size >= 1_900 * MB and run.client == "bench client":
            ok = run.growth <= RSS_GOAL_2GB
            lines.append(
                f"| RSS growth ≤ 50 MB for a 2 GB upload ({run.chunk // MB} MB chunks) | "
                f"{mib(run.growth)} | {'met' if ok else '**missed**'} |"
            )
    finals = [r for r in fig.chunked if r.client == "bench client"]
    if len({r.size for r in finals}) > 1:
        small = min(finals, key=lambda r: r.size)
        big = max(finals, key=lambda r: r.size)
        lines.append(
            f"| completion independent of the size | {small.label}: {small.finalize_s:.2f} s, "
            f"{big.label}: {big.finalize_s:.2f} s | **missed**: the catalog rebuild hashes the new build |"
        )
    for body in fig.bodies:
        ok = body["growth"] < body["size"] / 4
        lines.append(
            f"| {body['what']}: memory bounded ({body['size'] / MB:.0f} MB body) | "
            f"{mib(body['growth'])} | {'met' if ok else '**missed**'} |"
        )
    lines += [
        "",
        "### Chunked upload (shipper)",
        "",
        "| client | size | chunk | chunk phase | MB/s | server CPU in it | MB per server CPU s "
        "| completion | server RSS growth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in fig.chunked:
        fin = "in the run" if run.finalize_s != run.finalize_s else f"{run.finalize_s:.2f} s"
        cpu = "-" if run.cpu_s != run.cpu_s else f"{run.cpu_s:.2f} s"
        per_cpu = "-" if run.cpu_s != run.cpu_s or not run.cpu_s else f"{run.size / MB / run.cpu_s:.0f}"
        lines.append(
            f"| {run.client} | {run.label} | {run.chunk // MB} MB | {run.upload_s:.2f} s | "
            f"{run.rate:.0f} | {cpu} | {per_cpu} | {fin} | {mib(run.growth)} |"
        )
    lines += ["", "References (the same bytes, in this process):", ""]
    for size, ref in sorted(fig.refs.items()):
        lines.append(
            f"- {size / MB:.0f} MB: SHA-256 {ref['sha256_s']:.2f} s "
            f"({size / MB / ref['sha256_s']:.0f} MB/s); write to the data folder + one fsync "
            f"{ref['write_s']:.2f} s ({size / MB / ref['write_s']:.0f} MB/s)"
        )
        for run in fig.chunked:
            if run.size == size and run.client == "bench client":
                lines.append(
                    f"  - {run.chunk // MB} MB chunks: chunk phase / SHA-256 = "
                    f"{run.upload_s / ref['sha256_s']:.1f}x, / write+fsync = "
                    f"{run.upload_s / ref['write_s']:.1f}x"
                )
    if fig.bodies:
        lines += [
            "",
            "### One-request uploads",
            "",
            "| endpoint | body | time | MB/s | server RSS growth | answer |",
            "|---|---|---|---|---|---|",
        ]
        for b in fig.bodies:
            lines.append(
                f"| {b['what']} | {b['size'] / MB:.0f} MB | {b['s']:.2f} s | {b['size'] / MB / b['s']:.0f} | "
                f"{mib(b['growth'])} | `{b['answer'].strip()[:60]}` |"
            )
    notes = [
        *fig.notes,
        "Completion is the runtime's part (the running SHA-256, no read of the build, an fsync of what "
        "the kernel has not written yet, the zip's central directory, the link into repo/) plus the "
        "catalog rebuild it runs before answering; that rebuild's OTA reader "
        "(`builder/shipper/ota.py` `read_build`) hashes the whole new build once more, which is what "
        "still grows with the size.",
        "Qt's RSS growth is the scrypt check of the Basic-auth password (32 MiB by its parameters), "
        "not the body.",
    ]
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def write_docs(body: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    if BEGIN not in text or END not in text:
        text = text.rstrip() + "\n\n## Uploads (`benchmarks/bench_upload.py`)\n\n" + BEGIN + "\n" + END + "\n"
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    path.write_text(head + BEGIN + "\n" + body + "\n" + END + tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", action="store_true", help="also 2 GB (needs about 7 GB of disk, minutes)")
    parser.add_argument("--size", type=int, default=200, help="the regular size, in MB")
    parser.add_argument("--no-shippy", action="store_true", help="skip the real shippy")
    parser.add_argument("--no-bodies", action="store_true", help="skip the Qt and portal uploads")
    parser.add_argument("--no-docs", action="store_true", help="print, do not rewrite docs/benchmarks.md")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new one in /tmp)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="depot-upload-bench-", dir=args.work or "/tmp"))
    fig = Figures(info=machine())
    sizes = [args.size * MB] + ([2_000 * MB] if args.big else [])
    server = None
    try:
        server = Server(work)
        token = server.token()
        day = 0
        for size in sizes:
            path = work / f"payload-{size}.zip"
            make_zip(path, size)
            fig.refs[path.stat().st_size] = references(path, server.data)
            for chunk in (MB, 8 * MB):
                day += 1
                name = f"Bliss-v14.{day}-bullhead-OFFICIAL-gapps-202007{day:02d}.zip"
                log(f"chunked: {size / MB:.0f} MB in {chunk // MB} MB chunks")
                run = chunked_upload(server, token, path, name, chunk)
                run.size = path.stat().st_size
                log(f"  {run.rate:.0f} MB/s, completion {run.finalize_s:.2f} s, RSS +{mib(run.growth)}")
                fig.chunked.append(run)
                (server.repo / "builds" / "bullhead" / name).unlink()  # keep the disk use down
            if size == sizes[0] and not args.no_shippy:
                day += 1
                name = f"Bliss-v14.{day}-bullhead-OFFICIAL-gapps-202007{day:02d}.zip"
                log("real shippy")
                shippy = shippy_run(server, token, path, name, work)
                if shippy is None:
                    fig.notes.append("the real shippy is not installed (scripts/setup-shippy): not measured")
                else:
                    log(f"  whole run {shippy.upload_s:.2f} s")
                    fig.chunked.append(shippy)
                    fig.notes.append(
                        "real shippy: one figure for its whole run (a new connection per chunk with "
                        "`requests`, its own SHA-256 of the file, the completion)."
                    )
            if size == sizes[0] and not args.no_bodies:
                log("Qt and portal")
                fig.bodies.append(qt_upload(server, path))
                fig.bodies.append(portal_upload(server, path))
                log(f"  {fig.bodies[-2]}\n  {fig.bodies[-1]}")
            path.unlink()
        fig.info["load_end"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    command = ".venv/bin/python benchmarks/bench_upload.py" + (" --big" if args.big else "")
    body = render(fig, command)
    print(body)
    if not args.no_docs:
        write_docs(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""The builder at 1,000, 10,000 and 100,000 packages: what a change costs (issue 17).

For each store (``benchmarks/synth.py``: modules and firmware, Qt packages, OTA builds and APKs
in fixed proportions; ``--count`` is the number of modules):

* **cold**: ``depot build`` as a process on an empty site/ and state, with its peak RSS (the
  process's own ``ru_maxrss``) and wall time;
* **in-process**, in one long-lived worker process that built the site once (the way the
  runtime and ``depot watch`` run builds): a no-change build, walking repo/ and with an empty
  change feed; one added, replaced and removed module, each walking and fed; each repeated,
  median reported, with the files it wrote;
* **as a process**: ``depot build --changed modules/<new>`` after adding one module, and a
  plain ``depot build`` (which walks repo/), interpreter start-up included;
* **verify**: a clean build of the final repo equals the incrementally built site/ byte for
  byte, the retained history left out (``benchmarks/bench_build.py`` ``trees_equal``).

The ratio of the one-added time at the largest size to the smallest is computed from medians
measured in this one run, side by side. Results go to docs/benchmarks.md between the
``incremental`` markers.

    .venv/bin/python benchmarks/bench_incremental.py --sizes 1000 10000 100000 [--work /tmp/b17]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine  # noqa: E402

PYTHON = sys.executable

# The worker: builds in-process on request, one JSON line per answer.
WORKER = r"""
import json, os, random, resource, shutil, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
from builder.build import build
from synth import add_module
repo, site = Path(sys.argv[2]), Path(sys.argv[3])
build(repo, site)
serial = 10_000_000
def timed(**kw):
    t = time.perf_counter(); r = build(repo, site, **kw); dt = time.perf_counter() - t
    return {"s": dt, "written": len(r.written), "deleted": len(r.deleted), "read": r.files_read,
            "timings": r.timings}
for line in sys.stdin:
    op, feed = line.split()
    fed = feed == "feed"
    if op == "none":
        out = timed(changed=[] if fed else None)
    elif op == "add":
        serial += 1
        path = add_module(repo, serial)
        out = timed(changed=[path.relative_to(repo).as_posix()] if fed else None)
    elif op == "replace":  # the last added module built again: same name, other bytes
        path = add_module(repo, serial, seed=random.randrange(1 << 30))
        out = timed(changed=[path.relative_to(repo).as_posix()] if fed else None)
    elif op == "remove":
        victim = next((repo / "modules").glob(f"bench_added_{serial}.*"))
        victim.unlink()
        serial -= 1
        out = timed(changed=[victim.relative_to(repo).as_posix()] if fed else None)
    out["rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out), flush=True)
"""


def depot(*args: str, cwd: Path | None = None) -> tuple[float, dict[str, Any]]:
    """Run ``depot`` as a user does; wall time and the --report JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CI", None)
    t = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "-c", "import sys; from runtime.cli import main; sys.exit(main())", *args, "--report"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    return time.perf_counter() - t, json.loads(done.stdout)


def cold(repo: Path, site: Path) -> dict[str, Any]:
    shutil.rmtree(site, ignore_errors=True)
    shutil.rmtree(site.parent / f".{site.name}.depot", ignore_errors=True)
    code = (
        "import json, resource, sys, time; sys.path.insert(0, sys.argv[1]);"
        "from pathlib import Path; from builder.build import build;"
        "t = time.perf_counter(); r = build(Path(sys.argv[2]), Path(sys.argv[3]));"
        "print(json.dumps({'s': time.perf_counter() - t, 'outputs': r.outputs, 'skipped': len(r.skipped),"
        "'timings': r.timings, 'rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))"
    )
    t = time.perf_counter()
    out = subprocess.run(
        [PYTHON, "-c", code, str(ROOT), str(repo), str(site)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    result["wall"] = time.perf_counter() - t
    return result


def bench_size(count: int, work: Path, repeat: int) -> dict[str, Any]:
    repo = work / f"repo-{count}"
    if not repo.is_dir():
        from synth import generate

        generate(repo, count, jobs=2)
    site = work / f"site-{count}"
    log(f"{count}: cold build")
    result: dict[str, Any] = {"count": count, "cold": cold(repo, site)}
    result["copy_floor"] = copy_floor(site, work)
    log(f"{count}: in-process")
    worker = subprocess.Popen(
        [PYTHON, "-c", WORKER, str(ROOT), str(repo), str(site)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin and worker.stdout
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for _ in range(repeat):
            for op in ("none", "add", "replace", "remove"):
                for feed in ("walk", "feed"):
                    worker.stdin.write(f"{op} {feed}\n")
                    worker.stdin.flush()
                    runs.setdefault(f"{op}/{feed}", []).append(json.loads(worker.stdout.readline()))
    finally:
        worker.stdin.close()
        worker.wait(timeout=600)
    result["inprocess"] = runs
    log(f"{count}: as a process")
    from synth import add_module

    procs: dict[str, list[float]] = {"changed": [], "walk": [], "written": []}
    serial = 20_000_000
    for _ in range(repeat):
        # a name no earlier run left in this repo: the build must publish something
        while any((repo / "modules").glob(f"bench_added_{serial}.*")):
            serial += 1
        path = add_module(repo, serial)
        rel = path.relative_to(repo).as_posix()
        seconds, report = depot("build", "--repo", str(repo), "--site", str(site), "--changed", rel)
        procs["changed"].append(seconds)
        procs["written"].append(report["files_written"])
        assert report["files_written"] > 0, f"depot build --changed {rel} published nothing"
        seconds, _ = depot("build", "--repo", str(repo), "--site", str(site))
        procs["walk"].append(seconds)
    result["process"] = procs
    log(f"{count}: verify")
    from bench_build import trees_equal

    clean = work / f"clean-{count}"
    shutil.rmtree(clean, ignore_errors=True)
    shutil.rmtree(work / f".clean-{count}.depot", ignore_errors=True)
    from builder.build import build

    build(repo, clean)
    result["equal"], result["files"] = trees_equal(site, clean)
    shutil.rmtree(clean, ignore_errors=True)
    shutil.rmtree(work / f".clean-{count}.depot", ignore_errors=True)
    return result


def med(runs: list[dict[str, Any]], key: str = "s") -> float:
    return statistics.median(r[key] for r in runs)


def render(results: list[dict[str, Any]], info: str, command: str) -> str:
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M')}: {info}. `{command}`.",
        "",
        "| packages | cold (process) | peak RSS | no change, walk | no change, fed | one added, walk "
        "| one added, fed | files written (most): added / replaced / removed "
        "| one replaced, fed | one removed, fed | `depot build --changed` "
        "| `depot build` (walk) | clean = incremental |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ip = r["inprocess"]

        def ms(key: str, ip: dict[str, Any] = ip) -> str:
            return f"{med(ip[key]) * 1000:.0f} ms"

        cells = [
            f"{r['count']:,} modules ({r['cold']['outputs']:,} outputs)",
            f"{r['cold']['wall']:.1f} s",
            f"{r['cold']['rss_kb'] / 1024:.0f} MB",
            ms("none/walk"),
            f"{med(ip['none/feed']) * 1000:.1f} ms",
            ms("add/walk"),
            ms("add/feed"),
            " / ".join(
                f"{max(x['written'] for x in ip[op + '/feed']):.0f}" for op in ("add", "replace", "remove")
            ),
            ms("replace/feed"),
            ms("remove/feed"),
            f"{statistics.median(r['process']['changed']) * 1000:.0f} ms",
            f"{statistics.median(r['process']['walk']) * 1000:.0f} ms",
            "yes" if r["equal"] else "**no**",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if len(results) > 1:
        small, big = results[0], results[-1]
        ratio = med(big["inprocess"]["add/feed"]) / med(small["inprocess"]["add/feed"])
        walk_ratio = med(big["inprocess"]["add/walk"]) / med(small["inprocess"]["add/walk"])
        lines += [
            "",
            f"One added module, fed, {big['count']:,} against {small['count']:,}: **{ratio:.2f}x** "
            f"(walking repo/: {walk_ratio:.2f}x).",
        ]
    big = results[-1]
    split = {k: round(v * 1000, 1) for k, v in statistics_split(big["inprocess"]["add/feed"]).items()}
    lines += ["", f"Where one fed added module's time goes at {big['count']:,} (medians, ms): {split}."]
    cold_split = {
        k: round(v, 1) for k, v in big["cold"]["timings"].items() if k in ("scan", "plan", "publish")
    }
    lines += [f"Cold build at {big['count']:,} by phase (s): {cold_split}."]
    if "copy_floor" in big:
        floor = big["copy_floor"]
        lines += [
            f"The package files a cold build copies at {big['count']:,}: {floor['bytes'] / 2**30:.1f} GiB; "
            f"`cp -r` of them and a `sync`, right after: {floor['s']:.1f} s (the floor of the publish)."
        ]
    return "\n".join(lines) + "\n"


def statistics_split(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("scan", "plan", "publish", "total")
    return {k: statistics.median(r["timings"].get(k, 0.0) for r in runs) for k in keys}


def write(path: Path, body: str) -> None:
    begin, end = "<!-- incremental:begin -->", "<!-- incremental:end -->"
    text = path.read_text() if path.exists() else ""
    if begin in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = f"{head}{begin}\n{body}{end}{tail}"
    else:
        text += f"\n{begin}\n{body}{end}\n"
    path.write_text(text)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def copy_floor(site: Path, work: Path) -> dict[str, Any]:
    """What the machine needs to write the package files a cold build copies: ``cp -r`` of
    site/files/ and a sync, measured right after the cold build (the floor of its publish)."""
    copy = work / "copy-floor"
    shutil.rmtree(copy, ignore_errors=True)
    size = sum(f.stat().st_size for f in (site / "files").rglob("*") if f.is_file())
    subprocess.run(["sync"], check=True)
    t = time.perf_counter()
    subprocess.run(["cp", "-r", str(site / "files"), str(copy)], check=True)
    subprocess.run(["sync"], check=True)
    seconds = time.perf_counter() - t
    shutil.rmtree(copy, ignore_errors=True)
    return {"s": seconds, "bytes": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/depot-bench-incremental"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = [bench_size(n, args.work, args.repeat) for n in args.sizes]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    command = "benchmarks/bench_incremental.py --sizes " + " ".join(map(str, args.sizes))
    body = render(results, machine(), command)
    print(body)
    write(args.output, body)
    return 0 if all(r["equal"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Builder benchmarks: cold build, no-change rebuild, rebuild after one added package.

For each store size (default 1,000 and 10,000 modules, made by ``benchmarks/synth.py``, which
adds firmware, Qt packages, OTA builds and APKs in fixed proportions; ``--kinds`` picks some):

* **cold**: site/ and the build state beside it (``.<site>.depot/``) removed, then
  ``build()`` in-process; and once more through the ``depot build`` command, which adds
  interpreter start-up and imports (what a user who types the command waits for).
* **no change**: ``build()`` again on the same repo, several times; besides the report's
  counters, every file of site/ is stat'ed before and after to prove nothing was touched.
* **one added package**: a new module dropped into repo/modules, then ``build()``; repeated
  with a different new module each time.
* **skipped**: the cold build's report must skip nothing the generator wrote (a skipped
  file is a generator or builder bug, and would make the figures measure less than the store);
* **verify**: a clean build of the final repo into another folder must equal the
  incrementally built site/ byte for byte, once the retained history is left out (the old
  device index shards each added module retires, and their rows of the route table: a
  clean build has none; ``builder.build.retained_history``).

Quick measurements are repeated and the median is reported. Results go into
docs/benchmarks.md between the ``results`` markers; the text outside them is kept.

    .venv/bin/python benchmarks/bench_build.py [--sizes 1000 10000 [100000]] [--work /tmp/depot-bench]
        [--kinds modules,qt,ota,apk]
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import gc
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine  # noqa: E402
from synth import KINDS, add_module, generate, parse_kinds  # noqa: E402

from builder.build import build, retained_history, state_dir_for  # noqa: E402
from builder.routes import (  # noqa: E402
    ROUTES_FILE,
    SHARD_FOLDER,
    bucket_of,
    entry_bytes,
    load_routes,
    shard_bytes,
    shard_path,
)

GOALS = {
    "cold_s": 10.0,  # 10,000 items
    "nochange_s": 0.3,
    "nochange_bytes": 0,
    "added_s": 0.25,
    "added_files": 10,
}
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


@dataclass
class Run:
    seconds: float
    files_written: int
    bytes_written: int
    timings: dict[str, float]
    max_rss_kib: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_report(cls, seconds: float, report: dict[str, Any], rss: int = 0) -> Run:
        return cls(
            seconds,
            report["files_written"],
            report["bytes_written"],
            report["timings_s"],
            rss,
            dict(report.get("skipped", {})),
        )


@dataclass
class SizeResult:
    count: int
    firmware: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # packages per kind, as synth.py wrote them
    sidecars: int = 0
    ota_devices: int = 0
    repo_mib: float = 0.0
    generate_s: float = 0.0
    outputs: int = 0
    cold: list[Run] = field(default_factory=list)
    cold_cli: list[Run] = field(default_factory=list)
    nochange: list[Run] = field(default_factory=list)
    nochange_cli: list[Run] = field(default_factory=list)
    nochange_untouched: bool = True
    added: list[Run] = field(default_factory=list)
    identical_to_clean: bool | None = None
    retained: int = 0  # retained history files the comparison leaves out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def remove_site(site: Path) -> None:
    shutil.rmtree(site, ignore_errors=True)
    shutil.rmtree(state_dir_for(site), ignore_errors=True)


def timed_build(repo: Path, site: Path) -> Run:
    gc.collect()
    t0 = time.perf_counter()
    result = build(repo, site)
    seconds = time.perf_counter() - t0
    return Run.from_report(seconds, result.to_dict())


def cli_build(repo: Path, site: Path) -> Run:
    """``depot build`` in a child process: wall-clock time, including start-up, and peak RSS."""
    depot = Path(sys.executable).with_name("depot")
    cmd = [str(depot)] if depot.exists() else [sys.executable, "-m", "runtime.cli"]
    cmd += ["build", "--repo", str(repo), "--site", str(site), "--quiet", "--report"]
    env = {**os.environ, "CI": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    out = proc.stdout.read() if proc.stdout else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return Run.from_report(seconds, json.loads(out), rss=usage.ru_maxrss)


def snapshot(site: Path) -> dict[str, tuple[int, int, int]]:
    found = {}
    for dirpath, _dirs, files in os.walk(site):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            found[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def trees_equal(incremental: Path, clean: Path) -> tuple[bool, int]:
    """Whether the incremental site equals a clean build byte for byte, leaving out the retained
    history (old device index shards kept for readers of older entries, and their rows of
    the route table: ``builder.build.retained_history``), which a clean build cannot have; and
    how many retained files were left out."""

    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    retained = retained_history(incremental)
    names, clean_names = files(incremental) - retained, files(clean)
    if retained and ROUTES_FILE in names:  # the table holds the history's rows: compared apart
        table = {n for n in names if is_table_file(n)}
        clean_table = {n for n in clean_names if is_table_file(n)}
        names, clean_names = names - table, clean_names - clean_table
        if table_without_history(incremental, retained) != {n: (clean / n).read_bytes() for n in clean_table}:
            return False, len(retained)
    if names != clean_names:
        return False, len(retained)
    _match, mismatch, errors = filecmp.cmpfiles(incremental, clean, sorted(names), shallow=False)
    if mismatch or errors:
        return False, len(retained)
    return True, len(retained)


def is_table_file(name: str) -> bool:
    return name == ROUTES_FILE or name.startswith(SHARD_FOLDER + "/")


def table_without_history(site: Path, retained: set[str]) -> dict[str, bytes]:
    """The files of the route table of ``site`` (relative path → bytes) as the builder would
    write them without the rows of the ``retained`` files: a schema-1 single file, or the
    shards (an empty one is no file) and their entry."""
    from tests.support.repos import without_history

    if "routes" in json.loads((site / ROUTES_FILE).read_bytes()):  # schema 1
        return without_history({ROUTES_FILE: (site / ROUTES_FILE).read_bytes()}, retained)
    buckets: dict[str, list[dict[str, Any]]] = {}
    for row in load_routes(site):
        if row["file"] not in retained:
            buckets.setdefault(bucket_of(row["url"]), []).append(row)
    out = {shard_path(bucket): shard_bytes(rows) for bucket, rows in buckets.items()}
    out[ROUTES_FILE] = entry_bytes([(b, hashlib.sha256(out[shard_path(b)]).hexdigest()) for b in buckets])
    return out


def bench_size(count: int, work: Path, args: argparse.Namespace) -> SizeResult:
    res = SizeResult(count)
    base = work / f"n{count}"
    shutil.rmtree(base, ignore_errors=True)
    repo, site = base / "repo", base / "site"
    log(f"[{count}] generating the store")
    stats = generate(repo, count, seed=args.seed, jobs=args.jobs, kinds=args.kinds)
    res.firmware, res.repo_mib, res.generate_s = stats.firmware, stats.bytes / 2**20, stats.seconds
    res.kinds, res.sidecars = stats.counts(), stats.sidecars
    builds = repo / "builds"
    res.ota_devices = sum(1 for d in builds.iterdir() if d.is_dir()) if builds.is_dir() else 0
    log(f"[{count}] store: {res.kinds}, {res.sidecars} sidecars, {res.repo_mib:.0f} MiB")

    for i in range(args.cold_repeat):
        remove_site(site)
        os.sync()  # don't let the previous run's dirty pages bill this one
        run = timed_build(repo, site)
        res.cold.append(run)
        log(f"[{count}] cold build {i + 1}: {run.seconds:.2f}s, {run.files_written} files")
    res.outputs = res.cold[-1].files_written
    for path, why in sorted(res.cold[-1].skipped.items())[:10]:
        log(f"[{count}] SKIPPED {path}: {why}")
    for i in range(args.cli_repeat):
        cli_site = base / "site-cli"
        remove_site(cli_site)
        os.sync()
        run = cli_build(repo, cli_site)
        res.cold_cli.append(run)
        log(f"[{count}] cold `depot build` {i + 1}: {run.seconds:.2f}s")
        if i == args.cli_repeat - 1:
            run = cli_build(repo, cli_site)
            res.nochange_cli.append(run)
            log(f"[{count}] no-change `depot build`: {run.seconds:.2f}s")
        remove_site(cli_site)

    before = snapshot(site)
    for i in range(args.repeat):
        run = timed_build(repo, site)
        res.nochange.append(run)
        log(f"[{count}] no-change rebuild {i + 1}: {run.seconds * 1000:.0f} ms, {run.bytes_written} bytes")
    res.nochange_untouched = snapshot(site) == before

    for i in range(args.repeat):
        add_module(repo, serial=count + i, seed=args.seed)
        run = timed_build(repo, site)
        res.added.append(run)
        log(f"[{count}] one added package {i + 1}: {run.seconds * 1000:.0f} ms, {run.files_written} files")

    if args.verify:
        clean = base / "site-clean"
        remove_site(clean)
        build(repo, clean)
        res.identical_to_clean, res.retained = trees_equal(site, clean)
        log(
            f"[{count}] incremental site equals a clean build: {res.identical_to_clean} "
            f"(besides {res.retained} retained old device index shards)"
        )
        remove_site(clean)
    if not args.keep:
        remove_site(site)
        shutil.rmtree(base, ignore_errors=True)
    return res


# -- report -------------------------------------------------------------------------------------


PHASES = ("scan", "plan", "publish", "total")


def packages(r: SizeResult) -> int:
    return sum(r.kinds.values()) if r.kinds else r.count + r.firmware


def secs(runs: list[Run]) -> float:
    return median([x.seconds for x in runs])


def peak_rss(r: SizeResult) -> int:
    return max((x.max_rss_kib for x in r.cold_cli), default=0)


def fmt_s(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def spread(runs: list[Run]) -> str:
    values = [r.seconds for r in runs]
    if len(values) < 2:
        return fmt_s(values[0]) if values else "n/a"
    return f"{fmt_s(median(values))} ({fmt_s(min(values))} to {fmt_s(max(values))})"


def ok(flag: bool) -> str:
    return "met" if flag else "**missed**"


def render_results(results: list[SizeResult], info: dict[str, str], command: str, args: Any) -> str:
    out: list[str] = []
    out.append(
        f"Measured {info['date']} on {info['cpus']} CPUs ({info['cpu']}), {info['python']}, "
        f"{info['os']}; load average (1, 5, 15 min) {info['load']} at the start, {info['load_end']} at "
        f"the end: the machine is shared, so other work competes for its CPUs and disk. Stores in "
        f"`{args.work}`. Times are medians of the runs, with (fastest to slowest)."
    )
    out.append("")
    out.append("Reproduce with:")
    out.append("")
    out.append("```sh")
    out.append(command)
    out.append("```")
    out.append("")

    out.append("### Goals (issue 2)")
    out.append("")
    out.append("| goal | store | measured | |")
    out.append("|---|---|---|---|")
    for r in results:
        label = f"{r.count:,} modules + {packages(r) - r.count:,} other packages"
        if r.count >= 10_000:
            cold_cli = median([x.seconds for x in r.cold_cli]) if r.cold_cli else float("nan")
            cold_in = median([x.seconds for x in r.cold])
            worst = max(cold_cli, cold_in) if r.cold_cli else cold_in
            out.append(
                f"| cold build < 10 s | {label} | `depot build` {fmt_s(cold_cli)}, in-process "
                f"{fmt_s(cold_in)} | {ok(worst < GOALS['cold_s'])} |"
            )
        nc_s = median([x.seconds for x in r.nochange])
        nc_bytes = max(x.bytes_written for x in r.nochange)
        nc_files = max(x.files_written for x in r.nochange)
        out.append(
            f"| no-change rebuild < 0.3 s, writing 0 bytes | {label} | {fmt_s(nc_s)}, {nc_files} files, "
            f"{nc_bytes} bytes{'' if r.nochange_untouched else ', **site/ touched**'} | "
            f"{ok(nc_s < GOALS['nochange_s'] and nc_bytes == 0 and r.nochange_untouched)} |"
        )
        ad_s = median([x.seconds for x in r.added])
        ad_files = max(x.files_written for x in r.added)
        out.append(
            f"| one added package < 0.25 s, ≤ 10 files written | {label} | {fmt_s(ad_s)}, at most "
            f"{ad_files} files | {ok(ad_s < GOALS['added_s'] and ad_files <= GOALS['added_files'])} |"
        )
    out.append("")

    out.append("### All figures")
    out.append("")
    out.append("| | " + " | ".join(f"{r.count:,} modules" for r in results) + " |")
    out.append("|---|" + "---|" * len(results))

    nochange = [r.nochange for r in results]

    def row(name: str, cells: list[str]) -> None:
        out.append(f"| {name} | " + " | ".join(cells) + " |")

    row(
        "repo: packages, sidecars, size",
        [f"{packages(r):,} packages, {r.sidecars:,} sidecars, {r.repo_mib:.0f} MiB" for r in results],
    )
    row("repo: device modules", [f"{r.kinds.get('modules', 0):,}" for r in results])
    row("repo: firmware images", [f"{r.kinds.get('firmware', 0):,}" for r in results])
    row("repo: Qt packages (apps/)", [f"{r.kinds.get('qt', 0):,}" for r in results])
    row(
        "repo: OTA builds (builds/), devices",
        [f"{r.kinds.get('ota', 0):,} over {r.ota_devices:,} devices" for r in results],
    )
    row("repo: APKs (android/)", [f"{r.kinds.get('apk', 0):,}" for r in results])
    row(
        "cold build: files skipped (must be 0)",
        [
            str(len(r.cold[-1].skipped)) if not r.cold[-1].skipped else f"**{len(r.cold[-1].skipped)}**"
            for r in results
        ],
    )
    row("site: files", [f"{r.outputs:,}" for r in results])
    row("generating the store (synth.py)", [fmt_s(r.generate_s) for r in results])
    row(f"cold build, in-process ({len(results[0].cold)} runs)", [spread(r.cold) for r in results])
    row("cold build, bytes written", [f"{r.cold[-1].bytes_written / 2**20:.1f} MiB" for r in results])
    row(
        f"cold `depot build` incl. start-up ({len(results[0].cold_cli)} runs)",
        [spread(r.cold_cli) for r in results],
    )
    row("cold `depot build` peak RSS", [f"{peak_rss(r) / 1024:.0f} MiB" for r in results])
    row(f"no-change rebuild, in-process ({len(results[0].nochange)} runs)", list(map(spread, nochange)))
    row(
        "no-change rebuild: files, bytes written",
        [
            f"{max(x.files_written for x in r.nochange)}, {max(x.bytes_written for x in r.nochange)}"
            + ("" if r.nochange_untouched else " (site/ touched!)")
            for r in results
        ],
    )
    row("no-change `depot build` incl. start-up", [spread(r.nochange_cli) for r in results])
    row(f"one added package, in-process ({len(results[0].added)} runs)", [spread(r.added) for r in results])
    row(
        "one added package: files written (median, max)",
        [
            f"{median([x.files_written for x in r.added]):.0f}, {max(x.files_written for x in r.added)}"
            for r in results
        ],
    )
    row(
        "one added package: bytes written (median)",
        [f"{median([x.bytes_written for x in r.added]) / 1024:.0f} KiB" for r in results],
    )
    row(
        "no-change / cold (in-process)",
        [f"{secs(r.nochange) / secs(r.cold):.1%}" for r in results],
    )
    row(
        "one added / no-change",
        [f"{secs(r.added) / secs(r.nochange):.2f}x" for r in results],
    )
    row(
        "incremental site = clean build, byte for byte (besides retained old indexes)",
        [
            {True: "yes", False: "**NO**", None: "not checked"}[r.identical_to_clean]
            + (f" ({r.retained} retained)" if r.identical_to_clean is not None else "")
            for r in results
        ],
    )
    if len(results) > 1:
        a, b = results[0], results[-1]
        scale = b.count / a.count
        ratios = [
            median([x.seconds for x in getattr(b, k)]) / median([x.seconds for x in getattr(a, k)])
            for k in ("cold", "nochange", "added")
        ]
        out.append("")
        out.append(
            f"Scaling from {a.count:,} to {b.count:,} modules ({scale:.0f}x the packages): cold "
            f"{ratios[0]:.1f}x, no-change {ratios[1]:.1f}x, one added package {ratios[2]:.1f}x."
        )
    out.append("")

    out.append("### Phases (median seconds, from the build report's `timings_s`)")
    out.append("")
    out.append("| store | build | scan | plan | publish | total |")
    out.append("|---|---|---|---|---|---|")
    for r in results:
        for name, runs in (("cold", r.cold), ("no change", r.nochange), ("one added", r.added)):
            cells = [f"{median([x.timings.get(p, 0.0) for x in runs]):.3f}" for p in PHASES]
            out.append(f"| {r.count:,} | {name} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "`scan` walks repo/ and stats every file, digests the inputs, loads the manifest and (unless "
        "the no-change fast path applies) the scan cache, and reads the changed files; `plan` builds "
        "the catalog and asks every renderer for its outputs and fingerprints (0 on the fast path); "
        "`publish` stats, renders, writes and renames what changed (on the fast path: stats the "
        "manifest's files). `total` also counts saving the scan cache, the manifest and the report "
        "beside site/."
    )
    return "\n".join(out)


SKELETON = """# Builder benchmarks

How long `depot build` takes on synthetic stores, and whether it meets the goals of issue 2:
a cold build of 10,000 items in under 10 s, a no-change rebuild in under 0.3 s that writes
nothing, and a rebuild after one added package in under 0.25 s that writes at most 10 files.

The stores come from `benchmarks/synth.py` (see its docstring, and "What the synthetic stores
hold" below, for what they contain); the
measurements from `benchmarks/bench_build.py`, which rewrites the section between the markers
below and leaves the rest of this page alone.

## Results

{begin}
{end}
"""


def write_markdown(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else SKELETON.format(begin=BEGIN, end=END)
    if BEGIN not in text or END not in text:
        text = text.rstrip() + "\n\n## Results\n\n" + BEGIN + "\n" + END + "\n"
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + BEGIN + "\n" + body + "\n" + END + tail)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1000, 10_000],
        help="modules per store (default 1000 10000); the other kinds scale with it. 100000 is "
        "allowed but slow: a store of about 6 GiB that takes minutes to generate and a cold build "
        "of several minutes and about 1 GB of memory, so it is not in the default",
    )
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="what the stores hold: comma-separated of modules (with firmware), qt, ota, apk (default all)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/depot-bench"), help="scratch folder")
    parser.add_argument("--repeat", type=int, default=7, help="runs of each quick measurement")
    parser.add_argument("--cold-repeat", type=int, default=3, help="in-process cold builds")
    parser.add_argument("--cli-repeat", type=int, default=1, help="cold `depot build` runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="processes that generate the stores")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip the clean-build check")
    parser.add_argument("--keep", action="store_true", help="keep the generated stores")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md", help="markdown file")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    try:
        args.kinds = parse_kinds(args.kinds)
    except ValueError as exc:
        parser.error(str(exc))
    if args.work.resolve().is_relative_to(ROOT):
        parser.error("--work must be outside the project (the stores are large)")

    info = machine()
    results = []
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        for count in args.sizes:
            results.append(bench_size(count, args.work, args))
    finally:
        if not args.keep:  # only what this run made; the folder itself if it is left empty
            for count in args.sizes:
                shutil.rmtree(args.work / f"n{count}", ignore_errors=True)
            with contextlib.suppress(OSError):
                args.work.rmdir()

    command = ".venv/bin/python benchmarks/bench_build.py" + "".join(
        f" {flag} {value}"
        for flag, value, default in (
            ("--sizes", " ".join(map(str, args.sizes)), "1000 10000"),
            ("--repeat", args.repeat, 7),
            ("--cold-repeat", args.cold_repeat, 3),
            ("--cli-repeat", args.cli_repeat, 1),
            ("--seed", args.seed, 0),
            ("--kinds", ",".join(args.kinds), ",".join(KINDS)),
        )
        if str(value) != str(default)
    )
    info["load_end"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    body = render_results(results, info, command, args)
    if args.output:
        write_markdown(args.output, body)
        log(f"wrote {args.output}")
    if args.json:
        raw = {"machine": info, "results": [dataclass_dict(r) for r in results]}
        args.json.write_text(json.dumps(raw, indent=1))
    print(body)
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    log(f"benchmark process peak RSS {self_usage.ru_maxrss / 1024:.0f} MiB")
    bad = [r.count for r in results if r.cold[-1].skipped or r.identical_to_clean is False]
    if bad:
        log(f"stores of {bad} modules: files skipped, or the incremental site differs from a clean build")
    return 1 if bad else 0


def dataclass_dict(r: SizeResult) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(r)


if __name__ == "__main__":
    sys.exit(main())

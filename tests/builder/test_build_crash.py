"""A build killed at any instant leaves a site/ a client can use, and the next build repairs it.

Two ways to kill a build:

- `depot build` as a real process, SIGKILLed after a random delay spread over a build's lifetime
  (including before Python has even started), on a store of a few hundred modules;
- a build process that SIGKILLs itself at its N-th file-system step (creating a temporary file,
  renaming, deleting) for every N, so that every instant between two steps is visited once.

After each kill a client of site/ must find every index whole, every file an index names
present with the size and SHA-256 the index states, and every file either the old build's
bytes or the new build's; the next normal build must give exactly a clean build's site, with
no temporary file left anywhere.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from builder.build import build, state_dir_for
from builder.names import parse_module_filename
from builder.routes import ROUTES_FILE
from tests.support.repos import (
    TEMP_PREFIX,
    add_firmware,
    add_module,
    assert_same_tree,
    assert_site_usable,
    bump_mtime,
    clean_build,
    copy_demo,
    depot_argv,
    site_tree,
    subprocess_env,
    temp_leftovers,
    write_settings,
)


def kill_build_after(repo: Path, site: Path, delay: float, wait_for_publish: bool = False) -> None:
    """Start `depot build`, SIGKILL it ``delay`` seconds later (or that long after it starts
    publishing). The build must either be killed or have finished successfully."""
    marker = state_dir_for(site) / "build-in-progress"
    process = subprocess.Popen(
        depot_argv("build", "--repo", str(repo), "--site", str(site), "--quiet"),
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if wait_for_publish:
            deadline = time.monotonic() + 30
            while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.0005)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
    finally:
        _, stderr = process.communicate(timeout=60)
    assert process.returncode in (0, -signal.SIGKILL), f"build failed after {delay}s: {stderr.decode()}"


def _route_rows(tree: dict[str, bytes]) -> set[str]:
    return {
        json.dumps(row, sort_keys=True)
        for rel, data in tree.items()
        if rel.startswith("routes/") and rel.endswith(".json")
        for row in json.loads(data)["routes"]
    }


def assert_old_or_new(site: Path, old: dict[str, bytes], new: dict[str, bytes]) -> None:
    """Every file a reader can see is whole: the old build's bytes or the new build's (both
    trees with the retained history, ``site_tree(..., history=True)``). The route table is
    published after each tier, so that the next tier's files may name what it routes: between
    two tiers it holds the rows of the files published so far. So for it: the entry names
    shards that are there and whole, and every row of a shard is a row of the
    old or of the new table."""
    tree = site_tree(site, history=True)
    if ROUTES_FILE in tree and b'"shards"' in tree[ROUTES_FILE]:
        for shard in json.loads(tree[ROUTES_FILE])["shards"]:
            data = tree.get(shard["file"])
            assert data is not None, f"{ROUTES_FILE} names {shard['file']}, which is not there"
            json.loads(data)  # whole (its SHA-256 may be the next entry's: shards go first)
        stray = _route_rows(tree) - _route_rows(old) - _route_rows(new)
        assert not stray, f"route rows of neither the old nor the new site: {sorted(stray)[:3]}"
    for rel, data in tree.items():
        if rel.endswith("/") or Path(rel).name.startswith(TEMP_PREFIX):
            continue
        if rel == ROUTES_FILE or rel.startswith("routes/"):
            continue  # checked above
        candidates = [t[rel] for t in (old, new) if rel in t]
        assert candidates, f"{rel} belongs to neither the old nor the new site"
        assert data in candidates, f"{rel} is neither the old nor the new file (half-written?)"


# -- random kills of a real `depot build` -------------------------------------------------------


def kill_points(duration: float, rng: random.Random) -> list[tuple[float, bool]]:
    """Delays spread over a whole build, a few very short ones, and some aimed at publishing."""
    points = [(0.0, False), (0.002, False), (0.02, False)]
    points += [(rng.uniform(0, duration * 1.1), False) for _ in range(5)]
    points += [(rng.uniform(0, 0.05), True) for _ in range(4)]
    return points


def test_a_first_build_killed_again_and_again_is_repaired_by_the_next(
    big_repo: Path, big_clean: dict[str, Any], tmp_path: Path
) -> None:
    site = tmp_path / "site"
    rng = random.Random(2024)
    for delay, aimed in kill_points(big_clean["duration"], rng):
        kill_build_after(big_repo, site, delay, wait_for_publish=aimed)
        assert_site_usable(site)
        if (site / "device" / "index.json").exists():
            assert_old_or_new(site, {}, big_clean["tree"])

    result = build(big_repo, site)

    assert_same_tree(site_tree(site), big_clean["tree"])
    assert temp_leftovers(site) == []
    assert result.skipped == {}
    assert build(big_repo, site).written == []  # and the repaired site is now a normal one


def change_big_repo(repo: Path, rng: random.Random) -> None:
    """A release day: new modules, new versions, replaced bytes, removals, a new platform,
    an edited sidecar and new store settings."""
    modules = sorted((repo / "modules").glob("*.tar.gz"))
    for path in modules[:25]:
        path.unlink()
        Path(str(path) + ".toml").unlink(missing_ok=True)
    for i, path in enumerate(modules[25:45]):
        name, version, platform = parse_module_filename(path.name)
        add_module(repo, name, version, platform, rng.randbytes(5_000 + i), manifest=False)
        bump_mtime(path)
    for i in range(25):
        add_module(repo, f"fresh{i:02d}", "0.1.0", ["pi64", "riscv"][i % 2], rng.randbytes(4_000))
    (repo / "modules" / "mod010.1.1.10.pi64.tar.gz.toml").write_text('description = "edited"\n')
    add_firmware(repo, "boot", "2.1.0", "pi64", rng.randbytes(9_000))
    write_settings(repo, ["riscv", "pi64", "opi64"], name="Big Store, day two")


def test_a_build_killed_while_publishing_new_content_leaves_old_or_new(
    big_repo: Path, big_clean: dict[str, Any], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(big_repo, repo)
    site = tmp_path / "site"
    build(repo, site)
    old = big_clean["tree"]
    assert_same_tree(site_tree(site), old)
    rng = random.Random(99)
    change_big_repo(repo, rng)
    new = clean_build(repo, tmp_path / "clean")
    # What the uninterrupted build leaves, retained history included (a clean build has none).
    state, saved = state_dir_for(site), tmp_path / "saved"
    shutil.copytree(site, saved / "site")
    shutil.copytree(state, saved / "state")
    build(repo, site)
    new_with_history = site_tree(site, history=True)
    for live, copy in ((site, saved / "site"), (state, saved / "state")):
        shutil.rmtree(live)
        shutil.copytree(copy, live)

    for delay, aimed in [(0.0, False), (0.05, False), (0.15, False), (0.0, True), (0.01, True), (0.03, True)]:
        kill_build_after(repo, site, delay, wait_for_publish=aimed)
        assert_site_usable(site)
        assert_old_or_new(site, old, new_with_history)

    build(repo, site)
    assert_same_tree(site_tree(site), new)
    assert temp_leftovers(site) == []


# -- a kill at every step -----------------------------------------------------------------------

# A helper process that, for each number N read from stdin, forks a child that runs one build
# and SIGKILLs itself just before its N-th file-system step below BASE (an audit hook sees each
# step before the system call happens), then prints the child's wait status. N = 0 never kills;
# that child prints how many steps it took. Forking from one warmed-up process keeps each kill
# cheap: no interpreter start, no imports.
CRASH_SERVER = r"""
import os, signal, sys
from pathlib import Path
from builder.build import build

repo, site, base, warm = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
build(repo, warm)  # import and warm up everything a build uses
STEPS = {"os.rename", "os.remove", "os.rmdir", "tempfile.mkstemp"}
for line in sys.stdin:
    target = int(line)
    pid = os.fork()
    if pid == 0:
        count = 0

        def hook(event, args):
            global count
            if event in STEPS and str(args[0]).startswith(base):
                count += 1
                if count == target:
                    os.kill(os.getpid(), signal.SIGKILL)

        sys.addaudithook(hook)
        try:
            build(repo, site)
            print(count, flush=True)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("status", status, flush=True)
"""


class CrashingBuilds:
    """Runs builds of ``repo`` into ``site`` that are killed at a chosen step."""

    def __init__(self, repo: Path, site: Path, warm: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CRASH_SERVER, str(repo), str(site), str(site.parent), str(warm)],
            env=subprocess_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, step: int) -> tuple[int | None, bool]:
        """(steps counted when ``step`` is 0, whether the build was killed)."""
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(f"{step}\n")
        self.process.stdin.flush()
        counted = None
        line = self.process.stdout.readline().split()
        if line and line[0] != "status":
            counted = int(line[0])
            line = self.process.stdout.readline().split()
        assert line and line[0] == "status", "the crash helper died"
        status = int(line[1])
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert killed or (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
        return counted, killed

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(timeout=30)


def small_store(repo: Path) -> None:
    write_settings(repo, ["pi64"], name="Small Store")
    add_module(repo, "ax", "2.6.3", "pi64")
    add_module(repo, "ax", "2.6.4", "pi64")
    add_module(repo, "iot", "1.0.5", "pi64", manifest=False)
    add_module(repo, "legacy", "0.9", "arm32")
    add_module(repo, "sdk", "1.1.6-opi64", "opi64")
    add_firmware(repo, "sensor", "1.4.3", "pi64")


def change_small_store(repo: Path) -> None:
    (repo / "modules" / "ax.2.6.3.pi64.tar.gz").unlink()  # an old version goes
    (repo / "modules" / "legacy.0.9.arm32.tar.gz").unlink()  # the last module of a platform goes
    add_module(repo, "ax", "2.7.0", "pi64")  # a new version
    add_module(repo, "iot", "1.0.5", "pi64", b"rebuilt with a fix\n", manifest=False)  # same name, new bytes
    bump_mtime(repo / "modules" / "iot.1.0.5.pi64.tar.gz")
    add_module(repo, "nav", "0.1", "riscv")  # a new platform
    Path(str(repo / "modules" / "sdk.1.1.6-opi64.opi64.tar.gz") + ".toml").write_text('description = "SDK"\n')
    write_settings(repo, ["pi64", "riscv"], name="Small Store")


@pytest.mark.parametrize("scenario", ["first-build", "changed-repo"])
def test_a_build_killed_at_every_step_leaves_a_usable_site(scenario: str, scratch: Path) -> None:
    tmp_path = scratch
    repo = tmp_path / "repo"
    small_store(repo)
    site, saved_site = tmp_path / "site", tmp_path / "saved-site"
    state, saved_state = state_dir_for(site), state_dir_for(saved_site)
    if scenario == "first-build":
        old: dict[str, bytes] = {}
    else:
        old = clean_build(repo, site)
        change_small_store(repo)
        shutil.copytree(site, saved_site)
        shutil.copytree(state, saved_state)
    new = clean_build(repo, tmp_path / "clean")

    def restore() -> None:
        for live, saved in ((site, saved_site), (state, saved_state)):
            shutil.rmtree(live, ignore_errors=True)
            if saved.exists():
                shutil.copytree(saved, live)

    # What the uninterrupted build leaves, retained history included (a clean build has none).
    restore()
    build(repo, site)
    new_with_history = site_tree(site, history=True)

    crashing = CrashingBuilds(repo, site, tmp_path / "warm")
    try:
        restore()
        steps, killed = crashing.run(0)
        assert steps is not None and not killed
        assert steps > 20  # temp files, renames and deletions of a real publish

        every = range(1, steps + 1)
        if scenario == "first-build":  # a first build is long and repetitive: a sample of it
            every = sorted({1, 2, 3, steps - 1, steps, *random.Random(steps).sample(every, min(20, steps))})
        for step in every:
            restore()
            _, killed = crashing.run(step)
            assert killed, f"the build finished before step {step}"
            try:
                assert_site_usable(site)
                if (site / "device" / "index.json").exists():
                    assert_old_or_new(site, old, new_with_history)
                interrupted = (state / "build-in-progress").exists()
                result = build(repo, site)
                assert result.recovered == interrupted
                assert_same_tree(site_tree(site), new)
                assert temp_leftovers(site) == []
            except AssertionError as exc:
                raise AssertionError(f"killed before step {step} of {steps}: {exc}") from exc
    finally:
        crashing.close()


def test_the_build_report_says_when_it_repaired_an_interrupted_build(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    crashing = CrashingBuilds(repo, site, tmp_path / "warm")
    try:
        assert crashing.run(6)[1]  # killed while publishing its first files
    finally:
        crashing.close()
    report = subprocess.run(
        depot_argv("build", "--repo", str(repo), "--site", str(site), "--report"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(report.stdout)["recovered_from_interrupted_build"] is True
    assert temp_leftovers(site) == []

"""`depot watch`: one rebuild per burst of changes, and a bad file or a bad rebuild never stops it."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from builder.build import build
from builder.watch import watch
from tests.support.repos import (
    add_module,
    assert_same_tree,
    bump_mtime,
    clean_build,
    copy_demo,
    depot_argv,
    device_entries,
    site_tree,
    subprocess_env,
)

DEBOUNCE = 0.25


class Rebuilds:
    """A real rebuild of repo → site that counts its calls and keeps what each one reported."""

    def __init__(self, repo: Path, site: Path) -> None:
        self.repo, self.site = repo, site
        self.results: list[object] = []
        self.errors: list[Exception] = []
        self.done = threading.Condition()

    def __call__(self, changed: list[str] | None = None) -> None:
        try:
            result = build(self.repo, self.site, changed=changed)  # the watch's events are the feed
        except Exception as exc:
            with self.done:
                self.errors.append(exc)
                self.results.append(exc)
                self.done.notify_all()
            raise
        with self.done:
            self.results.append(result)
            self.done.notify_all()

    @property
    def count(self) -> int:
        return len(self.results)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        with self.done:
            assert self.done.wait_for(lambda: self.count >= count, timeout), f"no rebuild #{count}"

    def settle(self, quiet: float = DEBOUNCE * 3) -> int:
        """Wait until no rebuild has happened for a few debounce periods; return the count."""
        while True:
            before = self.count
            time.sleep(quiet)
            if self.count == before:
                return before


@contextmanager
def watching(repo: Path, rebuild: Callable[[list[str] | None], None]) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(repo, rebuild), kwargs={"debounce": DEBOUNCE, "stop": stop})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()


def until_watching(repo: Path, rebuilds: Rebuilds) -> int:
    """The observer starts in the background: poke the repo with a hidden file (which the
    catalog ignores) until a rebuild shows the watch is live; returns the settled count."""
    poke = repo / ".poke"
    for attempt in range(100):
        poke.write_text(str(attempt))
        try:
            rebuilds.wait_for(1, timeout=DEBOUNCE * 4)
            break
        except AssertionError:
            continue
    return rebuilds.settle()


def test_a_burst_of_fifty_changes_triggers_one_rebuild(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    rebuilds = Rebuilds(repo, site)
    with watching(repo, rebuilds):
        baseline = until_watching(repo, rebuilds)

        changes = 0
        for i in range(20):  # 20 new modules
            add_module(repo, f"burst{i:02d}", "1.0", "pi64", manifest=False)
            changes += 1
        for i in range(10):  # 10 of them replaced
            bump_mtime(add_module(repo, f"burst{i:02d}", "1.0", "pi64", b"second build\n", manifest=False))
            changes += 1
        for i in range(10, 15):  # 5 removed
            (repo / "modules" / f"burst{i:02d}.1.0.pi64.tar.gz").unlink()
            changes += 1
        for i in range(15, 20):  # 5 renamed to a new version
            (repo / "modules" / f"burst{i:02d}.1.0.pi64.tar.gz").rename(
                repo / "modules" / f"burst{i:02d}.1.1.pi64.tar.gz"
            )
            changes += 1
        for i in range(10):  # 10 sidecars
            (repo / "modules" / f"burst{i:02d}.1.0.pi64.tar.gz.toml").write_text(
                f'description = "burst {i}"\n'
            )
            changes += 1
        assert changes == 50

        rebuilds.wait_for(baseline + 1)
        assert rebuilds.settle() == baseline + 1  # one rebuild, and it did not trigger another
    assert rebuilds.errors == []
    pi64 = device_entries(site)["pi64"]
    assert [n for n in pi64 if n.startswith("burst")] == [
        f"burst{i:02d}" for i in (*range(10), *range(15, 20))
    ]
    assert pi64["burst03"] == ["1.0"] and pi64["burst17"] == ["1.1"]
    # what the events fed the build is all a walk of repo/ would have found
    assert_same_tree(site_tree(site), clean_build(repo, tmp_path / "clean"))


def test_a_bad_file_does_not_stop_the_watch(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    build(repo, site)
    rebuilds = Rebuilds(repo, site)
    with watching(repo, rebuilds):
        baseline = until_watching(repo, rebuilds)
        (repo / "modules" / "broken.1.0.pi64.tar.gz").write_bytes(b"\x1f\x8b\x08 cut short")
        rebuilds.wait_for(baseline + 1)
        assert "modules/broken.1.0.pi64.tar.gz" in rebuilds.results[-1].skipped

        add_module(repo, "nav", "0.1", "pi64")
        rebuilds.wait_for(baseline + 2)
        assert device_entries(site)["pi64"]["nav"] == ["0.1"]

        # a rebuild that fails outright (unusable settings) is logged, and the watch goes on
        settings = repo / "depot.toml"
        good_settings = settings.read_bytes()
        settings.write_text("[store\n")
        rebuilds.wait_for(baseline + 3)
        assert len(rebuilds.errors) == 1
        settings.write_bytes(good_settings)
        add_module(repo, "lift", "0.2", "pi64")
        rebuilds.wait_for(baseline + 4)
        assert device_entries(site)["pi64"]["lift"] == ["0.2"]
        assert "modules/broken.1.0.pi64.tar.gz" in rebuilds.results[-1].skipped


def test_depot_watch_builds_then_follows_changes_and_survives_bad_input(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    process = subprocess.Popen(
        depot_argv("watch", "--repo", str(repo), "--site", str(site), "--debounce", str(DEBOUNCE)),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()

    def next_line(containing: str, poke: Callable[[], object] | None = None) -> str:
        """The next output line containing ``containing``; ``poke`` repeats the change now and
        then, in case the observer was not yet watching when it first happened."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=2)
            except queue.Empty:
                if poke:
                    poke()
                continue
            if containing in line:
                return line
        raise AssertionError(f"depot watch never printed {containing!r}")

    try:
        assert next_line("published:").startswith("published: ")
        next_line("watching")
        blank = repo / "firmware" / "blank.1.0.pi64.bin"
        blank.write_bytes(b"")
        warning = next_line("warning: skipped firmware/blank.1.0.pi64.bin", poke=lambda: bump_mtime(blank))
        assert "empty firmware image" in warning
        next_line("published:")
        (repo / "depot.toml").write_text("[store\n")
        assert "keeping the last good site" in next_line("error:")
        (repo / "depot.toml").write_text('[store]\nname = "Fixed"\n')
        add_module(repo, "nav", "0.1", "riscv")
        next_line("published:")
        assert device_entries(site)["riscv"]["nav"] == ["0.1"]
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=30)

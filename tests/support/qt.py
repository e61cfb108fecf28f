"""Shared helpers of the Qt dialect's integration tests: a served demo store with two users."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.serving import ServedStore, copy_demo_repo, depot_command, serve_store

SECRET = "qt-test-secret-key-of-32-bytes-or-more"
DEVICE = "00-11-22-33-44-55"
NEPTUNE_ARCH = "x86_64-little_endian-lp64-linux"
USER, USER_PASSWORD = "t", "t-password"
ADMIN, ADMIN_PASSWORD = "admin", "admin-password"


def add_user(data: Path, name: str, password: str, staff: bool = False) -> None:
    args = ["user", "add", name, "--password-stdin", "--data", str(data)] + (["--staff"] if staff else [])
    done = subprocess.run(
        depot_command(*args), input=password + "\n", capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@contextmanager
def qt_store(tmp: Path, qt_settings: str = "") -> Iterator[ServedStore]:
    """`depot serve` on a copy of the demo store, with a non-staff user and a staff user;
    ``qt_settings`` are extra TOML lines for the [qt] table."""
    repo = copy_demo_repo(tmp / "repo")
    if qt_settings:
        toml = repo / "depot.toml"
        toml.write_text(toml.read_text().replace("[qt]\n", "[qt]\n" + qt_settings + "\n", 1))
    data = tmp / "var"
    add_user(data, USER, USER_PASSWORD)
    add_user(data, ADMIN, ADMIN_PASSWORD, staff=True)
    with serve_store(tmp, repo=repo, env={"DEPOT_SECRET_KEY": SECRET}) as store:
        yield store

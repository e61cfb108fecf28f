"""A bad APK in repo/android/ is one skipped file, like any other bad file: ``depot build``
warns and exits 0 with the rest of the store published, ``depot check`` says INVALID with the
reason, and neither prints a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.apk_mutants import MALFORMED_CASES, malformed_case, seeded_key
from tests.support.repos import run_depot
from tests.support.serving import copy_demo_repo


@pytest.fixture(scope="module")
def bad_apks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    key = seeded_key("depot-build-skip", "rsa", "Depot Build Skip")
    folder = tmp_path_factory.mktemp("bad-apks")
    out = {}
    for name in MALFORMED_CASES:
        path = folder / f"com.example.bad-{name}.apk"
        path.write_bytes(malformed_case(name, key))
        out[name] = path
    return out


def test_depot_build_skips_bad_apks_with_a_warning(bad_apks: dict[str, Path], tmp_path: Path) -> None:
    repo = copy_demo_repo(tmp_path / "repo")
    good = sorted(p.name for p in (repo / "android").glob("*.apk"))
    for path in bad_apks.values():
        (repo / "android" / path.name).write_bytes(path.read_bytes())
    site = tmp_path / "site"
    done = run_depot("build", "--repo", str(repo), "--site", str(site))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for path in bad_apks.values():
        assert f"warning: skipped android/{path.name}: " in done.stderr, path.name
    catalog = json.loads((site / "android" / "index.json").read_text())
    assert good and catalog["packages"], "the good APK of the demo store is still published"


def test_depot_check_says_invalid_without_a_traceback(bad_apks: dict[str, Path]) -> None:
    done = run_depot("check", *(str(p) for p in bad_apks.values()))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    for path in bad_apks.values():
        [line] = [line for line in done.stdout.splitlines() if line.startswith(f"{path}: ")]
        assert ": INVALID: " in line and len(line) > len(f"{path}: INVALID: "), line

"""Depot's APK verdict against apksigner's, on hundreds of seeded mutants: apksigner is the judge.

The bases are made by code (``tests/support/apk_mutants.py`` on top of ``apk_factory``): v1, v2,
v3 and their mixes, SHA-1/SHA-256 JAR signatures with and without signed attributes, minSdk
from none to 28, targetSdk 30, and ZIP layouts Android reads in its own way (data descriptors,
extra fields, comments, method 12 on deflated data, bzip2/LZMA data, wrong CRC-32s, the
encryption flag, duplicates, directories, Zip64 records, names that are not UTF-8, MANIFEST.MF
edited after signing). When ../shared/fixtures/apk is there, the real APKs are bases too. Each
base is then damaged in seeded ways (method, flags, version needed, CRC in one place, sizes, EOCD
count and fields, Zip64 markers, comments, flipped bytes in deflated/stored entries, MANIFEST.MF
and signature files, bad UTF-8 names, truncation, random flips, duplicate records, data
descriptor flags, extra lengths, signing block damage).

For every mutant, :func:`builder.portal.apk.inspect_apk` (apksigner's default rules: the
manifest's minSdkVersion) must give apksigner's verdict (``apksigner verify`` exit code, no
options) and raise nothing but ``ApkError``; the portal's mode must never raise anything else
either. ``DEPOT_DIFF_SEED`` and ``DEPOT_DIFF_PER_BASE`` change the seed and the number of mutants
per base; a failure names each disagreeing mutant and keeps the files under the test's tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

from builder.portal.apk import ApkError, inspect_apk
from tests.support.apk_factory import SigningKey
from tests.support.apk_mutants import Mutant, mutants, recipes, seeded_key
from tests.support.paths import SHARED_FIXTURES

APKSIGNER = shutil.which("apksigner")
SEED = int(os.environ.get("DEPOT_DIFF_SEED", "20240611"))
PER_BASE = int(os.environ.get("DEPOT_DIFF_PER_BASE", "8"))
MIN_MUTANTS = 500
JUDGE_TIMEOUT = 120  # seconds for one apksigner run (a JVM on a busy machine)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        APKSIGNER is None, reason="apksigner is not installed (scripts/setup-system installs it)"
    ),
]


@cache
def keys() -> dict[str, SigningKey]:
    return {
        "rsa": seeded_key("depot-differential-rsa", "rsa", "Depot Differential RSA"),
        "ec": seeded_key("depot-differential-ec", "ec", "Depot Differential EC"),
    }


def bases() -> dict[str, bytes]:
    made = {f"made:{r.name}": r.build() for r in recipes({k: (lambda v=v: v) for k, v in keys().items()})}
    real = SHARED_FIXTURES / "apk"
    if real.is_dir():
        made.update({f"real:{p.name}": p.read_bytes() for p in sorted(real.glob("*.apk"))})
    return made


def judge(path: Path) -> tuple[bool, str]:
    """apksigner's verdict (exit code 0) and the first line it printed."""
    assert APKSIGNER is not None
    done = subprocess.run(
        [APKSIGNER, "-JXmx512m", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=JUDGE_TIMEOUT,
    )
    said = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, said[0] if said else ""


def depot(path: Path) -> tuple[bool, str]:
    try:
        inspect_apk(path)
    except ApkError as exc:
        return False, f"{exc.code}: {exc}"
    return True, ""


def test_depot_gives_apksigners_verdict_on_every_mutant(tmp_path: Path) -> None:
    all_mutants: list[Mutant] = list(mutants(bases(), SEED, PER_BASE))
    assert len(all_mutants) >= MIN_MUTANTS, len(all_mutants)
    paths = []
    for i, m in enumerate(all_mutants):
        path = tmp_path / f"{i:04d}.apk"
        path.write_bytes(m.data)
        paths.append(path)

    started = time.monotonic()
    ours: list[tuple[bool, str]] = []
    crashes = []
    for m, path in zip(all_mutants, paths, strict=True):
        try:
            verdict = depot(path)
        except Exception as exc:  # anything but ApkError is a reader bug
            crashes.append(f"{path.name} {m.name}: {type(exc).__name__}: {exc}")
            verdict = (False, "crash")
        ours.append(verdict)
    depot_seconds = time.monotonic() - started

    with ThreadPoolExecutor(max_workers=2) as pool:
        theirs = list(pool.map(judge, paths))

    disagreements = []
    for path, m, (ok, why), (their_ok, their_why) in zip(paths, all_mutants, ours, theirs, strict=True):
        if ok != their_ok:
            disagreements.append(
                f"{path.name} {m.name}\n    depot: {'accepts' if ok else 'refuses: ' + why[:300]}\n"
                f"    apksigner: {'accepts' if their_ok else 'refuses: ' + their_why[:300]}"
            )
    accepted = sum(ok for ok, _ in theirs)
    summary = (
        f"{len(all_mutants)} mutants (seed {SEED}), apksigner accepts {accepted}, "
        f"{len(all_mutants) - len(disagreements)} agree; Depot took {depot_seconds:.1f} s"
    )
    print(summary)
    assert not crashes, "\n".join(crashes)
    assert not disagreements, summary + "\n" + "\n".join(disagreements)
    assert 0 < accepted < len(all_mutants)  # the bases include APKs apksigner accepts, and damage

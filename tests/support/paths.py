"""Where the tests find the project and the shared real-world fixtures: the one place that knows.

The shared fixtures (real APKs, binaries and Qt AM package sources, see their README.md) live
beside the project at ``<project>/../shared/fixtures``, as on CI. ``DEPOT_SHARED_FIXTURES``
points elsewhere; pointing it at a folder that does not exist runs the suite as a fresh clone
without them would. Every behaviour is tested on data the suite generates itself; the real
fixtures only feed extra checks marked with :data:`needs_shared_fixtures`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
DEMO_REPO = PROJECT / "repo"
SHARED_FIXTURES = Path(
    os.environ.get("DEPOT_SHARED_FIXTURES") or PROJECT.parent / "shared" / "fixtures"
).resolve()

REAL_FIXTURE_REASON = "../shared/fixtures is not there: the real-fixture extra check"

needs_shared_fixtures = pytest.mark.skipif(not SHARED_FIXTURES.is_dir(), reason=REAL_FIXTURE_REASON)
"""Marks a test as an extra check on the real shared fixtures; it skips when they are absent."""


def shared_fixture(*parts: str) -> Path:
    """A path inside the shared fixtures (it may not exist: guard the test with
    :data:`needs_shared_fixtures`)."""
    return SHARED_FIXTURES.joinpath(*parts)

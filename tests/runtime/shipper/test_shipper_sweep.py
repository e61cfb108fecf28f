"""The sweep of stale part files runs at the start of every new upload, beside other requests
that complete or drop uploads: a part file that vanishes while the sweep looks at the folder is
no error (the benchmark's four concurrent uploaders found the 500 it was)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.settings import load_settings
from runtime.dialects import load_dialects
from runtime.shipper.upload import ChunkedUploads, cleanup_expired
from runtime.storage import open_database
from tests.support.shipper import make_repo


def test_a_part_file_that_vanishes_during_the_sweep_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_dialects()
    repo = make_repo(tmp_path / "repo")
    ups = ChunkedUploads(open_database(tmp_path / "var"), tmp_path / "var", repo, load_settings(repo))
    kept = ups.part("kept-upload")
    kept.write_bytes(b"x")
    gone = ups.part("completed-meanwhile")  # listed, then renamed into repo/ by its completion
    real_iterdir = Path.iterdir

    def listing(folder: Path):  # type: ignore[no-untyped-def]
        yield gone
        yield from real_iterdir(folder)

    monkeypatch.setattr(Path, "iterdir", listing)
    assert cleanup_expired(ups) == 0
    assert kept.exists()  # fresh: not stale, kept

"""write_sidecar: the one TOML sidecar writer; whatever read_sidecar returns, it writes back with
the same types (strings with control characters, lists, dates, nested tables)."""

from __future__ import annotations

import datetime
import tomllib
from pathlib import Path

import pytest

from builder.sidecars import read_sidecar, write_sidecar

HAND_EDITED = """\
# a maintainer's notes
enabled = true
size = 12
ratio = 1.5
tags = ["beta", "arm"]
released = 2020-06-08
stamp = 2020-06-08T10:20:30Z
local = 2020-06-08T10:20:30.123456
at = 07:30:00
nested = { a = 1, b = ["x"] }
"odd key" = "quote \\" backslash \\\\ bell \\u0007 nl \\n del \\u007f"
"""


def test_hand_edited_values_survive_a_rewrite(tmp_path: Path) -> None:
    package = tmp_path / "x.zip"
    (tmp_path / "x.zip.toml").write_text(HAND_EDITED)
    data = read_sidecar(package)
    data["enabled"] = False
    write_sidecar(package, data)
    again = read_sidecar(package)
    assert again == data
    assert again["released"] == datetime.date(2020, 6, 8)
    assert again["stamp"] == datetime.datetime(2020, 6, 8, 10, 20, 30, tzinfo=datetime.UTC)
    assert again["tags"] == ["beta", "arm"] and again["enabled"] is False
    assert again["odd key"] == 'quote " backslash \\ bell \x07 nl \n del \x7f'


@pytest.mark.parametrize("text", ["\x00", "\x1b[31m", "tab\there", "\r\n", "ünïcødé ✓", "'single'", '"""'])
def test_any_string_round_trips(tmp_path: Path, text: str) -> None:
    write_sidecar(tmp_path / "p", {"description": text})
    assert read_sidecar(tmp_path / "p") == {"description": text}


def test_comment_and_atomic_replace(tmp_path: Path) -> None:
    package = tmp_path / "a.apk"
    write_sidecar(package, {"status": "draft"})
    write_sidecar(package, {"status": "live", "countries": ["AT", "DE"]}, comment="Written by a test.")
    text = (tmp_path / "a.apk.toml").read_text()
    assert text.startswith("# Written by a test.\n")
    assert tomllib.loads(text) == {"status": "live", "countries": ["AT", "DE"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.apk.toml"]  # no temporary left behind


def test_a_value_toml_cannot_hold_is_refused_and_the_old_sidecar_kept(tmp_path: Path) -> None:
    package = tmp_path / "a.apk"
    write_sidecar(package, {"status": "draft"})
    with pytest.raises(TypeError):
        write_sidecar(package, {"status": object()})
    assert read_sidecar(package) == {"status": "draft"}

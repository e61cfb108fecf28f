"""Every environment variable the runtime reads is declared once, in runtime/config.py, and
documented in docs/operations.md; nothing else reads a DEPOT_ variable behind its back."""

from __future__ import annotations

import re
from pathlib import Path

from runtime.config import ENVIRONMENT, env_value

PROJECT = Path(__file__).resolve().parents[2]
READS = re.compile(r"""environ(?:\.get\(|\[)\s*["'](DEPOT_\w+)""")


def test_no_module_reads_a_depot_variable_but_the_config() -> None:
    found = {
        (path.relative_to(PROJECT).as_posix(), name)
        for package in ("builder", "runtime")
        for path in (PROJECT / package).rglob("*.py")
        for name in READS.findall(path.read_text(encoding="utf-8"))
    }
    assert found == set()


def test_every_declared_variable_is_documented() -> None:
    operations = (PROJECT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert [v.name for v in ENVIRONMENT if f"`{v.name}`" not in operations] == []


def test_defaults_and_overrides() -> None:
    assert env_value("DEPOT_LOGIN_ACCOUNT_RATE", {}) == "10/15minute"
    assert env_value("DEPOT_LOGIN_ACCOUNT_RATE", {"DEPOT_LOGIN_ACCOUNT_RATE": "off"}) == "off"

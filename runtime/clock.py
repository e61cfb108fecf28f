"""Timestamps as the runtime stores them: UTC, whole seconds, ISO 8601 with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now_iso() -> str:
    return datetime.now(UTC).strftime(FORMAT)


def iso_in(delta: timedelta) -> str:
    """The timestamp ``delta`` from now."""
    return (datetime.now(UTC) + delta).strftime(FORMAT)

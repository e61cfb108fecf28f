"""Timestamps as the runtime stores them: UTC, whole seconds, ISO 8601 with a ``Z``.

The stores compare these strings, so every one has the same width: :func:`utc_iso` writes the
year with four digits (``%Y`` alone writes ``999`` on glibc, which would sort after ``2026``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # how utc_iso's strings parse back (datetime.strptime)


def utc_iso(when: datetime) -> str:
    """An aware time in the stored form, years 1 to 9999 zero-padded; OverflowError when its UTC
    time is outside datetime's range (``0001-01-01T00:00:00+01:00``)."""
    return when.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def now_iso() -> str:
    return utc_iso(datetime.now(UTC))


def iso_in(delta: timedelta) -> str:
    """The timestamp ``delta`` from now."""
    return utc_iso(datetime.now(UTC) + delta)

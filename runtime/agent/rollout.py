"""Staged rollouts, decided on the device: is this version offered to this device?

The index states each staged version's rule (``rollout``: a share of devices, the groups it is
for, whether it is paused; docs/device-index.md, "Rollouts"); the device decides from its own
id, so one static index serves a fleet in which every device gets its own answer, and no server
keeps a list of who is in. The decision is a pure function of (device id, name, version):

    position = first 8 bytes of SHA-256("<device id>\\0<name>\\0<version>") / 2**64
    offered  = not paused and (no groups or the device is in one) and position < share

The same device always gets the same answer; widening the share only adds devices (a position
below 0.1 is below 0.25 too); a share of 0 or a pause offers the version to nobody new. A
version a device already has is never taken back: the agent never uninstalls on its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One version's rollout rule as the index states it."""

    share: float = 1.0
    groups: tuple[str, ...] = ()
    paused: bool = False

    @classmethod
    def parse(cls, value: object) -> Rule | None:
        """The index's ``rollout`` object; None when absent. A malformed rule offers the
        version to nobody (ValueError), rather than to everybody."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("rollout is not an object")
        share, groups, paused = value.get("share", 1.0), value.get("groups", []), value.get("paused", False)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"rollout share {share!r} is not a number from 0 to 1")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError("rollout groups is not a list of strings")
        if not isinstance(paused, bool):
            raise ValueError("rollout paused is not true or false")
        return cls(float(share), tuple(groups), paused)


def position(device_id: str, name: str, version: str) -> float:
    """Where the device stands in [0, 1) for this version: uniform over devices, stable."""
    digest = hashlib.sha256(f"{device_id}\0{name}\0{version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def offered(rule: Rule | None, device_id: str, groups: tuple[str, ...], name: str, version: str) -> bool:
    if rule is None:
        return True
    if rule.paused:
        return False
    if rule.groups and not set(rule.groups) & set(groups):
        return False
    return position(device_id, name, version) < rule.share

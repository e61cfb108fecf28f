"""A big dict of JSON entries kept in the build state, saved by what changed.

The scan cache and the output manifest hold one entry per file of a store (megabytes of JSON
for ten thousand packages), and a build usually changes a handful. Serialising the whole dict
again costs more than everything else such a build does, so changes go to a small delta file
beside the base file: ``<name>`` holds the base entries, ``<name>.delta`` every entry set or
dropped since (cumulative, so it is rewritten whole and stays one file). When the delta grows
past a twentieth of the entries, the base is rewritten and the delta removed.

Both files are written temp → fsync → rename. A delta names the base it applies to by a random
id, so a delta left by a build killed between writing a new base and removing the old delta is
ignored rather than applied to a base that already holds newer entries.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from pathlib import Path
from typing import Any

from builder.atomic import atomic_write

MIN_DELTA = 64  # entries a delta may always hold before the base is rewritten


class EntryStore:
    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        """``header`` identifies what the entries are valid for (a version, a folder): files
        written under another header are ignored."""
        self.path, self.delta_path = path, path.with_name(path.name + ".delta")
        self.header = header
        self._id = ""
        self._base: dict[str, Any] = {}
        self._delta: dict[str, Any] = {"set": {}, "drop": []}

    def load(self) -> dict[str, Any]:
        """The entries as last saved; {} when there are none (or they cannot be read)."""
        base = _read(self.path)
        if base is None or base.get("header") != self.header or not isinstance(base.get("entries"), dict):
            return {}
        self._id, self._base = base.get("id", ""), base["entries"]
        entries = dict(self._base)
        delta = _read(self.delta_path)
        if delta is not None and self._id and delta.get("base") == self._id:
            self._delta = {"set": delta.get("set", {}), "drop": delta.get("drop", [])}
            for key in self._delta["drop"]:
                entries.pop(key, None)
            entries.update(self._delta["set"])
        return entries

    def save(self, entries: dict[str, Any]) -> None:
        base = self._base
        changed = {k: v for k, v in entries.items() if (b := base.get(k)) is not v and b != v}
        dropped = sorted(k for k in base if k not in entries)
        delta = {"set": changed, "drop": dropped}
        if not self._id or len(changed) + len(dropped) > max(MIN_DELTA, len(entries) // 20):
            self._id = secrets.token_hex(8)
            atomic_write(self.path, _dumps({"header": self.header, "id": self._id, "entries": entries}))
            with contextlib.suppress(FileNotFoundError):
                self.delta_path.unlink()
            self._base, self._delta = entries, {"set": {}, "drop": []}
        elif delta != self._delta:
            atomic_write(self.delta_path, _dumps({"base": self._id, **delta}))
            self._delta = delta


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()

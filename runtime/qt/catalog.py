"""The runtime's view of the Qt catalog: the builder's pre-rendered files, filtered per session.

Nothing here scans repo/: lists, icons and descriptions come from site/qt/ (written by
``builder.qt.render``), re-read only when the builder replaced them.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from builder.qt.package import escape_key
from builder.qt.render import ALL, list_path
from builder.qt.tags import TagError, TagList, app_matches

Entry = dict[str, Any]


class JsonFiles:
    """Parsed JSON files of site/, cached by (mtime, size) so a rebuild shows at once."""

    def __init__(self, site: Path) -> None:
        self.site = site
        self._cache: dict[str, tuple[tuple[int, int], Any]] = {}
        self._lock = threading.Lock()

    def get(self, relpath: str) -> Any:
        path = self.site / relpath
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(relpath)
        if cached and cached[0] == stamp:
            return cached[1]
        value = json.loads(path.read_bytes())
        with self._lock:
            self._cache[relpath] = (stamp, value)
        return value


class QtCatalog:
    def __init__(self, site: Path) -> None:
        self.site = site
        self.files = JsonFiles(site)

    def index(self) -> dict[str, Any]:
        return self.files.get("qt/variants.json") or {"architectures": [], "variants": {}}

    def entries(self, arch: str | None, category: str = "all") -> list[Entry]:
        """The pre-rendered list for ``arch`` ("All" packages plus that architecture's)."""
        known = set(self.index().get("architectures", []))
        folder = arch if arch is not None and arch in known else ALL
        return self.files.get(list_path(folder, category)) or []

    def visible(
        self, tag: str | None, arch: str | None, category: str = "all", name_filter: str = ""
    ) -> list[Entry]:
        """What a session sees: its architecture, its tags (once it said hello), the name filter,
        and one architecture per app: the native variant when both it and "All" match."""
        entries = self.entries(arch, category)
        if tag is not None:
            try:
                client = TagList.parse_optional(tag)
            except TagError:
                client = TagList()
            entries = [e for e in entries if app_matches(client, e["tags"])]
        if name_filter:
            needle = name_filter.casefold()
            entries = [e for e in entries if needle in e["name"].casefold()]
        native = {e["id"] for e in entries if e["architecture"] != ALL}
        return [e for e in entries if e["architecture"] != ALL or e["id"] not in native]

    def pick(self, entries: list[Entry], app_id: str) -> Entry | None:
        """The variant of ``app_id`` that icon, description and purchase use (native first)."""
        matching = [e for e in entries if e["id"] == app_id]
        return matching[-1] if matching else None

    @staticmethod
    def key_of(entry: Entry) -> str:
        return unquote(entry["iconUrl"].removeprefix("/app/icons/"))

    def icon_file(self, entry: Entry) -> Path:
        return self.site / "qt" / "app-icons" / (escape_key(self.key_of(entry)) + ".png")

    def description_file(self, entry: Entry) -> Path:
        return self.site / "qt" / "descriptions" / (escape_key(self.key_of(entry)) + ".html")

    def variant(self, purchase_id: str) -> dict[str, Any] | None:
        return self.index().get("variants", {}).get(purchase_id)

    def variant_by_key(self, key: str) -> tuple[str, dict[str, Any]] | None:
        for purchase_id, variant in self.index().get("variants", {}).items():
            if variant["key"] == key:
                return purchase_id, variant
        return None

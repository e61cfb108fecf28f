"""The no-change fast path: skip scanning, planning and publishing when nothing they read changed.

site/ is a pure function of repo/'s files (read only when their (size, mtime_ns) changed, the
scan cache's own rule), the builder's code and templates, and the repo and site paths. After a
build that finished, ``inputs.json`` beside site/ keeps a digest of all of them plus what that
build reported. The next build walks repo/, computes the digest again and, when it matches and
every file of the manifest still has the size and mtime it was published with (so a deleted or
damaged file of site/ is still repaired by a full build), has nothing to do.

A build killed midway leaves its build-in-progress marker, which turns the fast path off until a
full build finishes; a full build rewrites ``inputs.json`` only after the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from builder.model import builder_code_digest

INPUTS_FILE = "inputs.json"
VERSION = 1


def inputs_digest(
    repo: Path, site: Path, template_digest: str, stats: dict[str, list[int] | None], keys: str = ""
) -> str:
    """A digest of every input of a build; ``stats`` is scan.walk_repo_stats(repo): each file
    the scan sees (hidden names are left out there too) with its size and mtime; ``keys`` is
    builder.trust.keys.folder_state of the key folder, "" without one."""
    head = f"{VERSION}\0{repo}\0{site}\0{builder_code_digest()}\0{template_digest}\0{keys}\n"
    return hashlib.sha256((head + json.dumps(stats, separators=(",", ":"))).encode()).hexdigest()


def load(state: Path) -> dict[str, Any] | None:
    """What the last finished build recorded, or None."""
    try:
        data = json.loads((state / INPUTS_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == VERSION else None


def site_intact(site: Path, manifest: dict[str, dict[str, Any]]) -> bool:
    """Every published file still has the size and mtime it was written with."""
    root = str(site)
    for path, entry in manifest.items():
        try:
            st = os.stat(f"{root}/{path}")
        except OSError:
            return False
        if st.st_size != entry["size"] or st.st_mtime_ns != entry["mtime_ns"]:
            return False
    return True


def record(digest: str | None, skipped: dict[str, str], inputs: int) -> bytes:
    """The bytes of ``inputs.json`` for a build that finished."""
    return json.dumps(
        {"version": VERSION, "digest": digest, "skipped": skipped, "inputs": inputs},
        separators=(",", ":"),
    ).encode()

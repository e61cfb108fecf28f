"""Renderers: each turns the catalog into the static files of one dialect or view.

A renderer is a callable ``(catalog, context) -> Iterable[Output]``. It must be cheap to call:
the expensive part of an output (serialising, templating) lives in ``Output.render``, which the
publisher calls only when the output's fingerprint changed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from builder.model import Catalog, builder_code_digest
from builder.publish import Output

# Every fingerprint is salted with the builder's own source, so a new Depot version re-renders
# what its code would render differently: incremental output equals a clean build across
# upgrades too, with no version number to remember to bump.
RENDER_VERSION = builder_code_digest()


def fingerprint(*parts: str) -> str:
    digest = hashlib.sha256(RENDER_VERSION.encode())
    for part in parts:
        digest.update(b"\0")
        digest.update(part.encode())
    return digest.hexdigest()


def site_relpath(from_file: str, to_file: str) -> str:
    """The relative link from one site file to another (both POSIX paths relative to site/).

    The same answer as ``posixpath.relpath(to_file, dirname(from_file) or ".")``, several times
    faster for the plain paths the builder makes (renderers call it once per link)."""
    base = from_file.split("/")[:-1]
    target = to_file.split("/")
    common = 0
    limit = min(len(base), len(target))
    while common < limit and base[common] == target[common]:
        common += 1
    if common == len(target) or _unusual(from_file) or _unusual(to_file):
        # a folder of from_file itself, a trailing slash, "." or ".." parts: relpath knows best
        return posixpath.relpath(to_file, posixpath.dirname(from_file) or ".")
    return "/".join([".."] * (len(base) - common) + target[common:])


def _unusual(path: str) -> bool:
    return not path or path[0] == "/" or path[-1] == "/" or "//" in path or "/." in "/" + path


def json_bytes(value: Any) -> bytes:
    """JSON as published: sorted keys, one-space indent, so diffs and reviews stay readable."""
    return (json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


@dataclass
class RenderContext:
    """What renderers share besides the catalog: the template environment and its digest."""

    templates: Any  # jinja2.Environment
    template_digest: str
    extras: dict[str, Any] = field(default_factory=dict)


Renderer = Callable[[Catalog, RenderContext], Iterable[Output]]

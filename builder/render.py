"""Renderers: each turns the catalog into the static files of one dialect or view.

A renderer works on *parts* of the catalog, so that a build re-plans only what a change
touches (builder/plan.py keeps every part's outputs and fragments in the build state):

- ``parts(record, settings)`` names the parts a record belongs to (an app id, a platform and
  module name, a package file's content address). ``fixed_parts(settings)`` names parts that
  exist without records (a declared OTA device without builds still has its feeds).
- ``render_part(part, records, ctx)`` makes the part's own files (``Part.outputs``) and its
  *fragments*: pre-rendered pieces of files that list many parts (a device shard lists every
  module of its bucket; a search shard lists entries of many apps).
- ``assemble(target, fragments, ctx)`` makes the files of one *target* from its fragments, in
  the order of their ``order`` keys, and may emit fragments to targets of a higher ``level``
  (a device shard's size and SHA-256 go to the device entry, level 2).

A part is rendered only when its records changed, a target is assembled only when one of its
fragments changed, and a change of settings, templates or builder code re-plans everything. So
a part's bytes must depend only on its records and the settings, a target's only on its
fragments and the settings: the planner cannot see anything else. Both must be cheap to plan:
the expensive part of an output (serialising, templating) lives in ``Output.render``, which the
publisher calls only when the output's fingerprint changed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.model import Record, StoreSettings, builder_code_digest
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
    """What every part and target is rendered with: the store settings, repo/ (outputs that
    read a package file, an icon out of a Qt package, hold a path below it), the template
    environment and its digest."""

    settings: StoreSettings
    repo: Path
    templates: Any  # jinja2.Environment
    template_digest: str
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fragment:
    """A piece of a file that lists many parts: assembled with its target's other fragments."""

    target: str  # the renderer's own name for the file(s) it joins
    order: str  # where it goes among the target's fragments (sorted as str, then by origin)
    data: str  # what the assembly joins: pre-rendered JSON or HTML, or JSON the assembly reads


@dataclass
class Part:
    """What rendering one part (or assembling one target) makes."""

    outputs: list[Output] = field(default_factory=list)
    fragments: list[Fragment] = field(default_factory=list)


class Renderer:
    """Base of every renderer; see the module docstring for the protocol."""

    name = ""

    def parts(self, record: Record, settings: StoreSettings) -> Iterable[str]:
        return ()

    def fixed_parts(self, settings: StoreSettings) -> Iterable[str]:
        return ()

    def render_part(self, part: str, records: list[Record], ctx: RenderContext) -> Part:
        raise NotImplementedError

    def fixed_targets(self, settings: StoreSettings) -> Iterable[str]:
        """Targets assembled even when no fragment names them (a declared, empty platform)."""
        return ()

    def level(self, target: str) -> int:
        """Targets are assembled level by level, 1 first; a fragment an assembly emits must go
        to a target of a higher level."""
        return 1

    def assemble(self, target: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        raise NotImplementedError


def json_fragment(value: Any) -> str:
    """``value`` as :func:`json_bytes` writes it as an item of a list that is the value of a
    top-level key: the pieces :func:`json_with_lists` joins."""
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False).replace("\n", "\n  ")


def json_with_lists(value: dict[str, Any], lists: dict[str, list[str]]) -> bytes:
    """:func:`json_bytes` of ``value`` with each key of ``lists`` holding the list whose items
    are those pre-rendered fragments (:func:`json_fragment`): the same bytes, without
    serialising ten thousand unchanged items again."""
    marks = {key: f"\0{key}\0" for key in lists}
    text = json.dumps({**value, **marks}, sort_keys=True, indent=1, ensure_ascii=False)
    for key, items in lists.items():
        mark = json.dumps(marks[key], ensure_ascii=False)
        joined = "[\n  " + ",\n  ".join(items) + "\n ]" if items else "[]"
        text = text.replace(mark, joined, 1)
    return (text + "\n").encode()

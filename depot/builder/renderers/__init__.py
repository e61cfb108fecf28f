"""Renderers: each turns the catalog into the static files of one dialect or view.

A renderer is a callable ``(catalog, context) -> Iterable[Output]``. It must be cheap to call:
the expensive part of an output (serialising, templating) lives in ``Output.render``, which the
publisher calls only when the output's fingerprint changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from depot.builder.model import Catalog
from depot.builder.publish import Output

# Bump when the shape of any rendered file changes without its inputs changing.
RENDER_VERSION = "1"


def fingerprint(*parts: str) -> str:
    digest = hashlib.sha256(RENDER_VERSION.encode())
    for part in parts:
        digest.update(b"\0")
        digest.update(part.encode())
    return digest.hexdigest()


def json_bytes(value: Any) -> bytes:
    """JSON as published: sorted keys, two-space indent, so diffs and reviews stay readable."""
    return (json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


@dataclass
class RenderContext:
    """What renderers share besides the catalog: the template environment and its digest."""

    templates: Any  # jinja2.Environment
    template_digest: str
    extras: dict[str, Any] = field(default_factory=dict)


Renderer = Callable[[Catalog, RenderContext], Iterable[Output]]


def renderers() -> list[Renderer]:
    from depot.builder.renderers import blobs, device_index, web

    return [blobs.render, device_index.render, web.render]

"""Package files, published under content-addressed names so a CDN may cache them forever."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from builder.model import Catalog
from builder.publish import LEAF, Output
from builder.render import RenderContext

MEDIA_TYPES = {
    ".gz": "application/gzip",
    ".bin": "application/octet-stream",
    ".zip": "application/zip",
    ".apk": "application/vnd.android.package-archive",
}


def render(catalog: Catalog, ctx: RenderContext) -> Iterable[Output]:
    repo: Path = ctx.extras["repo"]
    seen: set[str] = set()
    for record in catalog.records:
        blob = getattr(record, "blob", None)
        if blob is None or not record.public_download:
            continue
        site_path = blob.site_path
        if site_path in seen:
            continue
        seen.add(site_path)
        yield Output(
            path=site_path,
            fingerprint=f"{blob.size}:{blob.sha256}",
            media_type=MEDIA_TYPES.get(os.path.splitext(blob.path)[1], "application/octet-stream"),
            tier=LEAF,
            source=repo / blob.path,
        )

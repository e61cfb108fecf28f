"""Package files, published under content-addressed names so a CDN may cache them forever."""

from __future__ import annotations

import os

from builder.model import Record, StoreSettings
from builder.publish import LEAF, Output
from builder.render import Part, RenderContext, Renderer

MEDIA_TYPES = {
    ".gz": "application/gzip",
    ".bin": "application/octet-stream",
    ".zip": "application/zip",
    ".apk": "application/vnd.android.package-archive",
}


class Blobs(Renderer):
    """One part per content address: the same bytes in two package files are one file of site/,
    copied from the first of them by path."""

    name = "blobs"

    def parts(self, record: Record, settings: StoreSettings) -> list[str]:
        blob = getattr(record, "blob", None)
        return [blob.site_path] if blob is not None and record.public_download else []

    def render_part(self, part: str, records: list[Record], ctx: RenderContext) -> Part:
        blob = records[0].blob  # type: ignore[attr-defined]
        return Part(
            outputs=[
                Output(
                    path=part,
                    fingerprint=f"{blob.size}:{blob.sha256}",
                    media_type=MEDIA_TYPES.get(os.path.splitext(blob.path)[1], "application/octet-stream"),
                    tier=LEAF,
                    source=ctx.repo / blob.path,
                )
            ]
        )

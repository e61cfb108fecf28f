"""Make maintainer-supplied HTML descriptions safe to publish.

The rules live in the floor (:mod:`builder.webpolicy`), because the Qt dialect publishes the
same descriptions and a dialect may not import a sibling: no scripts, no event handlers, no
styles, and nothing that loads from another site (images, frames, media). Links stay, to
http(s) and mailto only, marked so they pass no referrer or opener.
"""

from __future__ import annotations

from builder.webpolicy import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, clean_html

__all__ = ["ALLOWED_ATTRIBUTES", "ALLOWED_TAGS", "clean_html"]

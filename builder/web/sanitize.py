"""Make maintainer-supplied HTML descriptions safe to publish.

Descriptions come from package sidecars and uploads, so they are untrusted: no scripts, no event
handlers, no styles, and nothing that loads from another site (images, frames, media). Links
stay, to http(s) and mailto only, marked so they pass no referrer or opener.
"""

from __future__ import annotations

import nh3

ALLOWED_TAGS = {
    "p", "br", "ul", "ol", "li", "strong", "em", "b", "i", "code", "pre",
    "blockquote", "h3", "h4", "h5", "a", "dl", "dt", "dd", "hr",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}


def clean_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )

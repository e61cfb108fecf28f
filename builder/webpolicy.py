"""What a browser may do with what Depot publishes: the HTML a description may contain, and the
headers every answer carries.

Both are floor: the web catalog and the Qt dialect publish descriptions (and a dialect may not
import a sibling), and the headers are sent by the runtime (:mod:`runtime.security`) and by the
nginx block the builder generates (:mod:`builder.nginx`), which must agree.

Descriptions come from package sidecars and uploads, so they are untrusted: no scripts, no event
handlers, no styles, no forms, and nothing that loads from another site (images, frames,
media). Links stay, to http(s) and mailto only, marked so they pass no referrer or opener. The
tags kept are all in the subset of HTML that Qt's rich text renders, so a Qt client (Neptune 3
UI, Qt Application Manager) shows the same text a browser does.
"""

from __future__ import annotations

import nh3

ALLOWED_TAGS = {
    "p", "br", "ul", "ol", "li", "strong", "em", "b", "i", "code", "pre",
    "blockquote", "h3", "h4", "h5", "a", "dl", "dt", "dd", "hr",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}
# Joins the fingerprint of every published description: a change of the rules above must
# change this, so the next build re-renders what was cleaned under the old rules.
POLICY_VERSION = "1"


def clean_html(html: str) -> str:
    """The description with everything outside the rules above removed (text is kept)."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )


# The web catalog loads only its own content-hashed style sheet and script, its own images and
# the inline data: favicon; it has no inline script or style. Descriptions are cleaned above
# and the package files are served with their own media types, so nothing on the origin is
# both attacker-written and executable: the policy is the second line of defence.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

# Sent on every answer, whatever its media type (one policy for all: nginx adds headers per
# location, not per media type, and a policy on a JSON or PNG answer costs nothing).
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)

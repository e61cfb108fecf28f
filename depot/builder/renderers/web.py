"""The web catalog: pre-rendered HTML pages a browser reads straight from site/.

For now one page lists everything the store holds; the style sheet is published under a name
derived from its content, so it can be cached forever and never goes stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources

from depot.builder.model import AndroidVersion, AppVariant, Catalog, OtaBuild
from depot.builder.publish import INDEX, LEAF, Output
from depot.builder.renderers import RenderContext, fingerprint
from depot.builder.renderers.device_index import platform_index_path, relative_url

HTML = "text/html; charset=utf-8"
CSS = "text/css; charset=utf-8"


def _stylesheet() -> tuple[str, bytes]:
    data = resources.files("depot.builder").joinpath("templates/style.css").read_bytes()
    return f"assets/style.{hashlib.sha256(data).hexdigest()[:12]}.css", data


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def render(catalog: Catalog, ctx: RenderContext) -> Iterable[Output]:
    css_path, css = _stylesheet()
    yield Output(
        path=css_path,
        fingerprint=fingerprint("css", hashlib.sha256(css).hexdigest()),
        media_type=CSS,
        tier=LEAF,
        render=lambda: css,
    )
    page = "index.html"

    def body() -> bytes:
        template = ctx.templates.get_template("index.html")
        html = template.render(
            settings=catalog.settings,
            stylesheet=relative_url(page, css_path),
            modules=catalog.modules_by_platform(),
            firmware=catalog.firmware_by_platform(),
            platforms=catalog.platforms(),
            platform_index=lambda p: relative_url(page, platform_index_path(p)),
            device_index=relative_url(page, "device/index.json"),
            download=lambda item: relative_url(page, item.blob.site_path),
            apps=sorted(catalog.of(AppVariant), key=lambda a: (a.name.lower(), a.architecture)),
            builds=sorted(catalog.of(OtaBuild), key=lambda b: (b.codename, b.date), reverse=True),
            android=sorted(catalog.of(AndroidVersion), key=lambda a: (a.package, -a.version_code)),
            human_size=human_size,
        )
        return html.encode()

    yield Output(
        path=page,
        fingerprint=fingerprint(
            "web-home",
            ctx.template_digest,
            catalog.settings.digest,
            css_path,
            *sorted(r.digest for r in catalog.records),
        ),
        media_type=HTML,
        tier=INDEX,
        render=body,
        url="/",
    )

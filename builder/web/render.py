"""The web catalog: pre-rendered HTML pages a browser reads straight from site/ or a CDN.

Every page links relatively, so the tree works from any host, sub-path or a folder opened in a
browser; style sheet, script and icons are named by their content, so they can be cached
forever. Each page's fingerprint covers exactly the records it shows, so changing one app
rewrites that app's page and the pages that list it, and nothing else. Navigation is the same
fixed set of links on every page for that reason: a nav listing every device would make every
page depend on every device.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from builder.model import AndroidVersion, AppVariant, Catalog, OtaBuild, Record
from builder.publish import INDEX, LEAF, PAGE, Output
from builder.render import RenderContext, fingerprint, site_relpath
from builder.tarsafe import read_member
from builder.versions import version_key
from builder.webpolicy import clean_html

HTML = "text/html; charset=utf-8"
CSS = "text/css; charset=utf-8"
JS = "text/javascript; charset=utf-8"
JSON = "application/json"
HOME_LIST_LENGTH = 12


def relative_url(from_file: str, to_file: str) -> str:
    """The link from one site file to another. Links name ``index.html`` explicitly: a folder
    link opens a directory listing, not the page, when the tree is opened from disk."""
    return site_relpath(from_file, to_file)


def _icon_of(package: Path) -> bytes:
    """The app's icon; a package that lost it since the scan publishes an empty one until the
    next build drops the record."""
    return read_member(package, "icon.png") or b""


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _date_number(date: str) -> int:
    """``2026-11-25`` → 20261125; no date → 0, which sorts last."""
    return int(date.replace("-", "")) if date else 0


def icon_path(app: AppVariant) -> str:
    return f"assets/icons/{app.icon_sha256[:16]}.png"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "item"


def _asset(name: str, media_type: str) -> tuple[str, bytes, str]:
    data = resources.files("builder.web").joinpath(f"templates/{name}").read_bytes()
    stem, ext = name.rsplit(".", 1)
    return f"assets/{stem}.{hashlib.sha256(data).hexdigest()[:12]}.{ext}", data, media_type


@dataclass
class Page:
    path: str
    template: str
    records: list[Record]
    context: dict[str, Any]
    url: str | None = None
    tier: int = PAGE


class WebCatalog:
    """Groups the catalog the way pages show it, then yields one Output per page."""

    def __init__(self, catalog: Catalog, ctx: RenderContext) -> None:
        self.catalog, self.ctx = catalog, ctx
        self.settings = catalog.settings
        self.assets = [_asset("style.css", CSS), _asset("search.js", JS)]
        self.apps = self._group_apps()
        self.builds = self._group_builds()
        self.android = self._group_android()
        self.modules = catalog.modules_by_platform()
        self.firmware = catalog.firmware_by_platform()

    # -- grouping ---------------------------------------------------------------------------

    def _group_apps(self) -> dict[str, list[AppVariant]]:
        grouped: dict[str, list[AppVariant]] = {}
        for app in self.catalog.of(AppVariant):
            grouped.setdefault(app.id, []).append(app)
        for variants in grouped.values():
            variants.sort(key=lambda a: (a.architecture != "All", a.architecture, version_key(a.version)))
        return dict(sorted(grouped.items()))

    def _group_builds(self) -> dict[str, dict[str, list[OtaBuild]]]:
        grouped: dict[str, dict[str, list[OtaBuild]]] = {}
        for build in self.catalog.of(OtaBuild):
            if build.enabled:
                grouped.setdefault(build.codename, {}).setdefault(build.variant, []).append(build)
        for variants in grouped.values():
            for builds in variants.values():
                builds.sort(key=lambda b: (b.date, version_key(b.version), b.blob.path), reverse=True)
        return grouped

    def _group_android(self) -> dict[str, list[AndroidVersion]]:
        grouped: dict[str, list[AndroidVersion]] = {}
        for version in self.catalog.of(AndroidVersion):
            grouped.setdefault(version.package, []).append(version)
        for versions in grouped.values():
            versions.sort(key=lambda v: v.version_code, reverse=True)
        return dict(sorted(grouped.items()))

    def ota_devices(self) -> list[Any]:
        return [d for d in self.settings.ota_devices if d.visible]

    # -- pages ------------------------------------------------------------------------------

    def pages(self) -> Iterable[Page]:
        # Newest and updated first: by the sidecar's upload date (apps without one last), then name.
        apps_newest = sorted(
            self.apps.values(),
            key=lambda vs: (-_date_number(max(v.updated for v in vs)), vs[-1].name.lower(), vs[-1].id),
        )
        yield Page(
            "index.html",
            "home.html",
            [r for r in self.catalog.records if not isinstance(r, OtaBuild) or r.enabled],
            {
                "apps": apps_newest[:HOME_LIST_LENGTH],
                "app_count": len(self.apps),
                "categories": self._categories(),
                "devices": self.ota_devices(),
                "builds": self.builds,
                "platforms": self.catalog.platforms(),
                "modules": self.modules,
                "firmware": self.firmware,
                "android": self.android,
            },
            tier=INDEX,
        )
        yield Page(
            "search.html",
            "search.html",
            # what the entries show: its fingerprint must change when any of them does
            [r for r in self.catalog.records if not isinstance(r, OtaBuild)],
            {"entries": self.search_entries("search.html")},
            tier=INDEX,
        )
        for app_id, variants in self.apps.items():
            yield Page(
                f"apps/{slug(app_id)}/index.html",
                "app.html",
                list(variants),
                {"app": variants[-1], "variants": variants},
            )
        for category in self.settings.categories:
            members = [vs for vs in self.apps.values() if vs[0].category == category.name]
            yield Page(
                f"categories/{slug(category.name)}/index.html",
                "category.html",
                [v for vs in members for v in vs],
                {"category": category, "apps": members},
            )
        for device in self.ota_devices():
            builds = self.builds.get(device.codename, {})
            yield Page(
                f"devices/{slug(device.codename)}/index.html",
                "device.html",
                [b for bs in builds.values() for b in bs],
                {"device": device, "variants": builds, "variant_names": self._variant_names()},
            )
        for platform in self.catalog.platforms():
            mods, fws = self.modules.get(platform, {}), self.firmware.get(platform, {})
            yield Page(
                f"modules/{slug(platform)}/index.html",
                "platform.html",
                [*(r for rs in mods.values() for r in rs), *(r for rs in fws.values() for r in rs)],
                {"platform": platform, "modules": mods, "firmware": fws},
            )
        for package, versions in self.android.items():
            yield Page(
                f"android-apps/{slug(package)}/index.html",
                "android.html",
                list(versions),
                {"package": package, "versions": versions},
            )

    def _categories(self) -> list[tuple[Any, int]]:
        counts: dict[str, int] = {}
        for variants in self.apps.values():
            counts[variants[0].category] = counts.get(variants[0].category, 0) + 1
        return [(c, counts.get(c.name, 0)) for c in self.settings.categories]

    def _variant_names(self) -> dict[str, str]:
        return {v.codename: v.description for v in self.settings.ota_variants}

    def search_entries(self, page: str) -> list[dict[str, str]]:
        """Name, kind, short description and link of everything a visitor may look for."""
        entries: list[dict[str, str]] = []

        def add(name: str, kind: str, text: str, target: str, anchor: str = "") -> None:
            url = relative_url(page, target) + anchor
            entries.append({"name": name, "kind": kind, "text": text, "url": url})

        for app_id, variants in self.apps.items():
            app = variants[-1]
            add(app.name, "App", app.brief_description, f"apps/{slug(app_id)}/index.html")
        for device in self.ota_devices():
            name = f"{device.manufacturer} {device.name}".strip()
            add(name, "OTA device", device.codename, f"devices/{slug(device.codename)}/index.html")
        for platform in self.catalog.platforms():
            target = f"modules/{slug(platform)}/index.html"
            for name, versions in self.modules.get(platform, {}).items():
                add(name, f"Module ({platform})", versions[0].description, target, f"#module-{slug(name)}")
            for name, images in self.firmware.get(platform, {}).items():
                add(name, f"Firmware ({platform})", images[0].description, target, f"#firmware-{slug(name)}")
        for package, releases in self.android.items():
            add(package, "Android app", releases[0].version_name, f"android-apps/{slug(package)}/index.html")
        return sorted(entries, key=lambda e: (e["name"].lower(), e["kind"]))

    # -- outputs ----------------------------------------------------------------------------

    def outputs(self) -> Iterable[Output]:
        for path, data, media_type in self.assets:
            yield Output(
                path=path,
                fingerprint=fingerprint("asset", hashlib.sha256(data).hexdigest()),
                media_type=media_type,
                tier=LEAF,
                render=functools.partial(bytes, data),
            )
        yield from self._icons()
        yield self._search_index()
        for page in self.pages():
            yield self._page_output(page)

    def _icons(self) -> Iterable[Output]:
        """Each distinct app icon once, named by its content so it can be cached forever."""
        seen: set[str] = set()
        repo = self.ctx.extras["repo"]
        for variants in self.apps.values():
            for app in variants:
                if not app.icon_sha256 or app.icon_sha256 in seen:
                    continue
                seen.add(app.icon_sha256)
                yield Output(
                    path=icon_path(app),
                    fingerprint=fingerprint("web-icon", app.icon_sha256, app.blob.sha256),
                    media_type="image/png",
                    tier=LEAF,
                    render=functools.partial(_icon_of, repo / app.blob.path),
                )

    def _search_index(self) -> Output:
        entries = self.search_entries("search.json")
        body = (
            json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        ).encode()
        return Output(
            path="search.json",
            fingerprint=fingerprint("search", hashlib.sha256(body).hexdigest()),
            media_type=JSON,
            tier=PAGE,
            render=lambda: body,
        )

    def _page_output(self, page: Page) -> Output:
        path = page.path

        def link(target: str) -> str:
            return relative_url(path, target)

        def render() -> bytes:
            template = self.ctx.templates.get_template(page.template)
            return template.render(
                settings=self.settings,
                page_path=path,
                link=link,
                stylesheet=link(self.assets[0][0]),
                script=link(self.assets[1][0]),
                download=lambda item: link(item.blob.site_path),
                # shipper's counted download URL: no ".zip", a trailing slash (relpath drops it)
                ota_download=lambda b: (
                    link(f"download_check/{b.codename}/{b.blob.filename.removesuffix('.zip')}") + "/"
                ),
                app_page=lambda app_id: link(f"apps/{slug(app_id)}/index.html"),
                icon=lambda app: link(icon_path(app)) if app.icon_sha256 else "",
                human_size=human_size,
                slug=slug,
                clean_html=clean_html,
                **page.context,
            ).encode()

        return Output(
            path=path,
            fingerprint=fingerprint(
                "web",
                path,
                page.template,
                self.ctx.template_digest,
                self.settings.digest,
                *(a[0] for a in self.assets),
                *sorted(r.digest for r in page.records),
            ),
            media_type=HTML,
            tier=page.tier,
            render=render,
            url=page.url,
        )


def render(catalog: Catalog, ctx: RenderContext) -> Iterable[Output]:
    return WebCatalog(catalog, ctx).outputs()

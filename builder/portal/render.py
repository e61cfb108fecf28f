"""The static Android catalog: live APK versions as JSON a device reads from any CDN.

Layout::

    android/index.json                every package (latest version, page URL, size, SHA-256 of
                                      the page) and every country with a live version
    android/packages/<package>.json   one package: its live versions, newest first, each with
                                      size, SHA-256, download URL and release targets
    android/countries/<CC>.json       what is live in one country: per package, its versions

URLs are relative to the file that names them, so the tree works from any host or sub-path.
The APK bytes themselves are published by the blobs renderer under content-addressed names.

Planned by parts (builder/render.py): one part per package makes its page and sends its entry
to each country it is live in and its page's row to the index; each country page is a target
that sends its own row to the index, the last target.
"""

from __future__ import annotations

import hashlib
from typing import Any

from builder.model import AndroidVersion, Record, StoreSettings
from builder.publish import INDEX, PAGE, Output
from builder.render import (
    Fragment,
    Part,
    RenderContext,
    Renderer,
    fingerprint,
    json_bytes,
    json_fragment,
    json_with_lists,
    site_relpath,
)

SCHEMA = 1
JSON = "application/json"
INDEX_PATH = "android/index.json"


def package_path(package: str) -> str:
    return f"android/packages/{package}.json"


def country_path(country: str) -> str:
    return f"android/countries/{country}.json"


def _version_entry(page: str, v: AndroidVersion) -> dict[str, Any]:
    return {
        "version_code": v.version_code,
        "version_name": v.version_name,
        "min_sdk": v.min_sdk,
        "target_sdk": v.target_sdk or None,
        "abis": list(v.abis),
        "permissions": list(v.permissions),
        "size": v.blob.size,
        "sha256": v.blob.sha256,
        "signer_sha256": v.signer_sha256,
        "url": site_relpath(page, v.blob.site_path),
        "released": v.released,
        "targets": {"countries": list(v.countries), "vehicle_contexts": list(v.vehicle_contexts)},
    }


# Part and target names (builder/render.py).
PACKAGE = "package:"
COUNTRY = "country:"
INDEX_TARGET = "index"
PACKAGE_ROW, COUNTRY_ROW = "p\n", "c\n"  # the index's fragments: order prefixes


class AndroidCatalog(Renderer):
    """Parts: one per package (its page). Targets: one per country (level 1), from each
    package's entry for it, and the index (level 2), from each package page's and each country
    page's row (size and SHA-256 included)."""

    name = "android"

    def parts(self, record: Record, settings: StoreSettings) -> list[str]:
        return [PACKAGE + record.package] if isinstance(record, AndroidVersion) else []

    def fixed_targets(self, settings: StoreSettings) -> list[str]:
        return [INDEX_TARGET]

    def level(self, target: str) -> int:
        return 2 if target == INDEX_TARGET else 1

    def render_part(self, part: str, records: list[Record], ctx: RenderContext) -> Part:
        package = part.removeprefix(PACKAGE)
        items = sorted(
            (r for r in records if isinstance(r, AndroidVersion)),
            key=lambda v: (v.version_code, v.blob.path),
            reverse=True,
        )
        path = package_path(package)
        body = json_bytes(
            {"schema": SCHEMA, "package": package, "versions": [_version_entry(path, v) for v in items]}
        )
        fp = fingerprint("android-package", package, *(v.digest for v in items))
        row = {
            "package": package,
            "latest_version_code": items[0].version_code,
            "latest_version_name": items[0].version_name,
            "url": site_relpath(INDEX_PATH, path),
            **_described(body),
        }
        fragments = [Fragment(INDEX_TARGET, PACKAGE_ROW + package, json_fragment(row))]
        by_country: dict[str, list[AndroidVersion]] = {}
        for v in items:
            for country in v.countries:
                by_country.setdefault(country, []).append(v)
        for country, versions in sorted(by_country.items()):
            page = country_path(country)
            entry = {"package": package, "versions": [_version_entry(page, v) for v in versions]}
            fragments.append(Fragment(COUNTRY + country, package, json_fragment(entry)))
        return Part(
            outputs=[Output(path=path, fingerprint=fp, media_type=JSON, tier=PAGE, render=lambda: body)],
            fragments=fragments,
        )

    def assemble(self, target: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        if target == INDEX_TARGET:
            lists: dict[str, list[str]] = {"packages": [], "countries": []}
            for f in fragments:  # packages by name, countries by code: their order keys
                lists["packages" if f.order.startswith(PACKAGE_ROW) else "countries"].append(f.data)
            body = json_with_lists({"schema": SCHEMA, "store": ctx.settings.name}, lists)
            fp = fingerprint("android-index", hashlib.sha256(body).hexdigest())
            out = Output(path=INDEX_PATH, fingerprint=fp, media_type=JSON, tier=INDEX, render=lambda: body)
            return Part(outputs=[out])
        country = target.removeprefix(COUNTRY)
        path = country_path(country)
        # the packages by name: their order keys
        body = json_with_lists(
            {"schema": SCHEMA, "country": country}, {"packages": [f.data for f in fragments]}
        )
        fp = fingerprint("android-country", hashlib.sha256(body).hexdigest())
        row = {"country": country, "url": site_relpath(INDEX_PATH, path), **_described(body)}
        return Part(
            outputs=[Output(path=path, fingerprint=fp, media_type=JSON, tier=PAGE, render=lambda: body)],
            fragments=[Fragment(INDEX_TARGET, COUNTRY_ROW + country, json_fragment(row))],
        )


def _described(body: bytes) -> dict[str, Any]:
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}

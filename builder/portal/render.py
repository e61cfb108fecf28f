"""The static Android catalog: live APK versions as JSON a device reads from any CDN.

Layout::

    android/index.json                every package (latest version, page URL, size, SHA-256 of
                                      the page) and every country with a live version
    android/packages/<package>.json   one package: its live versions, newest first, each with
                                      size, SHA-256, download URL and release targets
    android/countries/<CC>.json       what is live in one country: per package, its versions

URLs are relative to the file that names them, so the tree works from any host or sub-path.
The APK bytes themselves are published by the blobs renderer under content-addressed names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from builder.model import AndroidVersion, Catalog
from builder.publish import INDEX, PAGE, Output
from builder.render import RenderContext, fingerprint, json_bytes, site_relpath

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


def _by_package(versions: list[AndroidVersion]) -> dict[str, list[AndroidVersion]]:
    grouped: dict[str, list[AndroidVersion]] = {}
    for v in versions:
        grouped.setdefault(v.package, []).append(v)
    for items in grouped.values():
        items.sort(key=lambda v: (v.version_code, v.blob.path), reverse=True)
    return dict(sorted(grouped.items()))


def _described(path: str, body: Callable[[], bytes]) -> dict[str, Any]:
    return {"size": len(body()), "sha256": hashlib.sha256(body()).hexdigest()}


def render(catalog: Catalog, ctx: RenderContext) -> Iterable[Output]:
    versions = catalog.of(AndroidVersion)
    packages = _by_package(versions)
    pages: list[tuple[str, str, Any]] = []  # (package, fingerprint, body)
    for package, items in packages.items():
        path = package_path(package)
        fp = fingerprint("android-package", package, *(v.digest for v in items))
        body = cache(
            lambda path=path, package=package, items=items: json_bytes(
                {
                    "schema": SCHEMA,
                    "package": package,
                    "versions": [_version_entry(path, v) for v in items],
                }
            )
        )
        pages.append((package, fp, body))
        yield Output(path=path, fingerprint=fp, media_type=JSON, tier=PAGE, render=body)

    countries: dict[str, dict[str, list[AndroidVersion]]] = {}
    for package, items in packages.items():
        for v in items:
            for country in v.countries:
                countries.setdefault(country, {}).setdefault(package, []).append(v)
    country_pages: list[tuple[str, str, Any]] = []
    for country, by_package in sorted(countries.items()):
        path = country_path(country)
        fp = fingerprint("android-country", country, *(v.digest for vs in by_package.values() for v in vs))
        body = cache(
            lambda path=path, country=country, by_package=by_package: json_bytes(
                {
                    "schema": SCHEMA,
                    "country": country,
                    "packages": [
                        {"package": p, "versions": [_version_entry(path, v) for v in vs]}
                        for p, vs in sorted(by_package.items())
                    ],
                }
            )
        )
        country_pages.append((country, fp, body))
        yield Output(path=path, fingerprint=fp, media_type=JSON, tier=PAGE, render=body)

    def index() -> bytes:
        return json_bytes(
            {
                "schema": SCHEMA,
                "store": catalog.settings.name,
                "packages": [
                    {
                        "package": package,
                        "latest_version_code": packages[package][0].version_code,
                        "latest_version_name": packages[package][0].version_name,
                        "url": site_relpath(INDEX_PATH, package_path(package)),
                        **_described(package_path(package), body),
                    }
                    for package, _fp, body in pages
                ],
                "countries": [
                    {
                        "country": country,
                        "url": site_relpath(INDEX_PATH, country_path(country)),
                        **_described(country_path(country), body),
                    }
                    for country, _fp, body in country_pages
                ],
            }
        )

    index_fp = fingerprint(
        "android-index",
        catalog.settings.name,
        *(f"p:{p}:{fp}" for p, fp, _ in pages),
        *(f"c:{c}:{fp}" for c, fp, _ in country_pages),
    )
    yield Output(path=INDEX_PATH, fingerprint=index_fp, media_type=JSON, tier=INDEX, render=index)

"""The Qt deployment server dialect's static files (Neptune 3 UI, Qt Application Manager).

Layout of site/ (public URL in brackets)::

    qt/category-list.json                 [/category/list]  All (id -1) first, then depot.toml order
    qt/category-icons/all.png             [/category/icon?id=-1]
    qt/category-icons/<id>.png            [/category/icon?id=<id>]  the category's icon, else the error PNG
    qt/category-icons/error.png           [/category/icon]  what unknown ids get
    qt/app-list/<arch>/all.json           every variant for <arch> ("All" plus that architecture)
    qt/app-list/<arch>/<category id>.json the same, one category
                                          (for arch "All" also [/app/list], [/app/list?category_id=<id>]
                                          and [/app/list?category_id=-1])
    qt/app-icons/<key>.png                [/app/icons/<key>]  each variant's icon.png, unchanged
    qt/app-icon-by-id/<id>.png            [/app/icon?id=<id>]  for a plain static server
    qt/descriptions/<key>.html            [/app/description?id=<id>] for the variant a plain server shows
    qt/variants.json                      the runtime's index: purchaseId → package file and key

``<key>`` is ``<id>_<architecture>_<tags_hash>`` with the reference's escaping. The runtime reads
these files and filters them by the session (tags, architecture) instead of rescanning repo/;
a plain static server serves what a client that never said hello would see.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from builder.model import AppVariant, Catalog
from builder.publish import INDEX, LEAF, PAGE, Output
from builder.qt.package import escape_key, variant_key
from builder.qt.png import ALL_ICON, ERROR_ICON
from builder.render import RenderContext, fingerprint, json_bytes
from builder.tarsafe import read_member
from builder.webpolicy import POLICY_VERSION, clean_html

JSON = "application/json"
PNG = "image/png"
HTML = "text/html; charset=utf-8"
ALL = "All"
ALL_CATEGORY_ID = -1


def key_of(app: AppVariant) -> str:
    return variant_key(app.id, app.architecture, app.tags_hash)


def icon_url(app: AppVariant) -> str:
    """Root-relative; the runtime makes it absolute for the requesting host."""
    return "/app/icons/" + quote(key_of(app), safe=":,")


def list_path(arch: str, category: str) -> str:
    return f"qt/app-list/{escape_key(arch)}/{category}.json"


def list_entry(app: AppVariant, category_ids: dict[str, int]) -> dict[str, Any]:
    """The 13 keys of the reference's /app/list entries."""
    return {
        "id": app.id,
        "name": app.name,
        "vendor": app.vendor,
        "briefDescription": app.brief_description,
        "category": app.category,
        "category_id": category_ids.get(app.category, 0),
        "architecture": app.architecture,
        "version": app.version,
        "pkgformat": app.pkgformat,
        "purchaseId": app.purchase_uuid,
        "tags": list(app.tags),
        "conflict_tags": list(app.conflict_tags),
        "iconUrl": icon_url(app),
    }


def unique_variants(catalog: Catalog) -> list[AppVariant]:
    """One variant per key (the first package file by path wins), sorted as the lists are."""
    seen: dict[str, AppVariant] = {}
    for app in sorted(catalog.of(AppVariant), key=lambda a: a.blob.path):
        seen.setdefault(key_of(app), app)
    return sorted(seen.values(), key=lambda a: (a.id, a.architecture, a.tags_hash))


def extract_icon(package: Path) -> bytes:
    """The package's ``icon.png``, or the error icon when it has none."""
    return read_member(package, "icon.png") or ERROR_ICON


def clean_description(description: str) -> bytes:
    """A description as published: untrusted HTML from a sidecar or an upload, reduced to the
    formatting both Qt's rich text and a browser show (``builder.webpolicy``), so neither the
    runtime's ``/app/description`` nor a plain static server or CDN ever serves a script."""
    return clean_html(description).encode()


def _description_fingerprint(description: str) -> str:
    raw = hashlib.sha256(description.encode()).hexdigest()
    return fingerprint("qt-description", "clean", POLICY_VERSION, raw)


def _static_choice(apps: list[AppVariant]) -> dict[str, AppVariant]:
    """Per id, the "All" variant a client without a session gets for /app/icon and
    /app/description: the last by tags (the reference orders by architecture, tags_hash)."""
    chosen: dict[str, AppVariant] = {}
    for app in apps:
        if app.architecture == ALL:
            chosen[app.id] = app
    return chosen


def render(catalog: Catalog, ctx: RenderContext) -> Iterable[Output]:
    repo: Path = ctx.extras["repo"]
    settings = catalog.settings
    categories = settings.categories
    category_ids = {c.name: c.id for c in categories}
    apps = unique_variants(catalog)

    # -- categories ---------------------------------------------------------------------------
    category_list = [{"id": ALL_CATEGORY_ID, "name": "All"}] + [
        {"id": c.id, "name": c.name} for c in categories
    ]
    cl_bytes = json_bytes(category_list)
    yield Output(
        path="qt/category-list.json",
        fingerprint=fingerprint("qt-categories", hashlib.sha256(cl_bytes).hexdigest()),
        media_type=JSON,
        tier=INDEX,
        render=lambda: cl_bytes,
        url="/category/list",
    )
    for path, data, query in (
        ("qt/category-icons/all.png", ALL_ICON, {"id": str(ALL_CATEGORY_ID)}),
        ("qt/category-icons/error.png", ERROR_ICON, None),
    ):
        yield _bytes_output(path, data, PNG, url="/category/icon", query=query)
    for c in categories:
        data = ERROR_ICON
        if c.icon:
            icon_file = (repo / c.icon).resolve()
            if icon_file.is_relative_to(repo.resolve()) and icon_file.is_file():
                data = icon_file.read_bytes()
        yield _bytes_output(
            f"qt/category-icons/{c.id}.png", data, PNG, url="/category/icon", query={"id": str(c.id)}
        )

    # -- app icons and descriptions ----------------------------------------------------------------
    for app in apps:
        key = escape_key(key_of(app))
        package = repo / app.blob.path
        yield Output(
            path=f"qt/app-icons/{key}.png",
            fingerprint=fingerprint("qt-icon", app.icon_sha256, app.blob.sha256),
            media_type=PNG,
            tier=LEAF,
            render=functools.partial(extract_icon, package),
            url="/app/icons/" + key_of(app),
        )
        yield Output(
            path=f"qt/descriptions/{key}.html",
            fingerprint=_description_fingerprint(app.description),
            media_type=HTML,
            tier=LEAF,
            render=functools.partial(clean_description, app.description),
        )
    for app_id, app in sorted(_static_choice(apps).items()):
        key = escape_key(key_of(app))
        package = repo / app.blob.path
        yield Output(
            path=f"qt/app-icon-by-id/{escape_key(app_id)}.png",
            fingerprint=fingerprint("qt-icon-by-id", app.icon_sha256, app.blob.sha256),
            media_type=PNG,
            tier=LEAF,
            render=functools.partial(extract_icon, package),
            url="/app/icon",
            query={"id": app_id},
        )
        yield Output(
            path=f"qt/description-by-id/{escape_key(app_id)}.html",
            fingerprint=_description_fingerprint(app.description),
            media_type=HTML,
            tier=LEAF,
            render=functools.partial(clean_description, app.description),
            url="/app/description",
            query={"id": app_id},
        )

    # -- app lists per architecture and category ---------------------------------------------
    entries = {key_of(app): list_entry(app, category_ids) for app in apps}
    archs = sorted({app.architecture for app in apps} - {ALL})
    for arch in [ALL, *archs]:
        visible = [a for a in apps if a.architecture in (ALL, arch)]
        groups: list[tuple[str, list[AppVariant], dict[str, str] | None]] = [("all", visible, None)]
        groups += [
            (str(c.id), [a for a in visible if a.category == c.name], {"category_id": str(c.id)})
            for c in categories
        ]
        for name, members, query in groups:
            body = json_bytes([entries[key_of(a)] for a in members])
            public = arch == ALL
            yield _bytes_output(
                list_path(arch, name),
                body,
                JSON,
                tier=PAGE,
                url="/app/list" if public else None,
                query=query if public else None,
            )
            if public and name == "all":  # the documented "All" id works too (the reference's bug)
                yield _bytes_output(
                    list_path(arch, "all-by-id"),
                    body,
                    JSON,
                    tier=PAGE,
                    url="/app/list",
                    query={"category_id": "-1"},
                )

    # -- the runtime's index ----------------------------------------------------------------------
    index = {
        "schema": 1,
        "architectures": archs,
        "variants": {
            app.purchase_uuid: {
                "id": app.id,
                "architecture": app.architecture,
                "tags_hash": app.tags_hash,
                "key": key_of(app),
                "file": app.blob.path,
                "size": app.blob.size,
                "sha256": app.blob.sha256,
                "digest": app.package_digest,
                "pkgformat": app.pkgformat,
            }
            for app in apps
        },
    }
    yield _bytes_output("qt/variants.json", json_bytes(index), JSON, tier=INDEX)


def _bytes_output(
    path: str,
    data: bytes,
    media_type: str,
    *,
    tier: int = LEAF,
    url: str | None = None,
    query: dict[str, str] | None = None,
) -> Output:
    return Output(
        path=path,
        fingerprint=fingerprint("qt-bytes", hashlib.sha256(data).hexdigest()),
        media_type=media_type,
        tier=tier,
        render=lambda: data,
        url=url,
        query=query,
    )

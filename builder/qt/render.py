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

Planned by parts (builder/render.py): one part per app id makes its variants' icons and
descriptions and the id's static choice (a variant key starts with its id, so the first package
file of a key wins within the part); the settings' part makes the category list and icons; the
one target, the lists, joins every variant's pre-rendered list entry and qt/variants.json entry
(its fragment) into the lists of every architecture it finds among them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from builder.model import AppVariant, Record, StoreSettings
from builder.publish import INDEX, LEAF, PAGE, Output
from builder.qt.package import escape_key, variant_key
from builder.qt.png import ALL_ICON, ERROR_ICON
from builder.render import Fragment, Part, RenderContext, Renderer, fingerprint, json_bytes, json_fragment
from builder.tarsafe import read_member
from builder.webpolicy import POLICY_VERSION, clean_html

JSON = "application/json"
PNG = "image/png"
HTML = "text/html; charset=utf-8"
ALL = "All"
ALL_CATEGORY_ID = -1

# Part and target names (builder/render.py): no app's part (APP + its id) is named CATEGORIES.
APP = "app:"
CATEGORIES = "categories"
LISTS = "lists"


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


def unique_variants(records: Iterable[Record]) -> list[AppVariant]:
    """One variant per key (the first package file by path wins), sorted as the lists are."""
    seen: dict[str, AppVariant] = {}
    apps = [r for r in records if isinstance(r, AppVariant)]
    for app in sorted(apps, key=lambda a: a.blob.path):
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


class QtStore(Renderer):
    """Parts: one per app id (its variants' icons and descriptions, and the id's static
    choice), and the settings' categories (:data:`CATEGORIES`). Target: the app lists and
    qt/variants.json (:data:`LISTS`), from one fragment per variant."""

    name = "qt"

    def parts(self, record: Record, settings: StoreSettings) -> list[str]:
        return [APP + record.id] if isinstance(record, AppVariant) else []

    def fixed_parts(self, settings: StoreSettings) -> list[str]:
        return [CATEGORIES]

    def fixed_targets(self, settings: StoreSettings) -> list[str]:
        return [LISTS]

    def render_part(self, part: str, records: list[Record], ctx: RenderContext) -> Part:
        if part == CATEGORIES:
            return Part(outputs=list(_category_outputs(ctx.settings, ctx.repo)))
        apps = unique_variants(records)
        category_ids = {c.name: c.id for c in ctx.settings.categories}
        return Part(
            outputs=list(_app_outputs(apps, ctx.repo)),
            fragments=[_variant_fragment(app, category_ids) for app in apps],
        )

    def assemble(self, target: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        # The fragments come in (id, architecture, tags_hash) order: their ``order`` keys.
        rows = [json.loads(f.data) for f in fragments]
        return Part(outputs=list(_list_outputs(rows, ctx.settings)))


def _category_outputs(settings: StoreSettings, repo: Path) -> Iterable[Output]:
    """The files of the settings alone: the category list and icons. The icons are read from
    repo/ now, at plan time."""
    categories = settings.categories
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


def _app_outputs(apps: list[AppVariant], repo: Path) -> Iterable[Output]:
    """Every variant's icon and description, and the static choice's (all of one app id)."""
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


def variants_entry(app: AppVariant) -> dict[str, Any]:
    """A variant in qt/variants.json (keyed by its purchaseId)."""
    return {
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


def _variant_fragment(app: AppVariant, category_ids: dict[str, int]) -> Fragment:
    """What the lists need of one variant: where it is listed, its pre-rendered list entry and
    its pre-rendered entry of qt/variants.json."""
    data = {
        "architecture": app.architecture,
        "category": app.category,
        "entry": _list_item(list_entry(app, category_ids)),
        "purchase_id": app.purchase_uuid,
        "variant": json_fragment(variants_entry(app)),
    }
    # "\0" sorts before every character of an id, architecture or tags hash: the keys sort as
    # the (id, architecture, tags_hash) tuples do.
    order = "\0".join((app.id, app.architecture, app.tags_hash))
    return Fragment(LISTS, order, json.dumps(data, sort_keys=True, ensure_ascii=False))


def _list_outputs(rows: list[dict[str, str]], settings: StoreSettings) -> Iterable[Output]:
    """The app lists of every architecture and category, and qt/variants.json, from the
    variants' fragments in list order."""
    categories = settings.categories
    archs = sorted({row["architecture"] for row in rows} - {ALL})
    for arch in [ALL, *archs]:
        visible = [row for row in rows if row["architecture"] in (ALL, arch)]
        groups: list[tuple[str, list[dict[str, str]], dict[str, str] | None]] = [("all", visible, None)]
        groups += [
            (str(c.id), [row for row in visible if row["category"] == c.name], {"category_id": str(c.id)})
            for c in categories
        ]
        for name, members, query in groups:
            body = _json_list([row["entry"] for row in members])
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
    # -- the runtime's index: per purchaseId the last variant in list order, as a dict would --
    variants = {row["purchase_id"]: row["variant"] for row in rows}
    index = _json_with_dict({"schema": 1, "architectures": archs}, "variants", sorted(variants.items()))
    yield _bytes_output("qt/variants.json", index, JSON, tier=INDEX)


def _list_item(value: Any) -> str:
    """``value`` as :func:`json_bytes` writes it as an item of a top-level list."""
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False).replace("\n", "\n ")


def _json_list(items: list[str]) -> bytes:
    """:func:`json_bytes` of the top-level list of those pre-rendered items (:func:`_list_item`)."""
    return ("[\n " + ",\n ".join(items) + "\n]\n" if items else "[]\n").encode()


def _json_with_dict(value: dict[str, Any], key: str, items: list[tuple[str, str]]) -> bytes:
    """:func:`json_bytes` of ``value`` with ``key`` holding the object of those (name,
    pre-rendered value (:func:`json_fragment`)) pairs, given sorted by name (``sort_keys``)."""
    mark = f"\0{key}\0"
    text = json.dumps({**value, key: mark}, sort_keys=True, indent=1, ensure_ascii=False)
    pairs = [json.dumps(name, ensure_ascii=False) + ": " + item for name, item in items]
    joined = "{\n  " + ",\n  ".join(pairs) + "\n }" if pairs else "{}"
    return (text.replace(json.dumps(mark, ensure_ascii=False), joined, 1) + "\n").encode()


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

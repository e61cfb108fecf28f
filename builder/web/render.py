"""The web catalog: pre-rendered HTML pages a browser reads straight from site/ or a CDN.

Every page links relatively, so the tree works from any host, sub-path or a folder opened in a
browser; style sheet, script and icons are named by their content, so they can be cached
forever. Navigation is the same fixed set of links on every page: a nav listing every device
would make every page depend on every device.

The catalog is rendered in parts (builder/render.py has the protocol), so a change re-renders
only what shows it:

- parts: one per Qt app id (its page ``apps/<slug>/index.html``), one per app icon (named by its
  SHA-256: apps that share an icon share the file, copied from the first package by path), one
  per visible declared OTA device (its page, with or without builds; builds of other codenames
  show nowhere), one per (module or firmware, platform, name), one per Android package (its
  page), and the static assets. Each part also pre-renders what the pages that list it show:
  an app's card, a module's section of its letter page, an Android app's card, and every
  part's entry of the search index.
- level 1 targets, joined from those fragments: each declared category's page, each letter
  page of a platform ``modules/<platform>/<key>.html`` (the modules and firmware whose name
  starts with that character, see :func:`letter_of`), the Android app list
  ``android-apps/index.html``, the newest apps for the home page, and the 64 shards of the
  search index ``search/<bb>.json``.
- level 2: each platform's page ``modules/<platform>/index.html`` (its description and links to
  the letter pages that have something: never a name or a count, so a letter page's fragment
  only says that it exists and what kinds it holds) and the search index's entry
  ``search.json`` (its shards with their SHA-256).
- level 3: the home page ``index.html`` (counts and links per section, from the targets below:
  never a list of every item). Level 4: ``search.html``, the search form, which links to the
  sections the home page has.

The pages that list the whole store hold counts and links, the search index is sharded by a
hash of the entry's name: nothing a build rewrites for one change grows with the store but the
letter page that shows the changed module, which holds the platform's names that share its
first character (up to 37 pages a platform: a small part of it when names spread over the
alphabet, but all of it if every name starts alike; a split by prefix would be the next step).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from markupsafe import Markup

from builder.model import (
    AndroidVersion,
    AppVariant,
    Firmware,
    Module,
    OtaBuild,
    OtaDevice,
    Record,
    StoreSettings,
)
from builder.publish import INDEX, LEAF, PAGE, Output
from builder.render import Fragment, Part, RenderContext, Renderer, fingerprint, site_relpath
from builder.tarsafe import read_member
from builder.versions import version_key
from builder.webpolicy import clean_html

HTML = "text/html; charset=utf-8"
CSS = "text/css; charset=utf-8"
JS = "text/javascript; charset=utf-8"
JSON = "application/json"
HOME_LIST_LENGTH = 12
SEARCH_SCHEMA = 2

# part kinds (the first item of a part's key)
APP, ICON, DEVICE, ANDROID, ASSETS = "app", "icon", "device", "android", "assets"
MODULE, FIRMWARE = "module", "firmware"
# targets
HOME = "index.html"
SEARCH_ENTRY = "search.json"
SEARCH_PAGE = "search.html"
ANDROID_LIST = "android-apps/index.html"
NEWEST = "newest"  # the home page's newest apps and the app count: no file of its own
CATEGORY, PLATFORM, LETTER, SHARD = "category:", "platform:", "letter:", "search:"

# A platform's modules and firmware are split over letter pages by the first character of their
# name, folded to lower case (names are [A-Za-z0-9_-]+): one page per digit, ``0.html`` to
# ``9.html``, one per letter, ``a.html`` to ``z.html``, and ``other.html`` for names starting
# with ``_`` or ``-`` (or anything else). The keys are the file names and sort in the order the
# platform's page lists them; none of them is ``index``. A letter page links back to the
# platform's page only, not to the other letters: a list of the letters on each would rewrite
# every letter page of the platform (up to the whole platform's bytes) when one appears or goes.
LETTER_KEYS = (*"0123456789abcdefghijklmnopqrstuvwxyz", "other")
OTHER = LETTER_KEYS[-1]


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


def app_page_path(app_id: str) -> str:
    return f"apps/{slug(app_id)}/index.html"


def category_page_path(category: str) -> str:
    return f"categories/{slug(category)}/index.html"


def device_page_path(codename: str) -> str:
    return f"devices/{slug(codename)}/index.html"


def platform_page_path(platform: str) -> str:
    """A platform's page: its description and links to its letter pages (the stable URL)."""
    return f"modules/{slug(platform)}/index.html"


def letter_of(name: str) -> str:
    """The letter page a module or firmware named ``name`` is on: see LETTER_KEYS."""
    first = name[:1]
    key = first.lower() if first.isascii() else ""
    return key if key and key in LETTER_KEYS[:-1] else OTHER


def letter_page_path(platform: str, key: str) -> str:
    """A platform's page of the modules and firmware whose name starts with ``key``."""
    return f"modules/{slug(platform)}/{key}.html"


def letter_label(key: str) -> str:
    """What a letter page's link and heading show."""
    return "_ and -" if key == OTHER else key.upper()


def letter_title(key: str) -> str:
    return "Names starting with _ or -" if key == OTHER else f"Names starting with {key.upper()}"


def android_page_path(package: str) -> str:
    return f"android-apps/{slug(package)}/index.html"


SEARCH_SHARDS = 64


def search_bucket(name: str) -> str:
    """The search shard of a name: two hex digits, 00 to 3f, from the SHA-256 of the name."""
    return f"{hashlib.sha256(name.encode()).digest()[0] % SEARCH_SHARDS:02x}"


def shard_path(bucket: str) -> str:
    """A shard of the search index: the entries whose name hashes to ``bucket`` (00 to 3f)."""
    return f"search/{bucket}.json"


@functools.lru_cache(maxsize=4)
def _assets(template_digest: str) -> tuple[tuple[str, bytes, str], ...]:
    """(site path, bytes, media type) of the style sheet and the script, named by their content
    (the template digest covers both files, so it keys the cache)."""
    folder = resources.files("builder.web").joinpath("templates")
    assets = []
    for name, media_type in (("style.css", CSS), ("search.js", JS)):
        data = folder.joinpath(name).read_bytes()
        stem, ext = name.rsplit(".", 1)
        assets.append((f"assets/{stem}.{hashlib.sha256(data).hexdigest()[:12]}.{ext}", data, media_type))
    return tuple(assets)


def newest_first(versions: list[Any]) -> list[Any]:
    """A module's or firmware's versions as its section lists them: newest first, then by file
    (the device index's order)."""
    return sorted(versions, key=lambda r: (version_key(r.version), r.blob.path), reverse=True)


def visible_devices(settings: StoreSettings) -> list[OtaDevice]:
    return [d for d in settings.ota_devices if d.visible]


def _key(*items: str) -> str:
    return json.dumps(list(items))


def _declared_order(names: list[str], name: str) -> str:
    """Declared names first, in their order, then the others by name (as catalog.platforms())."""
    return f"0{names.index(name):06d}" if name in names else "1" + name


def _search_fragment(name: str, kind: str, text: str, target: str, anchor: str = "") -> Fragment:
    """An entry of the search index, for the shard its name hashes to; sorted there by name
    (folded) and kind, and its URL relative to the shard."""
    bucket = search_bucket(name)
    entry = {
        "name": name,
        "kind": kind,
        "text": text,
        "url": relative_url(shard_path(bucket), target) + anchor,
    }
    data = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Fragment(SHARD + bucket, f"{name.lower()}\n{kind}", data)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class WebCatalog(Renderer):
    """The web catalog's parts and targets: see the module docstring."""

    name = "web"

    # -- parts ------------------------------------------------------------------------------

    def parts(self, record: Record, settings: StoreSettings) -> list[str]:
        if isinstance(record, AppVariant):
            keys = [_key(APP, record.id)]
            if record.icon_sha256:
                keys.append(_key(ICON, record.icon_sha256))
            return keys
        if isinstance(record, OtaBuild):
            shown = record.enabled and any(d.codename == record.codename for d in visible_devices(settings))
            return [_key(DEVICE, record.codename)] if shown else []
        if isinstance(record, Module):
            return [_key(MODULE, record.platform, record.name)]
        if isinstance(record, Firmware):
            return [_key(FIRMWARE, record.platform, record.name)]
        if isinstance(record, AndroidVersion):
            return [_key(ANDROID, record.package)]
        return []

    def fixed_parts(self, settings: StoreSettings) -> list[str]:
        return [_key(ASSETS), *(_key(DEVICE, d.codename) for d in visible_devices(settings))]

    def render_part(self, part: str, records: list[Record], ctx: RenderContext) -> Part:
        kind, *rest = json.loads(part)
        if kind == APP:
            return self._app(rest[0], [r for r in records if isinstance(r, AppVariant)], ctx)
        if kind == ICON:
            return self._icon(rest[0], [r for r in records if isinstance(r, AppVariant)], ctx)
        if kind == DEVICE:
            return self._device(rest[0], [r for r in records if isinstance(r, OtaBuild)], ctx)
        if kind in (MODULE, FIRMWARE):
            return self._package(
                kind, rest[0], rest[1], [r for r in records if isinstance(r, Module | Firmware)], ctx
            )
        if kind == ANDROID:
            return self._android(rest[0], [r for r in records if isinstance(r, AndroidVersion)], ctx)
        if kind == ASSETS:
            return Part(outputs=[self._asset(*asset) for asset in _assets(ctx.template_digest)])
        raise ValueError(f"web: unknown part {part}")

    def _asset(self, path: str, data: bytes, media_type: str) -> Output:
        return Output(
            path=path,
            fingerprint=fingerprint("asset", _sha(data)),
            media_type=media_type,
            tier=LEAF,
            render=functools.partial(bytes, data),
        )

    def _app(self, app_id: str, variants: list[AppVariant], ctx: RenderContext) -> Part:
        # sorted copies: the planner's lists stay as it gave them
        variants = sorted(
            variants, key=lambda a: (a.architecture != "All", a.architecture, version_key(a.version))
        )
        app = variants[-1]
        path = app_page_path(app_id)
        page = self._page(ctx, path, "app.html", variants, {"app": app, "variants": variants})
        fragments = [_search_fragment(app.name, "App", app.brief_description, path)]
        category = variants[0].category
        if any(c.name == category for c in ctx.settings.categories):
            card = self._macros(ctx, category_page_path(category)).app_card(app)
            fragments.append(Fragment(CATEGORY + category, app_id, str(card)))
        # The home page's newest and updated first: by the sidecar's upload date (apps without
        # one last), then name; the order key sorts the fragments that way.
        newest = 99999999 - _date_number(max(v.updated for v in variants))
        order = f"{newest:08d}\n{app.name.lower()}\n{app.id}"
        fragments.append(Fragment(NEWEST, order, str(self._macros(ctx, HOME).app_card(app))))
        return Part(outputs=[page], fragments=fragments)

    def _icon(self, sha: str, apps: list[AppVariant], ctx: RenderContext) -> Part:
        """Each distinct app icon once, named by its content so it can be cached forever."""
        app = apps[0]
        return Part(
            outputs=[
                Output(
                    path=icon_path(app),
                    fingerprint=fingerprint("web-icon", sha, app.blob.sha256),
                    media_type="image/png",
                    tier=LEAF,
                    render=functools.partial(_icon_of, ctx.repo / app.blob.path),
                )
            ]
        )

    def _device(self, codename: str, builds: list[OtaBuild], ctx: RenderContext) -> Part:
        device = next(d for d in visible_devices(ctx.settings) if d.codename == codename)
        variants: dict[str, list[OtaBuild]] = {}
        for build in builds:
            variants.setdefault(build.variant, []).append(build)
        for group in variants.values():
            group.sort(key=lambda b: (b.date, version_key(b.version), b.blob.path), reverse=True)
        path = device_page_path(codename)
        names = {v.codename: v.description for v in ctx.settings.ota_variants}
        page = self._page(
            ctx, path, "device.html", builds, {"device": device, "variants": variants, "variant_names": names}
        )
        name = f"{device.manufacturer} {device.name}".strip()
        return Part(
            outputs=[page],
            fragments=[
                _search_fragment(name, "OTA device", device.codename, path),
                Fragment(
                    HOME, "device\n" + codename, json.dumps({"device": codename, "builds": len(builds)})
                ),
            ],
        )

    def _package(
        self, kind: str, platform: str, name: str, versions: list[Module | Firmware], ctx: RenderContext
    ) -> Part:
        versions = newest_first(versions)
        key = letter_of(name)
        path = letter_page_path(platform, key)
        section = self._macros(ctx, path).package_section(kind, name, versions)
        label = f"{'Module' if kind == MODULE else 'Firmware'} ({platform})"
        return Part(
            fragments=[
                Fragment(f"{LETTER}{platform}/{key}", f"{kind}\n{name}", str(section)),
                _search_fragment(name, label, versions[0].description, path, f"#{kind}-{slug(name)}"),
            ]
        )

    def _android(self, package: str, versions: list[AndroidVersion], ctx: RenderContext) -> Part:
        versions = sorted(versions, key=lambda v: v.version_code, reverse=True)
        path = android_page_path(package)
        page = self._page(ctx, path, "android.html", versions, {"package": package, "versions": versions})
        card = self._macros(ctx, ANDROID_LIST).android_card(package, versions)
        return Part(
            outputs=[page],
            fragments=[
                Fragment(ANDROID_LIST, package, str(card)),
                _search_fragment(package, "Android app", versions[0].version_name, path),
            ],
        )

    # -- targets ----------------------------------------------------------------------------

    def fixed_targets(self, settings: StoreSettings) -> list[str]:
        return [
            HOME,
            SEARCH_ENTRY,
            SEARCH_PAGE,
            ANDROID_LIST,
            NEWEST,
            *(CATEGORY + c.name for c in settings.categories),
            *(PLATFORM + p.name for p in settings.platforms),
        ]

    def level(self, target: str) -> int:
        if target == SEARCH_PAGE:
            return 4
        if target == HOME:
            return 3
        return 2 if target == SEARCH_ENTRY or target.startswith(PLATFORM) else 1

    def assemble(self, target: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        if target.startswith(SHARD):
            return self._shard(target.removeprefix(SHARD), fragments)
        if target.startswith(CATEGORY):
            return self._category(target.removeprefix(CATEGORY), fragments, ctx)
        if target.startswith(LETTER):
            platform, _, key = target.removeprefix(LETTER).rpartition("/")
            return self._letter(platform, key, fragments, ctx)
        if target.startswith(PLATFORM):
            return self._platform(target.removeprefix(PLATFORM), fragments, ctx)
        if target == NEWEST:
            cards = [f.data for f in fragments[:HOME_LIST_LENGTH]]
            data = json.dumps({"count": len(fragments), "cards": cards}, ensure_ascii=False)
            return Part(fragments=[Fragment(HOME, NEWEST, data)])
        if target == ANDROID_LIST:
            body = self._render(ctx, ANDROID_LIST, "android-apps.html", {"cards": _joined(fragments)})
            count = json.dumps({"count": len(fragments)})
            return Part(
                outputs=[_assembled(ANDROID_LIST, body)], fragments=[Fragment(HOME, "android", count)]
            )
        if target == SEARCH_ENTRY:
            return self._search_entry(fragments)
        if target == HOME:
            return self._home(fragments, ctx)
        if target == SEARCH_PAGE:
            sections = [tuple(s) for f in fragments for s in json.loads(f.data)]
            body = self._render(ctx, SEARCH_PAGE, "search.html", {"sections": sections})
            return Part(outputs=[_assembled(SEARCH_PAGE, body)])
        raise ValueError(f"web: unknown target {target}")

    def _category(self, name: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        category = next(c for c in ctx.settings.categories if c.name == name)
        path = category_page_path(name)
        body = self._render(ctx, path, "category.html", {"category": category, "cards": _joined(fragments)})
        count = json.dumps({"category": name, "count": len(fragments)}, ensure_ascii=False)
        return Part(outputs=[_assembled(path, body)], fragments=[Fragment(HOME, "category\n" + name, count)])

    def _letter(self, platform: str, key: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        """A letter page: the sections of the platform's modules, then its firmware, whose
        names start with ``key``, each sorted by name (the fragments come in that order)."""
        sections: dict[str, list[Fragment]] = {MODULE: [], FIRMWARE: []}
        for f in fragments:
            sections[f.order.split("\n", 1)[0]].append(f)
        path = letter_page_path(platform, key)
        context = {
            "platform": platform,
            "index_path": platform_page_path(platform),
            "label": letter_label(key),
            "title": letter_title(key),
            "modules": _joined(sections[MODULE], ""),
            "firmware": _joined(sections[FIRMWARE], ""),
        }
        body = self._render(ctx, path, "platform-letter.html", context)
        # Only that the page exists and whether it has modules, firmware (for the home page's
        # card): the platform's page is assembled again when a letter appears, goes, or gets
        # its first module or firmware, and rewritten only when a letter appears or goes.
        row = {"key": key, "modules": bool(sections[MODULE]), "firmware": bool(sections[FIRMWARE])}
        order = f"{LETTER_KEYS.index(key):02d}"
        return Part(
            outputs=[_assembled(path, body)],
            fragments=[Fragment(PLATFORM + platform, order, json.dumps(row, sort_keys=True))],
        )

    def _platform(self, platform: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        """A platform's page: its description and its letter pages, in LETTER_KEYS order."""
        rows = [json.loads(f.data) for f in fragments]
        path = platform_page_path(platform)
        descriptions = {p.name: p.description for p in ctx.settings.platforms}
        context = {
            "platform": platform,
            "description": descriptions.get(platform, ""),
            "letters": [
                (letter_page_path(platform, r["key"]), letter_label(r["key"]), letter_title(r["key"]))
                for r in rows
            ],
        }
        body = self._render(ctx, path, "platform.html", context)
        declared = [p.name for p in ctx.settings.platforms]
        # Whether the platform has modules, firmware: not how many, so that a new module
        # rewrites its letter page and not the home page too.
        row = {
            "platform": platform,
            "modules": any(r["modules"] for r in rows),
            "firmware": any(r["firmware"] for r in rows),
        }
        order = "platform\n" + _declared_order(declared, platform)
        return Part(
            outputs=[_assembled(path, body)],
            fragments=[Fragment(HOME, order, json.dumps(row, ensure_ascii=False))],
        )

    def _shard(self, bucket: str, fragments: list[Fragment]) -> Part:
        # The fragments come sorted by their order key (name folded, kind): the index's order.
        body = ("[" + ",".join(f.data for f in fragments) + "]\n").encode()
        sha = _sha(body)
        path = shard_path(bucket)
        row = json.dumps({"bucket": bucket, "entries": len(fragments), "sha256": sha})
        return Part(
            outputs=[
                Output(
                    path=path,
                    fingerprint=fingerprint("web-search-shard", sha),
                    media_type=JSON,
                    tier=PAGE,
                    render=lambda: body,
                )
            ],
            fragments=[Fragment(SEARCH_ENTRY, bucket, row)],
        )

    def _search_entry(self, fragments: list[Fragment]) -> Part:
        """search.json: every shard with its entry count and SHA-256; the URL (relative to
        search.json) carries the start of the SHA-256, so a cache never mixes an entry with an
        older shard."""
        shards = []
        for f in fragments:
            row = json.loads(f.data)
            url = f"{shard_path(row['bucket'])}?v={row['sha256'][:16]}"
            shards.append({"url": url, "entries": row["entries"], "sha256": row["sha256"]})
        value = {"schema": SEARCH_SCHEMA, "shards": shards}
        body = (json.dumps(value, sort_keys=True, separators=(",", ":")) + "\n").encode()
        output = Output(
            path=SEARCH_ENTRY,
            fingerprint=fingerprint("web-search", _sha(body)),
            media_type=JSON,
            tier=INDEX,
            render=lambda: body,
        )
        return Part(outputs=[output])

    def _home(self, fragments: list[Fragment], ctx: RenderContext) -> Part:
        settings = ctx.settings
        counts: dict[str, int] = {}
        builds: dict[str, int] = {}
        platforms: list[tuple[str, str, int, int]] = []
        descriptions = {p.name: p.description for p in settings.platforms}
        newest: dict[str, Any] = {"count": 0, "cards": []}
        android = 0
        for f in fragments:
            row = json.loads(f.data)
            if f.order == NEWEST:
                newest = row
            elif f.order == "android":
                android = row["count"]
            elif f.order.startswith("category\n"):
                counts[row["category"]] = row["count"]
            elif f.order.startswith("device\n"):
                builds[row["device"]] = row["builds"]
            elif f.order.startswith("platform\n"):
                name = row["platform"]
                platforms.append((name, descriptions.get(name, ""), row["modules"], row["firmware"]))
        categories = [(c, counts.get(c.name, 0)) for c in settings.categories]
        devices = [(d, builds.get(d.codename, 0)) for d in visible_devices(settings)]
        items = newest["count"] + sum(builds.values()) + sum(p[2] + p[3] for p in platforms) + android
        context = {
            "empty": not items,
            "categories": categories,
            "apps": Markup("".join(card + "\n" for card in newest["cards"])),
            "shown_apps": len(newest["cards"]),
            "app_count": newest["count"],
            "devices": devices,
            "platforms": platforms,
            "android_count": android,
        }
        body = self._render(ctx, HOME, "home.html", context)
        # What search.html links to without script: the sections this page has.
        sections = [["Home", HOME]]
        if categories:
            sections.append(["Categories", HOME + "#h-categories"])
        if newest["cards"]:
            sections.append(["Newest apps", HOME + "#h-apps"])
        if devices:
            sections.append(["OTA devices", HOME + "#h-devices"])
        if platforms:
            sections.append(["Device modules and firmware", HOME + "#h-modules"])
        if android:
            sections.append(["Android apps", ANDROID_LIST])
        return Part(
            outputs=[_assembled(HOME, body, tier=INDEX)],
            fragments=[Fragment(SEARCH_PAGE, "sections", json.dumps(sections))],
        )

    # -- rendering --------------------------------------------------------------------------

    def _helpers(self, ctx: RenderContext, path: str) -> dict[str, Any]:
        """What every template and macro may call, for a file at ``path``."""

        def link(target: str) -> str:
            return relative_url(path, target)

        assets = _assets(ctx.template_digest)
        return {
            "settings": ctx.settings,
            "page_path": path,
            "link": link,
            "stylesheet": link(assets[0][0]),
            "script": link(assets[1][0]),
            "download": lambda item: link(item.blob.site_path),
            # shipper's counted download URL: no ".zip", a trailing slash (relpath drops it)
            "ota_download": lambda b: (
                link(f"download_check/{b.codename}/{b.blob.filename.removesuffix('.zip')}") + "/"
            ),
            "app_page": lambda app_id: link(app_page_path(app_id)),
            "android_page": lambda package: link(android_page_path(package)),
            "icon": lambda app: link(icon_path(app)) if app.icon_sha256 else "",
            "human_size": human_size,
            "slug": slug,
            "clean_html": clean_html,
        }

    def _macros(self, ctx: RenderContext, path: str) -> Any:
        """macros.html's macros, linking from the file at ``path``."""
        return ctx.templates.get_template("macros.html").make_module(vars=self._helpers(ctx, path))

    def _render(self, ctx: RenderContext, path: str, template: str, context: dict[str, Any]) -> bytes:
        return ctx.templates.get_template(template).render(**self._helpers(ctx, path), **context).encode()

    def _page(
        self, ctx: RenderContext, path: str, template: str, records: list[Any], context: dict[str, Any]
    ) -> Output:
        """A page of one part: rendered only when its fingerprint (the records it shows, the
        templates, the settings and the asset names) changed."""
        return Output(
            path=path,
            fingerprint=fingerprint(
                "web",
                path,
                template,
                ctx.template_digest,
                ctx.settings.digest,
                *(a[0] for a in _assets(ctx.template_digest)),
                *sorted(r.digest for r in records),
            ),
            media_type=HTML,
            tier=PAGE,
            render=lambda: self._render(ctx, path, template, context),
        )


def _joined(fragments: list[Fragment], end: str = "\n") -> Markup:
    """Pre-rendered (escaped) HTML fragments joined, each followed by ``end``."""
    return Markup("".join(f.data + end for f in fragments))


def _assembled(path: str, body: bytes, tier: int = PAGE) -> Output:
    """A page an assembly rendered: its fingerprint is its bytes'."""
    return Output(
        path=path,
        fingerprint=fingerprint("web-page", path, _sha(body)),
        media_type=HTML,
        tier=tier,
        render=lambda: body,
    )

"""The shipper dialect's static part: updater feeds, device list, latest builds, system info.

Every URL ends in ``/`` as shipper's do; each maps to an ``index.json`` through ``Output.url``.
Only enabled builds appear (every build the reader accepted has a verified SHA-256), newest
file-name date first. The error answers that can be known at build time (a declared device and
variant without builds, an x86 device on the arm route) are static files too, with their status
in the route table; the runtime answers the rest (unknown device, unknown variant) from
depot.toml, with the same bodies.

The feed carries shipper's fields exactly (``datetime`` = midnight UTC of the file-name date,
``id`` = SHA-256) plus ``romtype`` on every entry (:func:`romtype_of`), so that stock LineageOS
updaters, which require it, accept the entries too. Download URLs are absolute, as shipper's
are: the OTA reader publishes no build until ``[store] base_url`` is set.

Planned by parts (builder/render.py): one part per declared device makes its feeds, latest
builds and error bodies from its builds; the system info is a part of the settings alone; the
device list is a target, from each device's fragment naming the variants it has builds of.
"""

from __future__ import annotations

import calendar
import datetime as dt
import html
import json
import re
from collections.abc import Iterable
from typing import Any

from builder.model import OtaBuild, OtaDevice, Record, StoreSettings
from builder.publish import INDEX, PAGE, Output
from builder.render import Fragment, Part, RenderContext, Renderer, fingerprint, json_bytes
from builder.shipper.ota import DEFAULT_ROMTYPE, X86_CODENAMES
from builder.versions import version_key

JSON = "application/json"
# The shipper API level Depot implements, and the oldest shippy it accepts (as shipper 2.43.0).
SHIPPER_VERSION = "2.43.0"
SHIPPY_COMPAT_VERSION = "2.27.0"
SLUG = re.compile(r"^[A-Za-z0-9_-]+$")

MSG_ARM_ONLY = "This endpoint is for arm devices only."
MSG_X86_ONLY = "This endpoint is for x86_64 devices only."
MSG_NO_DEVICE = "The specified device does not exist!"
MSG_BAD_PARAMETER = "Wrong parameter. Try with the correct parameters."
MSG_NO_BUILDS = "No builds exist for the specified variant yet!"


def feed_url(codename: str, variant: str, x86_type: str | None = None) -> str:
    middle = f"{x86_type}/" if x86_type is not None else ""
    return f"/api/v1/updater/los/{codename}/{middle}{variant}/"


def latest_url(codename: str, variant: str) -> str:
    return f"/api/v1/general/build/latest/{codename}/{variant}/"


DEVICES_URL = "/api/v1/general/device/all/"
SYSTEM_INFO_URL = "/api/v2/system/info/"


def download_url(base: str, codename: str, stem: str) -> str:
    """shipper's main download URL: no ``.zip``, trailing slash; counted by the runtime."""
    return f"{base}/download_check/{codename}/{stem}/"


def magic_download_url(base: str, codename: str, stem: str) -> str:
    return f"{base}/api/v1/general/build/magic_download/{codename}/{stem}/"


def stem_of(build: OtaBuild) -> str:
    return build.blob.filename.removesuffix(".zip")


def timestamp(date: str) -> int:
    """Midnight UTC of a ``YYYY-MM-DD`` date, in seconds (shipper's ``datetime``)."""
    return calendar.timegm(dt.date.fromisoformat(date).timetuple())


def newest_first(builds: Iterable[OtaBuild]) -> list[OtaBuild]:
    return sorted(builds, key=lambda b: (b.date, version_key(b.version), b.blob.filename), reverse=True)


def feed_entry(build: OtaBuild, device: OtaDevice, base: str, settings: StoreSettings) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "datetime": timestamp(build.date),
        "filename": build.blob.filename,
        "id": build.blob.sha256,
        "size": build.blob.size,
        "version": build.version,
        "variant": html.escape(build.variant),
        "url": download_url(base, build.codename, stem_of(build)),
    }
    if build.x86_type:
        entry["x86_type"] = build.x86_type
    entry["romtype"] = romtype_of(build, device, settings)
    return entry


def romtype_of(build: OtaBuild, device: OtaDevice, settings: StoreSettings) -> str:
    """What stock LineageOS updaters (and BlissUpdater's universe branch, whose parser is
    theirs) compare, case-insensitively, with the device's release type; an entry without it is
    dropped. The device's setting, else the store's ``[ota] romtype``, else a ``romtype`` group
    of the file-name pattern, else shipper's default naming, OFFICIAL."""
    from_name = dict(build.extra).get("romtype", "")
    return device.romtype or settings.ota_romtype or from_name or DEFAULT_ROMTYPE


def latest_entry(build: OtaBuild, base: str) -> dict[str, Any]:
    return {
        "datetime": timestamp(build.date),
        "filename": build.blob.filename,
        "sha256": build.blob.sha256,
        "size": build.blob.size,
        "version": build.version,
        "variant": html.escape(build.variant),
        "mirror_url": magic_download_url(base, build.codename, stem_of(build)),
        "metadata": dict(build.extra),
    }


def system_info(settings: StoreSettings) -> dict[str, Any]:
    return {
        "version": SHIPPER_VERSION,
        "shippy_compat_version": SHIPPY_COMPAT_VERSION,
        "shippy_upload_checksum_type": "sha256",
        "shippy_allowed_versions": "\n".join(settings.ota_allowed_versions),
        "shippy_upload_variants": {v.codename: v.description for v in settings.ota_variants},
    }


def _path(url: str) -> str:
    return url.strip("/") + "/index.json"


def _json_output(url: str, body: Any, fp: str, tier: int = PAGE, status: int | None = None) -> Output:
    return Output(
        path=_path(url),
        fingerprint=fp,
        media_type=JSON,
        tier=tier,
        render=lambda: json_bytes(body),
        url=url,
        status=status,
    )


def _message(url: str, status: int, message: str) -> Output:
    return _json_output(
        url, {"message": message}, fingerprint("shipper-error", url, str(status), message), status=status
    )


# Part and target names (builder/render.py).
DEVICE = "device:"
SYSTEM_INFO = "system-info"
DEVICES = "devices"


class ShipperFeeds(Renderer):
    """Parts: one per declared device (its feeds, latest builds and static error bodies, from
    its builds) and the system info (settings only). Target: the device list, from one fragment
    per declared device naming the variants it has builds of."""

    name = "shipper"

    def __init__(self) -> None:
        self._declared: tuple[StoreSettings, dict[str, OtaDevice]] | None = None

    def declared(self, settings: StoreSettings) -> dict[str, OtaDevice]:
        """codename → declared device (kept for the settings object asked last)."""
        if self._declared is None or self._declared[0] is not settings:
            self._declared = (settings, {d.codename: d for d in settings.ota_devices})
        return self._declared[1]

    def parts(self, record: Record, settings: StoreSettings) -> list[str]:
        # Every build of a declared device, also disabled ones: enabling one changes its part.
        if isinstance(record, OtaBuild) and record.codename in self.declared(settings):
            return [DEVICE + record.codename]
        return []

    def fixed_parts(self, settings: StoreSettings) -> list[str]:
        # Also the devices whose codename is no SLUG: they have no feeds, but the device list
        # names the variants they have builds of, as shipper's.
        return [SYSTEM_INFO, *(DEVICE + d.codename for d in settings.ota_devices)]

    def fixed_targets(self, settings: StoreSettings) -> list[str]:
        return [DEVICES]

    def render_part(self, part: str, records: list[Record], ctx: RenderContext) -> Part:
        settings = ctx.settings
        if part == SYSTEM_INFO:
            info = system_info(settings)
            fp = fingerprint("shipper-info", json_bytes(info).decode())
            return Part(outputs=[_json_output(SYSTEM_INFO_URL, info, fp, tier=INDEX)])
        codename = part.removeprefix(DEVICE)
        device = self.declared(settings).get(codename)
        if device is None:  # not a part of these settings
            return Part()
        variants = _variants(settings)
        grouped: dict[str, list[OtaBuild]] = {}
        for b in records:
            if isinstance(b, OtaBuild) and b.enabled:
                grouped.setdefault(b.variant, []).append(b)
        grouped = {k: newest_first(v) for k, v in grouped.items()}
        outputs = list(_device_outputs(device, grouped, settings)) if SLUG.match(codename) else []
        with_builds = [v for v in variants if grouped.get(v)]
        return Part(outputs=outputs, fragments=[Fragment(DEVICES, codename, json.dumps(with_builds))])

    def assemble(self, target: str, fragments: list[Fragment], ctx: RenderContext) -> Part:
        with_builds = {f.order: json.loads(f.data) for f in fragments}
        # Every declared device, also invisible ones and those without builds (as shipper).
        all_devices = {
            d.codename: {"status": d.maintained, "variants": with_builds.get(d.codename, []), "note": d.note}
            for d in ctx.settings.ota_devices
        }
        fp = fingerprint("shipper-devices", json_bytes(all_devices).decode())
        return Part(outputs=[_json_output(DEVICES_URL, all_devices, fp, tier=INDEX)])


def _variants(settings: StoreSettings) -> list[str]:
    return [v.codename for v in settings.ota_variants if SLUG.match(v.codename)]


def _device_outputs(
    device: OtaDevice, grouped: dict[str, list[OtaBuild]], settings: StoreSettings
) -> Iterable[Output]:
    """The feeds and latest builds of one device, from its enabled builds by variant (newest
    first), or their static error bodies."""
    base = settings.ota_feed_base_url  # [ota] base_url, else [store] base_url
    x86_types = [t.codename for t in settings.ota_x86_types if SLUG.match(t.codename)]
    c = device.codename
    is_x86 = c in X86_CODENAMES
    for variant in _variants(settings):
        builds = grouped.get(variant, [])
        # the arm feed
        url = feed_url(c, variant)
        if is_x86:
            yield _message(url, 400, MSG_ARM_ONLY)
        elif builds:
            body = {"response": [feed_entry(b, device, base, settings) for b in builds]}
            romtypes = (device.romtype, settings.ota_romtype)
            fp = fingerprint("shipper-feed", url, base, *romtypes, *(b.digest for b in builds))
            yield _json_output(url, body, fp)
        else:
            yield _message(url, 404, MSG_NO_BUILDS)
        # the x86 feeds
        if is_x86:
            for x86_type in x86_types:
                typed = [b for b in builds if b.x86_type == x86_type]
                url = feed_url(c, variant, x86_type)
                if typed:
                    body = {"response": [feed_entry(b, device, base, settings) for b in typed]}
                    fp = fingerprint(
                        "shipper-feed",
                        url,
                        base,
                        device.romtype,
                        settings.ota_romtype,
                        *(b.digest for b in typed),
                    )
                    yield _json_output(url, body, fp)
                else:
                    yield _message(url, 404, MSG_NO_BUILDS)
        # the latest build
        url = latest_url(c, variant)
        if builds:
            fp = fingerprint("shipper-latest", url, base, builds[0].digest)
            yield _json_output(url, latest_entry(builds[0], base), fp)
        else:
            yield _message(url, 404, MSG_NO_BUILDS)

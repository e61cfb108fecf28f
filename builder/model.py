"""The one catalog model every dialect renders from.

Readers (``builder.formats``) turn files in repo/ into these records; renderers
(``builder.render``) turn a :class:`Catalog` into static files. Records are frozen
dataclasses of plain values so that they can be cached as JSON between builds and compared
cheaply: a record's :attr:`digest` changes exactly when something a renderer could show changes.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from builder.versions import version_key


@functools.cache
def builder_code_digest() -> str:
    """A digest of the builder's Python source: part of every cache key and fingerprint."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def canonical_json(value: Any) -> bytes:
    """Serialise deterministically: sorted keys, no spaces, UTF-8, trailing newline."""
    return (json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class Record:
    """Base of every catalog record: JSON round trip and a content digest."""

    kind: ClassVar[str] = "record"
    # Whether the package file is published in site/ for anyone to fetch. Qt packages are not:
    # they are sold through signed, expiring purchase URLs; OTA builds go through counted
    # download URLs. Both are served by the runtime straight from repo/.
    public_download: ClassVar[bool] = True

    def to_dict(self) -> dict[str, Any]:
        # What dataclasses.asdict gives, without its deep copy of every value (a build of ten
        # thousand packages calls this ten thousand times).
        fields = {name: _plain(getattr(self, name)) for name in _field_names(type(self))}
        return {"kind": self.kind, **fields}

    @functools.cached_property
    def digest(self) -> str:
        # Computed once per record (several renderers ask); the scan cache stores it too, see
        # record_from_dict. cached_property writes the instance __dict__, so frozen is fine.
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    # A dict, not functools.cache: mypy cannot see that a frozen dataclass's class is hashable.
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _plain(value: Any) -> Any:
    """``value`` as dataclasses.asdict would give it: nested dataclasses become dicts."""
    if value is None or isinstance(value, str | int | float):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, tuple | list):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


@dataclass(frozen=True)
class Blob:
    """A file that devices download: where it sits in repo/, its size and SHA-256."""

    path: str  # relative to repo/, POSIX separators
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def site_path(self) -> str:
        """Where the builder publishes the bytes: named by content, so cacheable forever."""
        return f"files/{self.sha256[:2]}/{self.sha256[2:16]}/{self.filename}"


# -- device app store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """Who is offered one module or firmware version (the sidecar's rollout keys): the device
    decides from its own id, so the same rule reaches every device through the static index."""

    share: float = 1.0
    groups: tuple[str, ...] = ()
    paused: bool = False
    paused_reason: str = ""
    max_failure_rate: float | None = None
    min_devices: int = 10

    @property
    def staged(self) -> bool:
        """Anything but "every device, now": the index states the rule only then."""
        return self.share < 1.0 or bool(self.groups) or self.paused

    @classmethod
    def from_sidecar(cls, values: dict[str, Any]) -> Rollout:
        return cls(
            share=float(values.get("rollout", 1.0)),
            groups=tuple(values.get("groups", ())),
            paused=bool(values.get("paused", False)),
            paused_reason=str(values.get("paused_reason", "")),
            max_failure_rate=values.get("max_failure_rate"),
            min_devices=int(values.get("min_devices", 10)),
        )


@dataclass(frozen=True)
class Module(Record):
    """One version of a device module (``<name>.<version>.<platform>.tar.gz``)."""

    kind: ClassVar[str] = "module"
    name: str
    version: str
    platform: str
    blob: Blob
    description: str = ""
    optional: bool = False
    unpacked_size: int = 0
    file_count: int = 0
    rollout: Rollout = field(default_factory=Rollout)


@dataclass(frozen=True)
class Firmware(Record):
    """One firmware image for a device platform (``<name>.<version>.<platform>.bin``)."""

    kind: ClassVar[str] = "firmware"
    name: str
    version: str
    platform: str
    blob: Blob
    description: str = ""
    rollout: Rollout = field(default_factory=Rollout)


# -- Qt deployment server ----------------------------------------------------------------------


@dataclass(frozen=True)
class AppVariant(Record):
    """One Qt Application Manager package: an app for one architecture and tag set."""

    kind: ClassVar[str] = "qt-app"
    public_download: ClassVar[bool] = False
    id: str
    name: str
    version: str
    architecture: str  # "All" for QML-only packages
    blob: Blob
    category: str = ""
    vendor: str = ""
    brief_description: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    conflict_tags: tuple[str, ...] = ()
    updated: str = ""  # YYYY-MM-DD of the last upload, from the sidecar; orders "newest" lists
    icon_sha256: str = ""
    purchase_uuid: str = ""  # the Qt dialect's purchaseId, kept in the sidecar so it survives rebuilds
    pkgformat: int = 1  # the package header's formatVersion
    tags_hash: str = ""  # str(tags) + str(conflicts): with id and architecture, the variant's key
    package_digest: str = ""  # the footer digest (hex), what a store signature signs


# -- shipper (OTA builds) ------------------------------------------------------------------------


@dataclass(frozen=True)
class OtaBuild(Record):
    """One OTA zip under ``repo/builds/<codename>/``."""

    kind: ClassVar[str] = "ota-build"
    public_download: ClassVar[bool] = False
    codename: str
    variant: str
    version: str
    date: str  # YYYY-MM-DD, from the file name
    blob: Blob
    build_id: int = 0
    enabled: bool = True
    extra: tuple[tuple[str, str], ...] = ()  # the file-name pattern's other named groups
    x86_type: str = ""  # only for x86/x86_64 devices


# -- CI portal (Android) -----------------------------------------------------------------------


@dataclass(frozen=True)
class AndroidVersion(Record):
    """A live APK version published by the CI portal into ``repo/android/``."""

    kind: ClassVar[str] = "android-version"
    package: str
    version_code: int
    version_name: str
    blob: Blob
    min_sdk: int = 1
    countries: tuple[str, ...] = ()
    vehicle_contexts: tuple[str, ...] = ()
    target_sdk: int = 0  # 0: not declared
    abis: tuple[str, ...] = ()  # from lib/<abi>/ entries; () means any ABI
    permissions: tuple[str, ...] = ()
    signer_sha256: str = ""  # SHA-256 of the verified signing certificate
    released: str = ""  # when the store team released it (from the sidecar)


RECORD_TYPES: dict[str, type[Record]] = {
    cls.kind: cls for cls in (Module, Firmware, AppVariant, OtaBuild, AndroidVersion)
}


def record_from_dict(data: dict[str, Any], digest: str | None = None) -> Record:
    """Inverse of :meth:`Record.to_dict`, used by the scan cache. ``digest``, when the cache
    kept it, is the record's :attr:`~Record.digest`, so it need not be computed again."""
    cls = RECORD_TYPES[data["kind"]]
    kwargs: dict[str, Any] = {}
    for name in _field_names(cls):
        value = data[name]
        if name == "blob":
            value = Blob(**value)
        elif name == "rollout":
            value = Rollout(**{**value, "groups": tuple(value["groups"])})
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    record = cls(**kwargs)
    if digest is not None:
        record.__dict__["digest"] = digest  # primes the cached_property
    return record


def record_schema() -> str:
    """A digest of every record type's fields: the scan cache is void when it changes."""
    shape = [[kind, *_field_names(cls)] for kind, cls in sorted(RECORD_TYPES.items())]
    return hashlib.sha256(canonical_json(shape)).hexdigest()[:16]


# -- store settings and the whole catalog -------------------------------------------------------


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    icon: str = ""  # path relative to repo/, optional


@dataclass(frozen=True)
class Vendor:
    id: str
    name: str


@dataclass(frozen=True)
class OtaDevice:
    codename: str
    name: str
    manufacturer: str = ""
    maintained: bool = True
    note: str = ""
    visible: bool = True
    romtype: str = ""


@dataclass(frozen=True)
class OtaVariant:
    codename: str
    description: str


@dataclass(frozen=True)
class DevicePlatform:
    name: str
    description: str = ""


# shipper's default SHIPPER_FILE_NAME_FORMAT (2.43.0), applied with re.search, for names like
# Bliss-v14-bullhead-OFFICIAL-gapps-20200608.zip (the unescaped "." before zip is shipper's).
DEFAULT_OTA_PATTERN = (
    r"[A-Za-z]+-(?P<version>[a-z0-9.]+)-(?P<codename>[A-Za-z0-9_]+)-OFFICIAL-(?P<variant>[a-z]+)"
    r"-(?P<date>[0-9]{8}).zip"
)


@dataclass(frozen=True)
class PortalSettings:
    """``[portal]`` of depot.toml: the CI portal's validation policy (runtime only)."""

    max_apk_bytes: int = 200 * 1024 * 1024
    warn_apk_bytes: int | None = None
    forbidden_permissions: tuple[str, ...] = ()
    review_permissions: tuple[str, ...] = ()
    upload_limit_bytes: int = 2 * 1024**3
    release_countries: tuple[str, ...] = ()  # the release form's choices (the console)
    release_vehicle_contexts: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrustSettings:
    """``[trust]`` of depot.toml: how long the signed TUF metadata lives (builder.trust)."""

    targets_days: int = 365
    snapshot_days: int = 365
    timestamp_hours: int = 24


@dataclass(frozen=True)
class StoreSettings:
    """``repo/depot.toml``: everything about the store that no package file carries.

    One typed field per key; :mod:`builder.settings` declares the keys (type, default, help) and
    is the only place that reads the file. The defaults here are the schema's defaults, so
    ``StoreSettings()`` is the store of a missing depot.toml. Frozen and made of tuples, so it is
    hashable and picklable (it goes to scan worker processes and into cache keys)."""

    # [store]
    name: str = "Depot"
    description: str = ""
    store_base_url: str = ""  # the store's public URL, no trailing slash; "" = unknown
    # [qt]
    qt_platform: str = "NEPTUNE3"
    qt_api_version: int = 2
    maintenance: bool = False
    download_expiry: int = 600
    purchase_requires_device_id: bool = True
    categories: tuple[Category, ...] = ()
    vendors: tuple[Vendor, ...] = ()
    qt_max_upload_bytes: int | None = None  # None: the runtime's own limit (RuntimeConfig)
    qt_store_signing_pkcs12: str = ""  # "" = store signing off; relative to the data folder
    qt_store_signing_password: str = field(default="", repr=False)
    # [ota]
    ota_devices: tuple[OtaDevice, ...] = ()
    ota_variants: tuple[OtaVariant, ...] = ()
    ota_filename_pattern: str = DEFAULT_OTA_PATTERN
    ota_allowed_versions: tuple[str, ...] = ("*",)
    ota_x86_types: tuple[OtaVariant, ...] = ()  # BlissOS-style x86 build types (codename, description)
    ota_base_url: str = ""  # [ota] base_url as written (no trailing slash); see ota_feed_base_url
    ota_romtype: str = ""  # the release type of feed entries whose device sets none
    # [device]
    platforms: tuple[DevicePlatform, ...] = ()
    # [portal]
    portal: PortalSettings = PortalSettings()
    # [trust]
    trust: TrustSettings = TrustSettings()

    @property
    def ota_feed_base_url(self) -> str:
        """The absolute base of download URLs in OTA feeds: ``[ota] base_url`` when set, else
        ``[store] base_url``; "" makes them root-relative."""
        return self.ota_base_url or self.store_base_url

    @functools.cached_property  # settings are parsed once per text; a build asks every time
    def digest(self) -> str:
        """Changes exactly when a setting changes. Secrets are left out: the digest ends up in
        cache keys and manifests beside site/, and no renderer shows a secret."""
        values = {name: _plain(getattr(self, name)) for name in _field_names(type(self))}
        values.pop("qt_store_signing_password")
        # No renderer shows [trust]: the trust step (builder.trust) reads it itself, so a changed
        # validity re-signs the metadata without re-rendering every page.
        values.pop("trust")
        return hashlib.sha256(canonical_json(values)).hexdigest()


@dataclass
class Catalog:
    """Everything the builder read from repo/, grouped the way renderers look things up."""

    settings: StoreSettings
    records: list[Record] = field(default_factory=list)

    def of(self, cls: type[Record]) -> list[Any]:
        return [r for r in self.records if isinstance(r, cls)]

    def modules_by_platform(self) -> dict[str, dict[str, list[Module]]]:
        """platform → module name → versions, newest first."""
        return _group_versions(self.of(Module))

    def firmware_by_platform(self) -> dict[str, dict[str, list[Firmware]]]:
        return _group_versions(self.of(Firmware))

    def platforms(self) -> list[str]:
        declared = [p.name for p in self.settings.platforms]
        seen = {r.platform for r in self.records if isinstance(r, Module | Firmware)}
        return declared + sorted(seen - set(declared))


def _group_versions(items: list[Any]) -> dict[str, dict[str, list[Any]]]:
    grouped: dict[str, dict[str, list[Any]]] = {}
    for item in items:
        grouped.setdefault(item.platform, {}).setdefault(item.name, []).append(item)
    for by_name in grouped.values():
        for versions in by_name.values():
            versions.sort(key=lambda r: (version_key(r.version), r.blob.path), reverse=True)
    return {p: dict(sorted(names.items())) for p, names in sorted(grouped.items())}

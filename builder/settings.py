"""The settings schema: every key of ``repo/depot.toml`` and of every kind of sidecar, declared once.

The way MkDocs declares its config options, each :class:`Option` names its key, its type, its
default, the values it allows (choices, a minimum, a check) and one line of help. Validation walks
the whole file and collects *every* problem, each naming the file, the table and the key::

    depot.toml: [store] name must be a string, not 5
    depot.toml: [qt] unknown key 'maxupload'
    depot.toml: [ota] devices[1] lacks the required key 'codename'

A missing depot.toml gives the defaults, so an empty folder is a valid (empty) store. A file that
exists but cannot be used raises :class:`~builder.errors.SettingsError` with all the messages, one
per line: publishing a store without its settings would silently drop categories, devices and
policies. Nothing else reads depot.toml: the builder and the runtime get a typed, frozen
:class:`~builder.model.StoreSettings`.

Sidecars (``<package>.toml``, read by :func:`builder.sidecars.read_sidecar`) are declared here too,
one :class:`SidecarKind` per reader; :func:`validate_sidecar` turns a wrong type or an unknown key
into a :class:`~builder.errors.FormatError` naming the sidecar file and the key, so the package is
skipped with a warning.

docs/repo-layout.md documents every option declared here (a test keeps it complete).
"""

from __future__ import annotations

import datetime
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from builder.errors import FormatError, SettingsError
from builder.model import (
    DEFAULT_OTA_PATTERN as DEFAULT_OTA_PATTERN,  # re-exported: the shipper reader's default
)
from builder.model import (
    Category,
    DevicePlatform,
    OtaDevice,
    OtaVariant,
    PortalSettings,
    StoreSettings,
    TrustSettings,
    Vendor,
)

SETTINGS_FILE = "depot.toml"

# The named groups the OTA reader needs in [ota] filename_pattern (x86_type as well for the x86
# devices; that one is checked per file name, since shipper's own default pattern lacks it).
OTA_REQUIRED_GROUPS = ("version", "codename", "variant", "date")
# APK release targets, as the portal writes them into the APK's sidecar.
COUNTRY = re.compile(r"^[A-Z]{2}$")  # ISO 3166-1 alpha-2; also a file name in the catalog
VEHICLE_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The portal's version states (runtime.portal.store.STATUSES); only "live" is published.
APK_STATUSES = ("draft", "in_review", "approved", "live", "rejected")

STRING = "string"
BOOLEAN = "boolean"
INTEGER = "integer"
STRINGS = "list of strings"
TABLES = "list of tables"
SHARE = "share"  # a number from 0 to 1: a rollout's share of devices, a failure rate

Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class Option:
    """One declared key: a table's key, a key of each entry of a list of tables, or a sidecar key."""

    key: str
    type: str  # STRING, BOOLEAN, INTEGER, SHARE, STRINGS or TABLES
    default: Any
    help: str
    field: str = ""  # the StoreSettings (or nested settings) field it fills; "" = the key
    required: bool = False  # only for the keys of list-of-tables entries
    choices: tuple[str, ...] = ()
    minimum: int | None = None  # INTEGER: the smallest value allowed (1: "a positive integer")
    pattern: re.Pattern[str] | None = None  # STRING, and each string of STRINGS, must match
    check: Check | None = None  # more checks on a well-typed value: a problem phrase, or None
    convert: Callable[[Any], Any] | None = None  # a valid value → the field's value
    secret: bool = False  # messages never show the value
    items: tuple[Option, ...] = ()  # TABLES: the keys of each entry
    unique: str = ""  # TABLES: an entry key no two entries may share
    make: Callable[[int, dict[str, Any]], Any] | None = None  # TABLES: (position, entry) → record
    default_from: str = ""  # an entry key whose value is this key's default

    @property
    def field_name(self) -> str:
        return self.field or self.key

    @property
    def described_type(self) -> str:
        """What a value must be, as the messages and the docs say it."""
        if self.type == INTEGER and self.minimum == 1:
            return "a positive integer"
        return {
            STRING: "a string",
            BOOLEAN: "true or false",
            INTEGER: "an integer",
            SHARE: "a number from 0 to 1",
            STRINGS: "a list of strings",
            TABLES: "a list of tables",
        }[self.type]


@dataclass(frozen=True)
class Table:
    """One ``[table]`` of depot.toml. ``nested`` gathers its keys into one frozen dataclass in the
    StoreSettings field named ``field`` (``[portal]``); otherwise each key fills its own field."""

    name: str
    help: str
    options: tuple[Option, ...]
    nested: type | None = None
    field: str = ""


@dataclass(frozen=True)
class SidecarKind:
    """The keys one reader accepts in its ``<package>.toml`` sidecar."""

    kind: str
    title: str
    options: tuple[Option, ...]
    # True only where the sidecar is a maintainer's file by design and may carry notes of its own.
    allow_unknown: bool = False


# -- checks ------------------------------------------------------------------------------------


def _shown(value: Any, secret: bool = False) -> str:
    """A value as a message shows it: as it is written in TOML, or its kind for big or secret ones."""
    if isinstance(value, bool):
        return "a boolean" if secret else ("true" if value else "false")
    if isinstance(value, int | float):
        return ("an integer" if isinstance(value, int) else "a float") if secret else repr(value)
    if isinstance(value, str):
        if secret:
            return "a string"
        return json.dumps(value if len(value) <= 60 else value[:57] + "...", ensure_ascii=False)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return type(value).__name__


def _url(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        return f"must be an http:// or https:// URL, not {_shown(value)}"
    if parts.query or parts.fragment:
        return f"must be a URL without a query or fragment, not {_shown(value)}"
    return None


def _ota_pattern(value: str) -> str | None:
    try:
        compiled = re.compile(value)
    except re.error as exc:
        return f"is not a valid regular expression ({exc})"
    missing = [g for g in OTA_REQUIRED_GROUPS if g not in compiled.groupindex]
    if missing:
        return "lacks the named group(s) " + ", ".join(f"(?P<{g}>...)" for g in missing)
    return None


def _repo_path(value: str) -> str | None:
    path = PurePosixPath(value)
    if value and (path.is_absolute() or ".." in path.parts or "\\" in value or value[1:2] == ":"):
        return f"must be a path relative to repo/ that stays inside it, not {_shown(value)}"
    return None


def _date(value: str) -> str | None:
    if not value:
        return None
    try:
        if datetime.date.fromisoformat(value).isoformat() == value:
            return None
    except ValueError:
        pass
    return f"must be a date like 2026-11-25, not {_shown(value)}"


def _strip_slash(value: str) -> str:
    return value.rstrip("/")


# -- depot.toml ------------------------------------------------------------------------------------

STORE = Table(
    "store",
    "The store itself.",
    (
        Option("name", STRING, "Depot", "the store's name: web pages, `store` in device/index.json"),
        Option("description", STRING, "", "a tagline for the web catalog"),
        Option(
            "base_url",
            STRING,
            "",
            "the store's public URL (http or https), for answers clients need absolute; "
            'OTA feeds use it unless [ota] base_url is set; "" = relative URLs',
            field="store_base_url",
            check=_url,
            convert=_strip_slash,
        ),
    ),
)

DEVICE = Table(
    "device",
    "The device app store (modules and firmware).",
    (
        Option(
            "platforms",
            TABLES,
            (),
            "device platforms, in the order the device index and the catalog list them",
            items=(
                Option(
                    "name",
                    STRING,
                    None,
                    "the platform, as module and firmware file names say it",
                    required=True,
                ),
                Option("description", STRING, "", "shown beside the platform"),
            ),
            unique="name",
            make=lambda _i, d: DevicePlatform(**d),
        ),
    ),
)

QT = Table(
    "qt",
    "The Qt deployment server dialect (docs/qt.md).",
    (
        Option("platform", STRING, "NEPTUNE3", "the platform /hello accepts", field="qt_platform"),
        Option(
            "api_version",
            INTEGER,
            2,
            "the highest /hello version accepted",
            field="qt_api_version",
            minimum=1,
        ),
        Option("maintenance", BOOLEAN, False, '/hello answers "maintenance"'),
        Option(
            "download_expiry",
            INTEGER,
            600,
            "seconds a purchase URL stays valid (expiresIn)",
            minimum=1,
        ),
        Option(
            "purchase_requires_device_id",
            BOOLEAN,
            True,
            "/app/purchase needs device_id, and binds it into the download URL",
        ),
        Option(
            "categories",
            TABLES,
            (),
            "app categories, in display order; their ids are 1, 2, ... in that order",
            items=(
                Option(
                    "name", STRING, None, "the category's name, as sidecars and uploads say it", required=True
                ),
                Option(
                    "icon",
                    STRING,
                    "",
                    'a PNG, a path relative to repo/; "" = the error icon',
                    check=_repo_path,
                ),
            ),
            unique="name",
            make=lambda i, d: Category(id=i + 1, **d),
        ),
        Option(
            "vendors",
            TABLES,
            (),
            "app vendors",
            items=(
                Option("id", STRING, None, "the vendor's id", required=True),
                Option("name", STRING, None, "the vendor's name; defaults to the id", default_from="id"),
            ),
            unique="id",
            make=lambda _i, d: Vendor(**d),
        ),
        Option(
            "max_upload_bytes",
            INTEGER,
            None,
            "the /upload size limit in bytes (runtime only); default: the runtime's limit, 5 GiB",
            field="qt_max_upload_bytes",
            minimum=1,
        ),
        Option(
            "store_signing_pkcs12",
            STRING,
            "",
            'a PKCS#12 file that enables store signing, relative to the data folder (runtime only); "" = off',
            field="qt_store_signing_pkcs12",
        ),
        Option(
            "store_signing_password",
            STRING,
            "",
            "its password (runtime only); DEPOT_QT_STORE_SIGNING_PASSWORD wins when set",
            field="qt_store_signing_password",
            secret=True,
        ),
    ),
)

_OTA_TYPE_ITEMS = (
    Option("codename", STRING, None, "the name file names and URLs use", required=True),
    Option("description", STRING, "", "shown to people"),
)

OTA = Table(
    "ota",
    "The shipper dialect: OTA builds (docs/ota.md).",
    (
        Option(
            "devices",
            TABLES,
            (),
            "the devices builds are published for",
            field="ota_devices",
            items=(
                Option(
                    "codename", STRING, None, "the device's codename, its folder under builds/", required=True
                ),
                Option(
                    "name",
                    STRING,
                    None,
                    "the device's name; defaults to the codename",
                    default_from="codename",
                ),
                Option("manufacturer", STRING, "", "the device's maker"),
                Option("maintained", BOOLEAN, True, 'shipper\'s "status": whether the device is maintained'),
                Option("note", STRING, "", "a note shown with the device"),
                Option("visible", BOOLEAN, True, "whether the device is listed"),
                Option("romtype", STRING, "", "the device's feed romtype; wins over [ota] romtype"),
            ),
            unique="codename",
            make=lambda _i, d: OtaDevice(**d),
        ),
        Option(
            "variants",
            TABLES,
            (),
            "the build variants (gapps, vanilla, ...)",
            field="ota_variants",
            items=_OTA_TYPE_ITEMS,
            unique="codename",
            make=lambda _i, d: OtaVariant(**d),
        ),
        Option(
            "x86_types",
            TABLES,
            (),
            "build types of the x86 and x86_64 devices",
            field="ota_x86_types",
            items=_OTA_TYPE_ITEMS,
            unique="codename",
            make=lambda _i, d: OtaVariant(**d),
        ),
        Option(
            "filename_pattern",
            STRING,
            DEFAULT_OTA_PATTERN,
            "a regular expression (re.search) with the named groups version, codename, variant and "
            "date (and x86_type for the x86 devices); default: shipper's",
            field="ota_filename_pattern",
            check=_ota_pattern,
        ),
        Option(
            "allowed_versions",
            STRINGS,
            ("*",),
            "fnmatch patterns; a build whose version matches none is skipped",
            field="ota_allowed_versions",
        ),
        Option(
            "base_url",
            STRING,
            "",
            'the absolute base of download URLs in OTA feeds; wins over [store] base_url; "" = that one',
            field="ota_base_url",
            check=_url,
            convert=_strip_slash,
        ),
        Option(
            "romtype",
            STRING,
            "",
            'the release type (romtype) of feed entries whose device sets none; "" = the file name\'s '
            "romtype group, else OFFICIAL",
            field="ota_romtype",
        ),
    ),
)

PORTAL = Table(
    "portal",
    "The CI portal's validation policy (docs/portal.md; runtime only).",
    (
        Option(
            "max_apk_bytes",
            INTEGER,
            PortalSettings.max_apk_bytes,
            "larger APKs get a blocking finding",
            minimum=1,
        ),
        Option("warn_apk_bytes", INTEGER, None, "larger APKs get a warning; default: no warning", minimum=1),
        Option("forbidden_permissions", STRINGS, (), "permissions that get a blocking finding"),
        Option("review_permissions", STRINGS, (), "permissions that get a warning for the store team"),
        Option(
            "release_countries",
            STRINGS,
            (),
            "the countries the console offers as release targets (ISO 3166-1 alpha-2)",
            pattern=COUNTRY,
        ),
        Option(
            "release_vehicle_contexts",
            STRINGS,
            (),
            "the vehicle contexts the console offers as release targets",
            pattern=VEHICLE_CONTEXT,
        ),
        Option(
            "upload_limit_bytes",
            INTEGER,
            PortalSettings.upload_limit_bytes,
            "a larger upload is cut off with 413",
            minimum=1,
        ),
    ),
    nested=PortalSettings,
    field="portal",
)

TRUST = Table(
    "trust",
    "How long the signed TUF metadata lives (docs/device-index.md, Signed metadata; only with a key folder).",
    (
        Option(
            "targets_days",
            INTEGER,
            TrustSettings.targets_days,
            "days targets metadata stays valid after the newest file of repo/",
            minimum=1,
        ),
        Option(
            "snapshot_days",
            INTEGER,
            TrustSettings.snapshot_days,
            "days snapshot metadata stays valid after the newest file of repo/",
            minimum=1,
        ),
        Option(
            "timestamp_hours",
            INTEGER,
            TrustSettings.timestamp_hours,
            "hours timestamp metadata stays valid after it is signed",
            minimum=1,
        ),
    ),
    nested=TrustSettings,
    field="trust",
)

TABLES_OF_SETTINGS: tuple[Table, ...] = (STORE, DEVICE, QT, OTA, PORTAL, TRUST)

# -- sidecars --------------------------------------------------------------------------------------

# A staged rollout of one module or firmware version (docs/device-index.md, "Rollouts"). The
# device decides from its id whether it is in the share, so the index states the rule, not a list.
GROUP = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")  # \Z: "$" also matches before a final "\n"
ROLLOUT_OPTIONS: tuple[Option, ...] = (
    Option("rollout", SHARE, 1.0, "the share of devices offered this version (0 stops the rollout)"),
    Option(
        "groups",
        STRINGS,
        (),
        "only devices in one of these groups are offered it; [] = every device",
        pattern=GROUP,
    ),
    Option("paused", BOOLEAN, False, "a paused rollout is offered to no device that has not started it"),
    Option("paused_reason", STRING, "", "why it was paused; the runtime writes it when it pauses one"),
    Option(
        "max_failure_rate",
        SHARE,
        None,
        "the share of failed installs among reporting devices that pauses the rollout; unset = never",
    ),
    Option("min_devices", INTEGER, 10, "the failure rate counts once this many devices reported", minimum=1),
)

SIDECARS: dict[str, SidecarKind] = {
    k.kind: k
    for k in (
        SidecarKind(
            "module",
            "a device module (modules/*.tar.gz.toml); its values win over module.toml",
            (
                Option("description", STRING, "", "what the module does"),
                Option("optional", BOOLEAN, False, "published in the device index for the device's UI"),
                *ROLLOUT_OPTIONS,
            ),
        ),
        SidecarKind(
            "firmware",
            "a firmware image (firmware/*.bin.toml)",
            (Option("description", STRING, "", "what the image is for"), *ROLLOUT_OPTIONS),
        ),
        SidecarKind(
            "qt-app",
            "a Qt package (apps/*.appkg.toml, *.ampkg.toml); POST /upload writes every key",
            (
                Option("category", STRING, "", 'a [qt] categories name; "" = listed under "All" only'),
                Option("vendor", STRING, "", "a [qt] vendors name or id"),
                Option("brief_description", STRING, "", "one line"),
                Option("description", STRING, "", "long text or HTML"),
                Option("purchase_id", STRING, "", 'the purchaseId, kept across re-uploads; "" = derived'),
                Option(
                    "updated",
                    STRING,
                    "",
                    "YYYY-MM-DD of the last upload; orders the newest apps",
                    check=_date,
                ),
            ),
        ),
        SidecarKind(
            "ota-build",
            "an OTA build (builds/<codename>/*.zip.toml); the runtime writes enabled",
            (
                Option("enabled", BOOLEAN, True, "whether feeds list the build"),
                Option(
                    "build_id",
                    INTEGER,
                    None,
                    "a stable id; default: derived from the device and file name",
                    minimum=1,
                ),
            ),
            # docs/ota.md: a maintainer may keep notes of their own in it (tags, tested_on, ...),
            # and enabling or disabling keeps them; only the declared keys are checked.
            allow_unknown=True,
        ),
        SidecarKind(
            "apk",
            "an APK (android/*.apk.toml); the CI portal writes every key on release",
            (
                Option(
                    "status",
                    STRING,
                    "live",
                    "the portal's state of the version; only live is published",
                    choices=APK_STATUSES,
                ),
                Option("version_id", STRING, "", "the portal's id of the version"),
                Option(
                    "countries", STRINGS, (), "release targets: ISO 3166-1 alpha-2 codes", pattern=COUNTRY
                ),
                Option(
                    "vehicle_contexts",
                    STRINGS,
                    (),
                    "release targets: vehicle contexts ([A-Za-z0-9._-], up to 64)",
                    pattern=VEHICLE_CONTEXT,
                ),
                Option("released", STRING, "", "when the store team released it (an ISO 8601 time)"),
            ),
        ),
    )
}


# -- validation ------------------------------------------------------------------------------------

_INVALID = object()


def _label(where: str, sep: str, key: str) -> str:
    return f"{where}{sep}{key}" if where else key


def _whole(where: str, phrase: str) -> str:
    return f"{where} {phrase}" if where else phrase


def _value(option: Option, value: Any, label: str, problems: list[str]) -> Any:
    """``value`` checked against ``option``: the field's value, or _INVALID (problems say why)."""
    bad = f"{label} must be {option.described_type}, not {_shown(value, option.secret)}"
    kind = option.type
    if kind == STRING:
        if not isinstance(value, str):
            problems.append(bad)
            return _INVALID
    elif kind == BOOLEAN:
        if not isinstance(value, bool):
            problems.append(bad)
            return _INVALID
    elif kind == INTEGER:
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(bad)
            return _INVALID
        if option.minimum is not None and value < option.minimum:
            problems.append(bad)
            return _INVALID
    elif kind == SHARE:
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            problems.append(bad)
            return _INVALID
        value = float(value)
    elif kind == STRINGS:
        if not isinstance(value, list):
            problems.append(bad)
            return _INVALID
        before = len(problems)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                problems.append(f"{label}[{i}] must be a string, not {_shown(item)}")
            elif option.pattern is not None and not option.pattern.match(item):
                problems.append(f"{label}[{i}] must match {option.pattern.pattern}, not {_shown(item)}")
        if len(problems) > before:
            return _INVALID
        value = tuple(value)
    elif kind == TABLES:
        return _entries(option, value, label, problems)
    if kind == STRING and option.pattern is not None and not option.pattern.match(value):
        problems.append(f"{label} must match {option.pattern.pattern}, not {_shown(value, option.secret)}")
        return _INVALID
    if option.choices and value not in option.choices:
        allowed = ", ".join(json.dumps(c) for c in option.choices)
        problems.append(f"{label} must be one of {allowed}, not {_shown(value, option.secret)}")
        return _INVALID
    if option.check is not None:
        phrase = option.check(value)
        if phrase:
            problems.append(f"{label} {phrase}")
            return _INVALID
    return option.convert(value) if option.convert is not None else value


def _entries(option: Option, value: Any, label: str, problems: list[str]) -> Any:
    if not isinstance(value, list):
        problems.append(f"{label} must be a list of tables, not {_shown(value)}")
        return _INVALID
    records, seen, ok = [], set(), True
    for i, entry in enumerate(value):
        where = f"{label}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a table, not {_shown(entry)}")
            ok = False
            continue
        values = _table(option.items, entry, where, ".", problems)
        if values is None:
            ok = False
            continue
        if option.unique:
            if values[option.unique] in seen:
                problems.append(f"{where} repeats the {option.unique} {_shown(values[option.unique])}")
                ok = False
            seen.add(values[option.unique])
        if option.make is not None:
            records.append(option.make(i, values))
    return tuple(records) if ok else _INVALID


def _table(
    options: tuple[Option, ...],
    data: Mapping[str, Any],
    where: str,
    sep: str,
    problems: list[str],
    allow_unknown: bool = False,
    defaults: bool = True,
) -> dict[str, Any] | None:
    """The declared keys of ``data``, checked (defaults filled in when ``defaults``), keyed by
    option key; None when any problem was found (appended to ``problems``)."""
    before = len(problems)
    declared = {o.key: o for o in options}
    if not allow_unknown:
        problems.extend(_whole(where, f"unknown key {key!r}") for key in data if key not in declared)
    values: dict[str, Any] = {}
    for option in options:
        if option.key in data:
            values[option.key] = _value(option, data[option.key], _label(where, sep, option.key), problems)
        elif option.required:
            problems.append(_whole(where, f"lacks the required key {option.key!r}"))
        elif defaults and not option.default_from:
            values[option.key] = option.default
    for option in options:
        if defaults and option.default_from and option.key not in values:
            values[option.key] = values.get(option.default_from)
    return None if len(problems) > before else values


def validate_settings(raw: Mapping[str, Any]) -> tuple[StoreSettings | None, list[str]]:
    """(settings, []) for a usable parsed depot.toml, else (None, its problems without the file
    name). Every problem is found, not only the first."""
    problems: list[str] = []
    tables = {t.name: t for t in TABLES_OF_SETTINGS}
    for key, value in raw.items():
        if key not in tables:
            if isinstance(value, dict):
                problems.append(f"unknown table [{key}]")
            else:
                problems.append(f"unknown key {key!r} outside any table")
    kwargs: dict[str, Any] = {}
    for table in TABLES_OF_SETTINGS:
        data = raw.get(table.name, {})
        if not isinstance(data, dict):
            problems.append(f"[{table.name}] must be a table, not {_shown(data)}")
            continue
        values = _table(table.options, data, f"[{table.name}]", " ", problems)
        if values is None:
            continue
        if table.nested is not None:
            kwargs[table.field] = table.nested(**values)
        else:
            kwargs.update({o.field_name: values[o.key] for o in table.options})
    if problems:
        return None, problems
    return StoreSettings(**kwargs), []


def parse_settings(raw: Mapping[str, Any]) -> StoreSettings:
    """The settings of a parsed depot.toml; SettingsError lists every problem, one per line."""
    settings, problems = validate_settings(raw)
    if settings is None:
        raise SettingsError("\n".join(f"{SETTINGS_FILE}: {p}" for p in problems))
    return settings


def _text(repo: Path) -> str | None:
    """depot.toml's text, or None when there is none; SettingsError when it cannot be read."""
    path = repo / SETTINGS_FILE
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{SETTINGS_FILE}: not UTF-8 text ({exc})") from exc
    except OSError as exc:  # a folder, or a file we may not read: say so, not a traceback
        raise SettingsError(f"{SETTINGS_FILE}: cannot read: {exc.strerror or exc}") from exc


def _parse(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{SETTINGS_FILE}: {exc}") from exc


def load_settings(repo: Path) -> StoreSettings:
    """``repo/depot.toml`` as :class:`StoreSettings`: the defaults when there is none;
    SettingsError (every problem, one per line) when it cannot be used. The same text gives
    the same (frozen) settings, parsed once per process: a process that builds many times (the
    runtime, ``depot watch``) does not parse a big depot.toml for every build."""
    text = _text(repo)
    if text is None:
        return StoreSettings()
    settings = _parsed.get(text)
    if settings is None:
        settings = parse_settings(_parse(text))
        if len(_parsed) >= 4:
            _parsed.pop(next(iter(_parsed)))
        _parsed[text] = settings
    return settings


_parsed: dict[str, StoreSettings] = {}


def check_config(repo: Path) -> list[str]:
    """Every problem of ``repo/depot.toml``, one message each; [] when it is usable (or absent)."""
    try:
        load_settings(repo)
    except SettingsError as exc:
        return str(exc).splitlines()
    return []


# -- sidecar validation ----------------------------------------------------------------------------


def validate_sidecar(
    kind: str, data: Mapping[str, Any], filename: str, defaults: bool = True
) -> dict[str, Any]:
    """The declared keys of a ``kind`` sidecar, checked; with ``defaults`` every declared key is
    there (its default when absent), else only the keys the file sets. FormatError names the
    sidecar file and every bad key."""
    spec = SIDECARS[kind]
    problems: list[str] = []
    values = _table(spec.options, data, "", "", problems, allow_unknown=spec.allow_unknown, defaults=defaults)
    if values is None:
        raise FormatError(f"sidecar {filename}: " + "; ".join(problems))
    return values

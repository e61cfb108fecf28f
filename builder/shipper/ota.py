"""OTA builds for Android devices: ``repo/builds/<codename>/<name>.zip``.

The build's identity comes from its file name, matched with ``re.search`` against the store's
pattern (``[ota] filename_pattern``, shipper's ``SHIPPER_FILE_NAME_FORMAT``): the named groups
``version``, ``codename``, ``variant`` and ``date`` (``YYYYMMDD``) are required, ``x86_type`` too
for the x86 devices, and every other named group that matched becomes build metadata.

Two sidecars sit next to the zip:

* ``<zip>.sha256``: ``sha256sum`` output (``<hex>  <name>``). The reader always hashes the zip
  (once per change: the scan cache is keyed by size and mtime) and refuses a build whose sidecar
  disagrees, so a truncated copy or a stale checksum never reaches an updater. The builder never
  *writes* it: the builder is a pure function repo/ → site/. The runtime writes it when a build is
  uploaded, and fills in missing ones (:func:`missing_checksums`) before it rebuilds, so a zip
  dropped in by hand gets its sidecar the next time the runtime publishes.
* ``<zip>.toml``: what the file does not carry: ``enabled`` (default true) and ``build_id``
  (a stable integer; default :func:`derived_build_id` of the device and file name, so it survives
  re-scans, copies of repo/ and several runtime processes without any counter to share). Both
  are declared in :data:`builder.settings.SIDECARS` ``"ota-build"``; other keys are the
  maintainer's notes and are left alone.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import FormatError
from builder.formats import Source
from builder.hashing import sha256_file
from builder.model import Blob, OtaBuild, Record, StoreSettings, canonical_json
from builder.settings import DEFAULT_OTA_PATTERN, OTA_REQUIRED_GROUPS
from builder.sidecars import SIDECAR_SUFFIX, read_sidecar

PREFIX = "builds/"
CHECKSUM_SUFFIX = ".sha256"
REQUIRED_GROUPS = OTA_REQUIRED_GROUPS  # depot.toml's [ota] filename_pattern is checked for these
X86_CODENAMES = ("x86", "x86_64")
# Updaters open a feed's download URL with `new URL(url)` (LineageOS Updater, BlissUpdater): a
# root-relative URL throws "no protocol", so a store without its public URL publishes no builds.
NO_BASE_URL = (
    "OTA feeds need absolute download URLs: set [store] base_url in depot.toml to the store's "
    'public URL, for example base_url = "https://store.example.com"'
)
# The release type a feed entry carries when neither the device, the store nor the file name
# says one: shipper's default file names are "...-OFFICIAL-...".
DEFAULT_ROMTYPE = "OFFICIAL"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# What an OTA file name may hold: it is published in feeds, pages and URLs, so no control
# characters, no bidirectional overrides (U+202E shows "gpj.exe" as "exe.jpg"), no spaces.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,250}\.zip")


class BuildNameError(FormatError):
    """The file name does not fit the pattern (shipper: ``invalid_file_name``)."""


class PatternError(FormatError):
    """The pattern lacks a required group (shipper: ``configuration_error``)."""


@dataclass(frozen=True)
class BuildName:
    """What a file name says about a build."""

    stem: str  # the file name without ".zip": shipper's Build.file_name
    codename: str
    variant: str
    version: str
    date: str  # YYYY-MM-DD
    x86_type: str
    extra: tuple[tuple[str, str], ...]


def pattern_of(settings: StoreSettings) -> str:
    return settings.ota_filename_pattern or DEFAULT_OTA_PATTERN


def parse_build_name(filename: str, settings: StoreSettings) -> BuildName:
    """Apply the store's pattern to the whole of ``filename``. shipper applies it with
    ``re.search``, so a pattern matched part of a name: ``x-20210101.zip.toml`` passed as a build
    and became another build's sidecar. Depot matches the whole name, and only names of
    :data:`SAFE_NAME`'s characters, ending in ``.zip``."""
    if not SAFE_NAME.fullmatch(filename):
        raise BuildNameError("The file name is malformed!")
    try:
        match = re.fullmatch(pattern_of(settings), filename)
    except re.error as exc:
        raise PatternError(f"[ota] filename_pattern is not a valid regular expression: {exc}") from exc
    if match is None:
        raise BuildNameError("The file name is malformed!")
    groups = match.groupdict()
    required = (*REQUIRED_GROUPS, "x86_type") if groups.get("codename") == "x86" else REQUIRED_GROUPS
    if any(groups.get(g) is None for g in required):
        raise PatternError("The server is improperly configured! All required match groups not found.")
    try:
        date = dt.datetime.strptime(groups["date"], "%Y%m%d").date()
    except ValueError as exc:
        raise BuildNameError(
            f"the date {groups['date']!r} in the file name is not a real YYYYMMDD date"
        ) from exc
    known = {*REQUIRED_GROUPS, "x86_type"}
    extra = tuple(sorted((k, str(v)) for k, v in groups.items() if k not in known and v is not None))
    return BuildName(
        stem=filename[:-4] if filename.endswith(".zip") else filename.rsplit(".", 1)[0],
        codename=groups["codename"],
        variant=groups["variant"],
        version=groups["version"],
        date=date.isoformat(),
        x86_type=groups.get("x86_type") or "",
        extra=extra,
    )


def version_allowed(version: str, settings: StoreSettings) -> bool:
    return any(fnmatch.fnmatchcase(version, p) for p in settings.ota_allowed_versions)


def derived_build_id(codename: str, filename: str) -> int:
    """A stable integer id from the build's place in repo/, in [10**9, 2**53): JSON-safe in
    every client and clear of small ids a maintainer may set by hand in a sidecar."""
    digest = hashlib.sha256(f"{codename}/{filename}".encode()).digest()
    return 10**9 + int.from_bytes(digest[:8], "big") % (2**53 - 10**9)


def build_id_of(codename: str, filename: str, sidecar: dict[str, Any]) -> int:
    value = sidecar.get("build_id")
    if value is None:
        return derived_build_id(codename, filename)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise FormatError(f"sidecar: build_id must be a positive integer, not {value!r}")
    return value


def read_checksum_file(path: Path) -> str | None:
    """The hex digest of a ``sha256sum``-style file (first token of the first line), or None."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path.name} is not text") from exc
    token = (text.split() or [""])[0].lower()
    if not HEX64.match(token):
        raise FormatError(f"{path.name} does not start with a SHA-256 in hex")
    return token


def checksum_line(sha256: str, filename: str) -> bytes:
    """The sidecar's bytes: exactly what ``sha256sum <file>`` prints (shippy reads this format)."""
    return f"{sha256}  {filename}\n".encode()


def check_zip(path: Path) -> None:
    """An OTA package is a zip that recovery can open: its central directory must be readable."""
    try:
        with zipfile.ZipFile(path) as archive:
            if not archive.infolist():
                raise FormatError("the zip has no entries")
    except zipfile.BadZipFile as exc:
        raise FormatError(f"not a readable zip: {exc}") from exc


def iter_build_files(repo: Path) -> Iterator[tuple[str, Path]]:
    """(codename, path) of every ``repo/builds/<codename>/*.zip``, sorted; hidden names left out."""
    root = repo / "builds"
    if not root.is_dir():
        return
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.glob("*.zip")):
            if not path.name.startswith(".") and path.is_file() and not path.is_symlink():
                yield folder.name, path


def missing_checksums(repo: Path) -> list[Path]:
    """Zips under repo/builds/ without their ``.sha256`` sidecar (the runtime fills them in)."""
    return [p for _c, p in iter_build_files(repo) if not p.with_name(p.name + CHECKSUM_SUFFIX).exists()]


class OtaReader:
    name = "ota"

    def matches(self, relpath: str) -> bool:
        return relpath.startswith(PREFIX) and relpath.endswith(".zip")

    def sidecars(self, relpath: str) -> list[str]:
        return [relpath + CHECKSUM_SUFFIX, relpath + SIDECAR_SUFFIX]

    def settings_key(self, settings: StoreSettings) -> str:
        return hashlib.sha256(
            canonical_json(
                {
                    "pattern": pattern_of(settings),
                    "allowed": list(settings.ota_allowed_versions),
                    "devices": sorted(d.codename for d in settings.ota_devices),
                    "variants": sorted(v.codename for v in settings.ota_variants),
                    "x86_types": sorted(t.codename for t in settings.ota_x86_types),
                    "absolute": bool(settings.ota_feed_base_url),
                }
            )
        ).hexdigest()

    def read(self, source: Source) -> list[Record]:
        return [read_build(source)]


def read_build(source: Source, folder: str | None = None) -> OtaBuild:
    """One OTA build; FormatError says why it cannot be published. ``folder`` overrides the
    device folder for a file not yet in repo/ (an upload being checked)."""
    settings = source.settings
    if not settings.ota_feed_base_url:
        raise FormatError(NO_BASE_URL)
    parts = source.relpath.split("/")
    if folder is None:
        if len(parts) != 3 or parts[0] != "builds":
            raise FormatError("OTA builds live in builds/<codename>/, one folder per device")
        folder = parts[1]
    name = parse_build_name(source.filename, settings)
    if name.codename != folder:
        raise FormatError(f"the file name says device {name.codename!r} but it is in builds/{folder}/")
    if name.codename not in {d.codename for d in settings.ota_devices}:
        raise FormatError(f"device {name.codename!r} is not declared in [ota] devices")
    if name.variant not in {v.codename for v in settings.ota_variants}:
        raise FormatError(f"variant {name.variant!r} is not declared in [ota] variants")
    if (
        name.codename in X86_CODENAMES
        and name.x86_type
        and name.x86_type not in {t.codename for t in settings.ota_x86_types}
    ):
        raise FormatError(f"x86 type {name.x86_type!r} is not declared in [ota] x86_types")
    if not version_allowed(name.version, settings):
        raise FormatError(f"version {name.version!r} is not in [ota] allowed_versions")
    size, sha256 = sha256_file(source.path)
    if size == 0:
        raise FormatError("empty file")
    check_zip(source.path)
    stated = read_checksum_file(source.path.with_name(source.path.name + CHECKSUM_SUFFIX))
    if stated is not None and stated != sha256:
        raise FormatError(f"{source.filename}{CHECKSUM_SUFFIX} says {stated} but the file hashes to {sha256}")
    sidecar = read_sidecar(source.path, "ota-build")  # enabled and build_id, checked
    enabled = sidecar["enabled"]
    return OtaBuild(
        codename=name.codename,
        variant=name.variant,
        version=name.version,
        date=name.date,
        blob=Blob(source.relpath, size, sha256),
        build_id=build_id_of(name.codename, source.filename, sidecar),
        enabled=enabled,
        extra=name.extra,
        x86_type=name.x86_type,
    )


def pack_ota_zip(dest: Path, metadata: dict[str, str], payload: bytes = b"", size: int | None = None) -> Path:
    """Write a small, reproducible OTA-shaped zip (``META-INF/com/android/metadata``,
    ``payload_properties.txt``, ``payload.bin``, fixed timestamps); no sidecar. With ``size``
    the payload and the archive comment pad the file to exactly that many bytes.

    Used by the demo store, the tests and the benchmarks; real builds come from the ROM's build."""
    import io

    entries = {
        "META-INF/com/android/metadata": "".join(f"{k}={v}\n" for k, v in sorted(metadata.items())).encode(),
        "payload_properties.txt": f"FILE_SIZE={len(payload)}\n".encode(),
        "payload.bin": payload,
    }

    def pack(comment: bytes) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, data in entries.items():
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
            archive.comment = comment
        return buffer.getvalue()

    data = pack(b"")
    if size is not None:
        missing = size - len(data)
        if missing < 0 or missing > 0xFFFF:
            if missing < 0:
                raise ValueError(f"{size} bytes is too small for this payload")
            entries["payload.bin"] = payload + bytes(missing - 0xFFFF)
            entries["payload_properties.txt"] = f"FILE_SIZE={len(entries['payload.bin'])}\n".encode()
            data = pack(b"")
            missing = size - len(data)
        data = pack(b"\0" * missing)
        assert len(data) == size
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest

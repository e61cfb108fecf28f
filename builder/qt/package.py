"""Qt Application Manager packages (``.appkg``/``.ampkg``): the validator and the catalog reader.

A package is a tar (any compression) whose entries come in a fixed order: ``--PACKAGE-HEADER--``,
``info.yaml``, ``icon.png``, the payload, then one or more ``--PACKAGE-FOOTER--*`` entries. The
validator checks it the way the Qt deployment server does and rejects it with that server's own
messages (reference section 3.7), so ``depot check`` and ``/upload`` say exactly what is wrong.

What a package does not carry (category, vendor, descriptions, the stable purchase id) comes
from its sidecar ``<package file>.toml``::

    category = "Entertainment"     # a name from depot.toml [qt] categories
    vendor = "Qt"                  # a name (or id) from depot.toml [qt] vendors
    brief_description = "One line"
    description = "Long text or HTML"
    purchase_id = "6f1c…"          # kept across rebuilds and re-uploads
    updated = "2026-11-25"         # the date of the last upload

:data:`builder.settings.SIDECARS` ``"qt-app"`` declares these keys; any other key is an error.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from builder.errors import FormatError
from builder.formats import Source
from builder.model import AppVariant, Blob, Record, StoreSettings
from builder.qt.arch import ArchError, detect
from builder.qt.digest import RESERVED_PREFIX, PackageDigest
from builder.qt.tags import SoftwareTag, TagError, TagList
from builder.sidecars import SIDECAR_SUFFIX

SUFFIXES = (".appkg", ".ampkg")
HEADER = "--PACKAGE-HEADER--"
FOOTER = "--PACKAGE-FOOTER--"
INFO_TYPES = ["am-application", "am-package"]
METADATA_LIMIT = 1 << 20  # header, info.yaml and footers are small YAML files
ICON_LIMIT = 2 << 20  # an app icon (Qt AM shows it at launcher size); read whole, so capped
YAML_EVENT_LIMIT = 20_000  # parse events (nodes) in one metadata file
SNIFF_BYTES = 1 << 16  # enough of a file's start to read its ELF, Mach-O or PE header
FORBIDDEN_ID_CHARS = '<>:"/\\|?*'
# purchaseIds derived from the variant key are stable without any stored state
PURCHASE_NAMESPACE = uuid.UUID("0f6f3c4e-5b0a-4f43-9d53-2c1f9a3e7d10")


class PackageError(FormatError):
    """The package is invalid; the message is the reference server's."""


@dataclass
class QtPackage:
    """What the validator learnt from a valid package."""

    id: str
    name: str
    version: str
    architecture: str
    pkgformat: int  # the header's formatVersion
    tags: list[str]
    conflicts: list[str]
    tags_hash: str
    icon: bytes
    digest: str
    raw_digest: bytes
    header: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    footer: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The store's identity of a variant: ``<id>_<architecture>_<tags_hash>``."""
        return variant_key(self.id, self.architecture, self.tags_hash)


def variant_key(app_id: str, architecture: str, tags_hash: str) -> str:
    return "_".join([app_id, architecture, tags_hash])


def escape_key(key: str) -> str:
    """The reference's file-name escaping of a variant key (``:`` and ``,`` survive)."""
    return key.replace("/", "_").replace("\\", "_").replace(":", "x3A").replace(",", "x2C")


def default_purchase_id(key: str) -> str:
    return str(uuid.uuid5(PURCHASE_NAMESPACE, key))


def _check_yaml(contents: bytes, what: str) -> None:
    """Refuse YAML whose size of structure is not its size of text: anchors and aliases (one
    alias may stand for a whole tree, so nested ones grow exponentially as soon as anything
    walks the result) and more nodes than any package's metadata has."""
    try:
        for count, event in enumerate(yaml.parse(contents, Loader=yaml.SafeLoader)):
            if count > YAML_EVENT_LIMIT:
                raise PackageError(f"Could not parse {what}: more than {YAML_EVENT_LIMIT} YAML nodes")
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise PackageError(f"Could not parse {what}: YAML anchors and aliases are not allowed")
    except yaml.YAMLError as exc:
        raise PackageError(f"Could not parse {what}: {exc}") from exc


def _yaml_docs(contents: bytes, what: str) -> list[Any]:
    _check_yaml(contents, what)
    try:
        return list(yaml.safe_load_all(contents))
    except (yaml.YAMLError, RecursionError) as exc:
        raise PackageError(f"Could not parse {what}: {exc}") from exc


def _doc_type(doc: Any) -> tuple[Any, Any]:
    if not isinstance(doc, dict):
        return None, None
    version = doc.get("formatVersion")
    return (None if isinstance(version, bool) else version), doc.get("formatType")


def validate_id(value: Any) -> str | None:
    """None when ``value`` can be used as a file-system name (Qt AM's rule), else why not."""
    if not isinstance(value, str) or not value:
        return "must not be empty"
    if len(value) > 150:
        return "the maximum length is 150 characters"
    for c in value:
        if ord(c) < 0x20 or ord(c) > 0x7F or c in FORBIDDEN_ID_CHARS:
            return f"must consist of printable ASCII characters only, except any of '{FORBIDDEN_ID_CHARS}'"
    if not value.strip(" "):
        return "must not consist of only white-space characters"
    return None


class _Scan:
    """State of the entry loop (reference ``parsePackageMetadata``)."""

    def __init__(self) -> None:
        self.count = 0
        self.header_type: tuple[Any, Any] | None = None
        self.header: Any = None
        self.info_type: str | None = None
        self.info: Any = None
        self.info_raw: bytes = b""
        self.icon: bytes | None = None
        self.found_footer = False
        self.found_info = False
        self.found_icon = False
        self.footer = b""
        self.digest = PackageDigest()
        self.oses: set[str] = set()
        self.archs: set[str] = set()
        self.formats: set[str] = set()


def _read_small(tar: tarfile.TarFile, entry: tarfile.TarInfo, cap: int) -> bytes:
    handle = tar.extractfile(entry)
    assert handle is not None
    return handle.read(cap)


def _entry(tar: tarfile.TarFile, entry: tarfile.TarInfo, s: _Scan) -> None:
    name = entry.name
    s.count += 1
    if not entry.isfile() and not entry.isdir():
        raise PackageError(f"only files and directories are allowed: {name}")
    if name.startswith("/"):
        raise PackageError(f"no absolute paths are allowed: {name}")
    if ".." in name:
        raise PackageError(f"no non-canonical paths are allowed: {name}")
    if name.startswith(RESERVED_PREFIX) and entry.isdir():
        raise PackageError(f"all reserved entries (starting with --PACKAGE-) need to be files, found {name}")

    contents: bytes | None = None
    head = b""
    reserved = name.startswith(RESERVED_PREFIX)
    small = name in (HEADER, "info.yaml", "icon.png") or reserved
    if entry.isfile():
        try:
            if small:
                cap = ICON_LIMIT if name == "icon.png" else METADATA_LIMIT
                if entry.size > cap:
                    raise PackageError(f"Could not extract file {name}: larger than {cap} bytes")
                contents = _read_small(tar, entry, cap)
                head = contents[:SNIFF_BYTES]
            else:
                handle = tar.extractfile(entry)
                assert handle is not None
                while chunk := handle.read(1 << 20):
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                    s.digest.add_file_contents(chunk)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise PackageError(f"Could not extract file {name}: {exc}") from exc

    if name == HEADER:
        if s.count != 1:
            raise PackageError(
                f"file {HEADER} found at index {s.count}, but it needs to be the first file in the package"
            )
        docs = _yaml_docs(contents or b"", HEADER)
        if len(docs) != 2:
            raise PackageError(f"file {HEADER} does not consist of 2 YAML documents")
        version, kind = _doc_type(docs[0])
        if version not in (1, 2) or kind != "am-package-header" or not isinstance(docs[1], dict):
            raise PackageError(f"file {HEADER} has an invalid document type")
        s.header_type, s.header = (version, kind), docs[1]
    elif s.count == 1:
        raise PackageError(f"the first file in the package is not {HEADER}, but {name}")

    if name.startswith(FOOTER):
        s.footer += contents or b""
        s.found_footer = True
    elif s.found_footer:
        raise PackageError(f"no normal files are allowed after the first {FOOTER} (found {name})")

    if not reserved:
        if entry.isdir():
            s.digest.add_directory(name)
        elif small:
            s.digest.add_file(name, contents or b"")
        else:
            s.digest.end_file(name, entry.size)

    if name == "info.yaml":
        if s.count != 2:
            raise PackageError(
                f"file info.yaml found at index {s.count}, but it needs to be the second file of the package"
            )
        docs = _yaml_docs(contents or b"", "info.yaml")
        if len(docs) != 2:
            raise PackageError("file info.yaml does not consist of 2 YAML documents")
        version, kind = _doc_type(docs[0])
        if version != 1 or kind not in INFO_TYPES or not isinstance(docs[1], dict):
            raise PackageError("file info.yaml has an invalid document type")
        assert s.header_type is not None
        if INFO_TYPES.index(kind) + 1 > s.header_type[0]:
            raise PackageError("inconsistent package version between --PACKAGE-HEADER-- and info.yaml files.")
        s.info, s.info_type, s.info_raw, s.found_info = docs[1], kind, contents or b"", True
    elif name == "icon.png":
        if s.count != 3:
            raise PackageError(
                f"file icon.png found at index {s.count}, but it needs to be the third file in the package"
            )
        s.icon, s.found_icon = contents or b"", True
    elif not s.found_info and not s.found_icon and s.count >= 2:
        raise PackageError(f"package does not start with info.yaml and icon.png - found {name}")

    if s.count > 2 and head and entry.isfile():
        try:
            binary = detect(head)
        except ArchError as exc:
            raise PackageError(str(exc)) from exc
        if binary is not None:
            s.oses.add(binary.os)
            s.archs.add(binary.architecture)
            s.formats.add(binary.fmt)


def _store_name(names: Any) -> str:
    if not isinstance(names, dict):
        raise PackageError("invalid name: not a dictionary")
    name: Any = ""
    if "en" in names:
        name = names["en"]
    elif "en_US" in names:
        name = names["en_US"]
    elif names:
        name = next(iter(names.values()))
    if not name:
        raise PackageError("could not deduce a suitable package name from the info part")
    return str(name)


def _tag_lists(header: dict[str, Any]) -> tuple[TagList, TagList]:
    required, conflicts = TagList(), TagList()
    for key in ("extra", "extraSigned"):
        extra = header.get(key)
        if extra is None:
            continue
        if not isinstance(extra, dict):
            raise PackageError(f"invalid {key}: not a dictionary")
        for field_name, target in (("tags", required), ("conflicts", conflicts)):
            values = extra.get(field_name, [])
            if not isinstance(values, list):
                raise PackageError("Malformed tag")
            try:
                for value in values:
                    target.append(SoftwareTag.parse(value))
            except TagError as exc:
                raise PackageError(str(exc)) from exc
    return required, conflicts


def _version(info_raw: bytes) -> str:
    """info.yaml's ``version`` as written (``1.10`` stays ``1.10``, not the float 1.1)."""
    try:
        docs = list(yaml.load_all(info_raw, Loader=yaml.BaseLoader))
    except yaml.YAMLError:
        return "0.0.0"
    value = docs[1].get("version") if len(docs) == 2 and isinstance(docs[1], dict) else None
    return value if isinstance(value, str) and value else "0.0.0"


def validate_package(fileobj: IO[bytes] | Path) -> QtPackage:
    """Validate a package exactly as the reference server does; PackageError says why not."""
    s = _Scan()
    where: dict[str, Any] = {"name": fileobj} if isinstance(fileobj, Path) else {"fileobj": fileobj}
    try:
        tar = tarfile.open(mode="r:*", encoding="utf-8", **where)  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise PackageError(f"not a package archive: {exc}") from exc
    with tar:
        try:
            for entry in tar:
                _entry(tar, entry, s)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise PackageError(f"not a package archive: {exc}") from exc

    docs = _yaml_docs(s.footer, FOOTER)
    if len(docs) < 2:
        raise PackageError(f"file {FOOTER} does not consist of at least 2 YAML documents")
    version, kind = _doc_type(docs[0])
    if version not in (1, 2) or kind != "am-package-footer":
        raise PackageError(f"file {FOOTER} has an invalid document type")
    if s.header_type is None or version != s.header_type[0]:
        raise PackageError(
            "inconsistent package version between --PACKAGE-HEADER-- and --PACKAGE-FOOTER-- files."
        )
    footer: dict[str, Any] = {}
    for doc in docs[1:]:
        if not isinstance(doc, dict):
            raise PackageError(f"file {FOOTER} has an invalid document type")
        footer.update(doc)

    if len(s.oses) > 1:
        raise PackageError("Package can not contain binaries for more than one OS")
    if len(s.archs) > 1:
        raise PackageError("Multiple binary architectures detected in package")
    if len(s.formats) > 1:
        raise PackageError("Multiple binary formats detected in package")
    architecture = next(iter(s.archs)) if s.archs else "All"

    pkgformat = s.header_type[0]
    id_key = "applicationId" if pkgformat == 1 else "packageId"
    info_fields = ["id", "name", "icon", "applications"]
    if s.info_type == "am-application":
        info_fields = ["id", "name", "icon", "runtime", "code"]
    parts: dict[str, tuple[Any, list[str]]] = {
        "header": (s.header, [id_key, "diskSpaceUsed"]),
        "info": (s.info, info_fields),
        "footer": (footer, ["digest"]),
        "icon": (s.icon, []),
    }
    for part, (data, fields) in parts.items():
        if data is None:
            raise PackageError(f"package metadata is missing the {part} part")
        for f in fields:
            if f not in data:
                raise PackageError(f"metadata {f} is missing in the {part} part")
    header, info = s.header, s.info
    if header[id_key] != info["id"]:
        raise PackageError(
            "the id fields in --PACKAGE-HEADER-- and info.yaml are different: "
            f"{header[id_key]} vs. {info['id']}"
        )
    problem = validate_id(info["id"])
    if problem:
        raise PackageError(f"invalid id: {problem}")
    disk = header["diskSpaceUsed"]
    if isinstance(disk, bool) or not isinstance(disk, int) or disk <= 0:
        raise PackageError(f"the diskSpaceUsed field in --PACKAGE-HEADER-- is not > 0, but {disk}")
    name = _store_name(info["name"])
    required, conflicts = _tag_lists(header)
    digest = s.digest.hexdigest()
    if digest != footer["digest"]:
        raise PackageError(f"digest does not match, is: {digest}, but should be {footer['digest']}")
    if "storeSignature" in footer:
        raise PackageError("cannot upload a package with an existing storeSignature field")
    return QtPackage(
        id=info["id"],
        name=name,
        version=_version(s.info_raw),
        architecture=architecture,
        pkgformat=pkgformat,
        tags=required.strings(),
        conflicts=conflicts.strings(),
        tags_hash=str(required) + str(conflicts),
        icon=s.icon or b"",
        digest=digest,
        raw_digest=s.digest.digest(),
        header=header,
        info=info,
        footer=footer,
    )


def sha256_and_size(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class QtPackageReader:
    name = "qt-package"

    def matches(self, relpath: str) -> bool:
        return relpath.startswith("apps/") and relpath.endswith(SUFFIXES)

    def sidecars(self, relpath: str) -> list[str]:
        return [relpath + SIDECAR_SUFFIX]

    def settings_key(self, settings: StoreSettings) -> str:
        return json.dumps([[c.name for c in settings.categories], [[v.id, v.name] for v in settings.vendors]])

    def read(self, source: Source) -> list[Record]:
        if "/" in source.relpath[len("apps/") :]:
            raise FormatError("Qt packages live directly in apps/, not in sub-folders")
        package = validate_package(source.path)
        sidecar = source.sidecar("qt-app")  # types, unknown keys and the date: builder.settings
        category, vendor = sidecar["category"], sidecar["vendor"]
        if source.file is None:  # in a store: names must resolve against depot.toml
            names = [c.name for c in source.settings.categories]
            if category and category not in names:
                raise FormatError(
                    f"sidecar {source.filename}{SIDECAR_SUFFIX}: category {category!r} is not in"
                    f" depot.toml [qt] categories {names}"
                )
            if vendor:
                match = next((v for v in source.settings.vendors if vendor in (v.id, v.name)), None)
                if match is None:
                    raise FormatError(
                        f"sidecar {source.filename}{SIDECAR_SUFFIX}: vendor {vendor!r} is not in"
                        " depot.toml [qt] vendors"
                    )
                vendor = match.name
        purchase_id = sidecar["purchase_id"] or default_purchase_id(package.key)
        sha, size = sha256_and_size(source.path)
        return [
            AppVariant(
                id=package.id,
                name=package.name,
                version=package.version,
                architecture=package.architecture,
                blob=Blob(source.relpath, size, sha),
                category=category,
                vendor=vendor,
                brief_description=sidecar["brief_description"],
                description=sidecar["description"],
                tags=tuple(package.tags),
                conflict_tags=tuple(package.conflicts),
                purchase_uuid=purchase_id,
                updated=sidecar["updated"],
                icon_sha256=hashlib.sha256(package.icon).hexdigest(),
                pkgformat=package.pkgformat,
                tags_hash=package.tags_hash,
                package_digest=package.digest,
            )
        ]

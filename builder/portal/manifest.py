"""Android binary XML (AXML): read the facts a store needs from a compiled AndroidManifest.xml.

The compiled manifest is a chunk stream: a string pool, a resource-id map (which gives
``android:`` attributes their stable ids, so obfuscated attribute names do not matter) and
start/end element chunks whose attributes carry typed values. We read only what the portal
checks: package, versionCode, versionName, min/target SDK, debuggable and permissions. Every
length and offset is bounds-checked; a damaged manifest raises :class:`AxmlError`, never an
IndexError or a huge allocation.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

RES_STRING_POOL = 0x0001
RES_XML = 0x0003
RES_XML_START_ELEMENT = 0x0102
RES_XML_RESOURCE_MAP = 0x0180
UTF8_FLAG = 0x100

TYPE_REFERENCE = 0x01
TYPE_STRING = 0x03
TYPE_INT_DEC = 0x10
TYPE_INT_HEX = 0x11
TYPE_INT_BOOLEAN = 0x12

# android.R.attr ids: stable across every platform release.
ATTR_NAME = 0x01010003
ATTR_DEBUGGABLE = 0x0101000F
ATTR_MIN_SDK = 0x0101020C
ATTR_VERSION_CODE = 0x0101021B
ATTR_VERSION_NAME = 0x0101021C
ATTR_TARGET_SDK = 0x01010270
ATTR_VERSION_CODE_MAJOR = 0x01010576
ATTR_TARGET_SANDBOX = 0x0101054C

# apksig's codename rule: the API level of a preview codename from its first letter
CODENAME_LEVELS = {
    "C": 2,
    "D": 3,
    "E": 4,
    "F": 7,
    "G": 8,
    "H": 10,
    "I": 13,
    "J": 15,
    "K": 18,
    "L": 20,
    "M": 22,
    "N": 23,
    "O": 25,
}

PERMISSION_ELEMENTS = {"uses-permission", "uses-permission-sdk-23", "uses-permission-sdk-m"}


class AxmlError(ValueError):
    """The manifest is not readable binary XML; the message says where it broke."""


@dataclass(frozen=True)
class Attribute:
    name: str
    resource_id: int | None
    type: int
    data: int
    string: str | None  # the value when it is a string (raw or typed)

    @property
    def value(self) -> str | int | bool | None:
        if self.string is not None:
            return self.string
        if self.type == TYPE_INT_BOOLEAN:
            return self.data != 0
        if self.type in (TYPE_INT_DEC, TYPE_INT_HEX):
            return self.data
        if self.type == TYPE_REFERENCE:
            return f"@0x{self.data:08x}"
        return self.data


@dataclass(frozen=True)
class Element:
    name: str
    depth: int
    attributes: tuple[Attribute, ...]

    def attr(self, resource_id: int, name: str) -> Attribute | None:
        for a in self.attributes:
            if a.resource_id == resource_id:
                return a
        for a in self.attributes:
            if a.name == name and (a.resource_id is None or resource_id == -1):
                return a
        return None


@dataclass(frozen=True)
class ManifestInfo:
    package: str
    version_code: int
    version_name: str
    min_sdk: int
    target_sdk: int | None
    debuggable: bool
    permissions: tuple[str, ...] = field(default=())
    # What apksigner verifies the signature for (apksig's reading of the same manifest, which
    # differs in details from the catalog's min_sdk/target_sdk: see :func:`signature_sdks`).
    signature_min_sdk: int = 1
    signature_target_sdk: int = 1
    target_sandbox: int = 1


def _u16(data: bytes, offset: int) -> int:
    if offset + 2 > len(data):
        raise AxmlError(f"truncated at offset {offset}")
    return struct.unpack_from("<H", data, offset)[0]


def _u32(data: bytes, offset: int) -> int:
    if offset + 4 > len(data):
        raise AxmlError(f"truncated at offset {offset}")
    return struct.unpack_from("<I", data, offset)[0]


def _string_pool(data: bytes, start: int, size: int) -> list[str]:
    count, _styles, flags, strings_start = struct.unpack_from("<IIII", data, start + 8)
    header = _u16(data, start + 2)
    if count > size // 4:
        raise AxmlError("string pool count exceeds its chunk")
    utf8 = bool(flags & UTF8_FLAG)
    base = start + strings_start
    end = start + size
    out = []
    for i in range(count):
        pos = base + _u32(data, start + header + 4 * i)
        if not start <= pos < end:
            raise AxmlError("string offset outside the pool")
        out.append(_read_utf8(data, pos, end) if utf8 else _read_utf16(data, pos, end))
    return out


def _read_utf8(data: bytes, pos: int, end: int) -> str:
    def length(p: int) -> tuple[int, int]:
        first = data[p]
        if first & 0x80:
            return ((first & 0x7F) << 8) | data[p + 1], p + 2
        return first, p + 1

    try:
        _chars, pos = length(pos)
        nbytes, pos = length(pos)
    except IndexError as exc:
        raise AxmlError("truncated string") from exc
    if pos + nbytes > end:
        raise AxmlError("string runs past the pool")
    return data[pos : pos + nbytes].decode("utf-8", errors="replace")


def _read_utf16(data: bytes, pos: int, end: int) -> str:
    n = _u16(data, pos)
    pos += 2
    if n & 0x8000:
        n = ((n & 0x7FFF) << 16) | _u16(data, pos)
        pos += 2
    if pos + 2 * n > end:
        raise AxmlError("string runs past the pool")
    return data[pos : pos + 2 * n].decode("utf-16-le", errors="replace")


def parse_elements(data: bytes) -> list[Element]:
    """Every start element of the document, in order, with its depth."""
    if len(data) < 8 or _u16(data, 0) != RES_XML:
        raise AxmlError("not a binary XML document")
    total = min(_u32(data, 4), len(data))
    pos = _u16(data, 2)
    strings: list[str] = []
    res_ids: list[int] = []
    elements: list[Element] = []
    depth = 0
    while pos + 8 <= total:
        ctype, header, size = _u16(data, pos), _u16(data, pos + 2), _u32(data, pos + 4)
        if size < 8 or pos + size > total or header > size:
            raise AxmlError(f"bad chunk size at offset {pos}")
        if ctype == RES_STRING_POOL:
            strings = _string_pool(data, pos, size)
        elif ctype == RES_XML_RESOURCE_MAP:
            res_ids = [_u32(data, pos + header + 4 * i) for i in range((size - header) // 4)]
        elif ctype == RES_XML_START_ELEMENT:
            elements.append(_element(data, pos, header, size, strings, res_ids, depth))
            depth += 1
        elif ctype == RES_XML_START_ELEMENT + 1:
            depth = max(0, depth - 1)
        pos += size
    return elements


def _element(
    data: bytes, pos: int, header: int, size: int, strings: list[str], res_ids: list[int], depth: int
) -> Element:
    def string(index: int) -> str | None:
        if index == 0xFFFFFFFF:
            return None
        if index >= len(strings):
            raise AxmlError("string index out of range")
        return strings[index]

    ext = pos + header
    name_idx = _u32(data, ext + 4)
    attr_start, attr_size, attr_count = _u16(data, ext + 8), _u16(data, ext + 10), _u16(data, ext + 12)
    if attr_size < 20 or ext + attr_start + attr_count * attr_size > pos + size:
        raise AxmlError("attributes run past their element")
    attrs = []
    for i in range(attr_count):
        a = ext + attr_start + i * attr_size
        a_name = _u32(data, a + 4)
        raw = _u32(data, a + 8)
        a_type = data[a + 15]
        a_data = _u32(data, a + 16)
        rid = res_ids[a_name] if a_name < len(res_ids) else None
        text = string(raw)
        if a_type == TYPE_STRING:
            text = string(a_data)
        attrs.append(Attribute(string(a_name) or "", rid, a_type, a_data, text))
    return Element(string(name_idx) or "", depth, tuple(attrs))


ASCII_NUMBER = re.compile(r"[0-9]{1,19}")  # what Android parses: a decimal of at most 64 bits


def _int(attr: Attribute | None, what: str, default: int | None = None) -> int | None:
    if attr is None:
        return default
    if attr.type in (TYPE_INT_DEC, TYPE_INT_HEX):
        return attr.data
    text = attr.string.strip() if attr.string is not None else ""
    if ASCII_NUMBER.fullmatch(text):  # str.isdigit() takes "²" and int() refuses it, or 5,000 digits
        return int(text)
    if what in ("minSdkVersion", "targetSdkVersion") and attr.string:
        # A preview codename ("Tiramisu") means "the newest platform": no shipped device has it.
        return 10_000
    raise AxmlError(f"{what} is not a number")


def _by_id(element: Element, resource_id: int) -> Attribute | None:
    return next((a for a in element.attributes if a.resource_id == resource_id), None)


def codename_level(codename: str) -> int:
    """apksig's API level for a preview codename (its first letter); AxmlError when unknown."""
    first = codename[:1]
    if not ("A" <= first <= "Z"):
        raise AxmlError(f"unsupported codename {codename!r} in minSdkVersion")
    if first in CODENAME_LEVELS:
        return CODENAME_LEVELS[first]
    older = [c for c in CODENAME_LEVELS if c < first]
    if not older:
        return 1
    newest = max(older)
    return CODENAME_LEVELS[newest] + (ord(first) - ord(newest))


def _signed(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


def signature_sdks(elements: list[Element]) -> tuple[int, int, int]:
    """(minSdk, targetSdk, targetSandboxVersion) as apksig reads them for verification: minSdk
    is the largest android:minSdkVersion of the <uses-sdk> children of <manifest> (1 without
    any), a codename counts by its first letter; targetSdk is the first <uses-sdk> integer
    android:targetSdkVersion, else minSdk; the sandbox version is <manifest>'s integer value, else 1.
    Attributes count by resource id only. AxmlError for a minSdkVersion apksig cannot read."""
    min_sdk = 1
    for e in elements:
        if e.name != "uses-sdk" or e.depth != 1:
            continue
        value = 1
        a = _by_id(e, ATTR_MIN_SDK)
        if a is not None:
            if a.type in (TYPE_INT_DEC, TYPE_INT_HEX):
                value = _signed(a.data)
            elif a.type == TYPE_STRING and a.string is not None:
                value = codename_level(a.string)
            else:
                raise AxmlError("minSdkVersion has a value type apksigner cannot read")
        min_sdk = max(min_sdk, value)
    target = min_sdk
    for e in elements:
        if e.name == "uses-sdk":
            a = _by_id(e, ATTR_TARGET_SDK)
            if a is not None:
                if a.type in (TYPE_INT_DEC, TYPE_INT_HEX):
                    target = _signed(a.data)
                break
    sandbox = 1
    for e in elements:
        if e.name == "manifest":
            a = _by_id(e, ATTR_TARGET_SANDBOX)
            if a is not None:
                if a.type in (TYPE_INT_DEC, TYPE_INT_HEX):
                    sandbox = _signed(a.data)
                break
    return min_sdk, target, sandbox


def parse_manifest(data: bytes) -> ManifestInfo:
    """The store-relevant facts of a compiled AndroidManifest.xml."""
    elements = parse_elements(data)
    if not elements or elements[0].name != "manifest":
        raise AxmlError("the root element is not <manifest>")
    root = elements[0]
    package = root.attr(-1, "package")
    if package is None or not package.string:
        raise AxmlError("<manifest> has no package attribute")
    code = _int(root.attr(ATTR_VERSION_CODE, "versionCode"), "versionCode")
    if code is None:
        raise AxmlError("<manifest> has no android:versionCode")
    major = _int(root.attr(ATTR_VERSION_CODE_MAJOR, "versionCodeMajor"), "versionCodeMajor", 0) or 0
    name_attr = root.attr(ATTR_VERSION_NAME, "versionName")
    version_name = "" if name_attr is None else str(name_attr.value)
    sdk = next((e for e in elements if e.name == "uses-sdk" and e.depth == 1), None)
    min_sdk = _int(sdk.attr(ATTR_MIN_SDK, "minSdkVersion"), "minSdkVersion", 1) if sdk else 1
    target = _int(sdk.attr(ATTR_TARGET_SDK, "targetSdkVersion"), "targetSdkVersion") if sdk else None
    app = next((e for e in elements if e.name == "application" and e.depth == 1), None)
    debug_attr = app.attr(ATTR_DEBUGGABLE, "debuggable") if app else None
    debuggable = bool(debug_attr is not None and debug_attr.type == TYPE_INT_BOOLEAN and debug_attr.data)
    permissions = []
    for e in elements:
        if e.name in PERMISSION_ELEMENTS and e.depth == 1:
            perm = e.attr(ATTR_NAME, "name")
            if perm is not None and perm.string:
                permissions.append(perm.string)
    signature_min, signature_target, sandbox = signature_sdks(elements)
    return ManifestInfo(
        package=package.string,
        version_code=(major << 32) | (code & 0xFFFFFFFF),
        version_name=version_name,
        min_sdk=min_sdk or 1,
        target_sdk=target,
        debuggable=debuggable,
        permissions=tuple(sorted(set(permissions))),
        signature_min_sdk=signature_min,
        signature_target_sdk=signature_target,
        target_sandbox=sandbox,
    )

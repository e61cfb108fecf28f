"""JAR manifests (``META-INF/MANIFEST.MF``, ``.SF`` files), read as Android's verifier reads them.

The rules are apksig's ``ManifestParser``: lines end with CR LF, LF or CR; a line starting with
one space continues the attribute before it (the space dropped); an empty line ends a section;
an attribute is ``name: value`` split at the first colon followed by a space (no such colon: the
whole line is the name, the value is empty), decoded as UTF-8 with U+FFFD for malformed bytes;
a section is named when its first attribute is ``Name`` (any case); attributes are looked up by
name ignoring case, the first one wins. Each section keeps the byte range it was read from,
because the .SF file signs those bytes.

Unlike apksig this parser is linear in the input and bounded: continuation lines are collected
and joined once (apksig, and the reader Depot had before, concatenate on every line, which is
quadratic in the length of an attribute), a physical and a logical line may be at most
:data:`MAX_LINE_BYTES` long, a file at most :data:`MAX_LINES` lines, and only the attributes
that verification looks at are kept, so memory stays proportional to what is needed. Past a
cap the parser raises :class:`ApkLimitError` at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from builder.portal.errors import ApkLimitError

MAX_LINE_BYTES = 128 * 1024  # a physical line, and an attribute joined from its continuations
MAX_LINES = 400_000  # a manifest of 65,535 entries (the most a ZIP without Zip64 has) needs ~300,000
LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")

# Attribute names verification reads (compared with :func:`fold`); digest attributes are
# recognised by their suffix.
KEPT_NAMES = frozenset(
    {"name", "digest-algorithms", "signature-version", "x-android-apk-signed", "created-by"}
)
KEPT_SUFFIXES = ("-digest", "-digest-manifest", "-digest-manifest-main-attributes")


def _fold_char(c: str) -> str:
    up = c.upper()
    if len(up) != 1:
        up = c
    low = up.lower()
    return low if len(low) == 1 else up


def fold(name: str) -> str:
    """The key under which Java's ``equalsIgnoreCase`` finds ``name`` (char by char)."""
    if name.isascii():
        return name.lower()
    return "".join(_fold_char(c) for c in name)


@dataclass
class Section:
    start: int  # byte offset of the section's first line
    size: int  # bytes up to and including the empty line that ends it
    name: str | None
    attrs: dict[str, str] = field(default_factory=dict)  # fold(name) → first value

    def get(self, name: str) -> str | None:
        return self.attrs.get(fold(name))


def _lines(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(start, content, end) of every physical line, end = after its line break."""
    # a file has at least as many lines as it has CRs or LFs: refuse a flood before the loop
    if max(data.count(b"\n"), data.count(b"\r")) > MAX_LINES:
        raise ApkLimitError(f"the manifest has more than {MAX_LINES} lines")
    for count, match in enumerate(LINE.finditer(data), start=1):
        start, end = match.span()
        if start == end:  # the empty match at the very end
            return
        content = match.group().rstrip(b"\r\n")
        if count > MAX_LINES:
            raise ApkLimitError(f"the manifest has more than {MAX_LINES} lines")
        if len(content) > MAX_LINE_BYTES:
            raise ApkLimitError(f"a manifest line is longer than {MAX_LINE_BYTES} bytes")
        yield start, content, end


def sections(data: bytes, what: str = "manifest") -> Iterator[Section]:
    """Every section of the manifest ``data``, the main section first."""
    section: Section | None = None
    pieces: list[bytes] = []
    length = 0
    first_attr = True

    def finish_attribute() -> None:
        nonlocal pieces, length, first_attr
        if not pieces or section is None:
            return
        text = b"".join(pieces).decode("utf-8", errors="replace")
        pieces, length = [], 0
        name, sep, value = text.partition(": ")
        if not sep:
            name, value = text, ""
        key = fold(name)
        if first_attr:
            first_attr = False
            if key == "name":
                section.name = value
        if key not in section.attrs and (key in KEPT_NAMES or key.endswith(KEPT_SUFFIXES)):
            section.attrs[key] = value

    for start, content, end in _lines(data):
        if not content:
            if section is not None:
                finish_attribute()
                section.size = end - section.start
                yield section
                section = None
            continue
        if section is None:
            section = Section(start, 0, None)
            first_attr = True
            pieces, length = [content], len(content)  # a leading space is kept here, as in apksig
            continue
        if content[0:1] == b" ":
            length += len(content) - 1
            if length > MAX_LINE_BYTES:
                raise ApkLimitError(f"an attribute of the {what} is longer than {MAX_LINE_BYTES} bytes")
            pieces.append(content[1:])
            continue
        finish_attribute()
        pieces, length = [content], len(content)
    if section is not None:
        finish_attribute()
        section.size = len(data) - section.start
        yield section


@dataclass
class Manifest:
    main: Section
    named: list[Section]  # every section after the main one, in order (named or not)


def parse(data: bytes, max_sections: int, what: str = "manifest") -> Manifest:
    """The main section and the others; ApkLimitError past ``max_sections`` sections."""
    found = sections(data, what)
    main = next(found, None) or Section(0, 0, None)
    rest = []
    for section in found:
        rest.append(section)
        if len(rest) > max_sections:
            raise ApkLimitError(f"the {what} has more than {max_sections} sections")
    return Manifest(main, rest)

"""Qt Application Manager package sources written by code, and their packing.

The equivalents of ``../shared/fixtures/qt-packages`` (see its README.md): the two test package
sources of qtapplicationmanager (``hello-world.red``, ``com.pelagicore.test``) and the three
manifest examples (``manifests/full``, ``legacy``, ``minimal``). Each :class:`PackageSource`
has an ``info.yaml`` written here in the same shape and with the same fields as the original,
an icon drawn as PNG bytes (zlib + struct) of the same size, and the payload files the
original's packaging adds, so a test can run on these without the shared folder and run
the same checks on the real files when they are there.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from builder.qt.pack import Entry, digest_of, tar_bytes, yaml_docs

# -- PNG ------------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, pixel=lambda x, y: (0, 0, 0, 0)) -> bytes:
    """An 8-bit RGBA PNG of ``width`` x ``height``; ``pixel(x, y)`` gives each (r, g, b, a)."""
    rows = b"".join(b"\0" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # depth 8, colour type RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows, 9))
        + _png_chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature, chunk CRCs and pixel data size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack_from(">IIBB", chunks[b"IHDR"])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + width * channels * depth // 8)
    assert b"IEND" in chunks
    return width, height


def _disc(size: int, rgb: tuple[int, int, int]):
    centre, radius = (size - 1) / 2, size * 0.45

    def pixel(x: int, y: int) -> tuple[int, int, int, int]:
        inside = (x - centre) ** 2 + (y - centre) ** 2 <= radius**2
        return (*rgb, 255) if inside else (0, 0, 0, 0)

    return pixel


# -- the sources ------------------------------------------------------------------------------------------

HELLO_WORLD_RED_INFO = """\
formatVersion: 1
formatType: am-package
---
# the "hello-world.red" example app, updated: a red variant
id: 'hello-world.red'
icon: 'icon.png'
name:
  en: 'Hello Updated Red'
version: red
applications:
  - id: 'hello-world.red'
    runtime: 'qml'
    code: 'main.qml'
"""

HELLO_WORLD_RED_QML = """\
import QtQuick 2.11
import QtApplicationManager.Application 2.0

ApplicationManagerWindow {
    color: "red"
    Text {
        anchors.centerIn: parent
        text: "Hello, updated red world"
    }
}
"""

COM_PELAGICORE_TEST_INFO = """\
formatVersion: 1
formatType: am-package
---
id: "com.pelagicore.test"
icon: "icon.png"
name: { "en": "Hello", "de": "Hallo" }
version: "1.0"
categories: [ "test-category" ]
applications:
  - id: "com.pelagicore.test"
    runtime: "native"
    code: "test"
"""

FULL_INFO = """\
formatVersion: 1
formatType: am-package
---
id: 'full'
icon: 'full.png'
version: 'v1'
name: { en: 'pkg.name.en', de: 'pkg.name.de' }
description: { en: 'pkg.desc.en', de: 'pkg.desc.de' }
categories: [ pkg.cat.1, pkg.cat.2 ]
applications:
  - id: 'full.app.1'
    code: 'app1.qml'
    runtime: 'qml'
    runtimeParameters:
      loadDummyData: true
      importPaths: [ a, b ]
      resources: [ c, d ]
      pluginPaths: [ e, f ]
      environmentVariables: { foo: bar }
    supportsApplicationInterface: yes
    capabilities: [ app1.cap ]
    opengl: { desktopProfile: core, esMajorVersion: 3, esMinorVersion: 2 }
    applicationProperties:
      protected: { custom.app1.key: 42 }
      private: { not: visible }
    logging: { dlt: { id: app1.dlt.id, description: "app1.dlt.desc" } }
    icon: 'app1.png'
    name: { en: 'app1.name.en', de: 'app1.name.de' }
    description: { en: 'app1.desc.en', de: 'app1.desc.de' }
    categories: [ app1.cat.1, app1.cat.2 ]
  - id: 'full.app.2'
    code: 'app2.exe'
    runtime: 'native'
    runtimeParameters:
      arguments: [ "-3", "-4" ]
      environmentVariables: { bar: foo }
    supportsApplicationInterface: yes
    capabilities: [ app2.cap.1, app2.cap.2 ]
    opengl: { desktopProfile: compatibility, esMajorVersion: 2, esMinorVersion: 0 }
    applicationProperties:
      protected: { custom.app2.key: "custom.app2.value" }
    logging: { dlt: { id: app2.dlt.id, description: "app2.dlt.desc" } }
    icon: 'app2.png'
    name: { en: 'app2.name.en', de: 'app2.name.de' }
    description: { en: 'app2.desc.en', de: 'app2.desc.de' }
    categories: [ app2.cat.1, app2.cat.2 ]
intents:
  - id: full.int.1
    handlingApplicationId: full.app.1
    visibility: private
    requiredCapabilities: [ 'int1.cap.1', 'int1.cap.2' ]
    parameterMatch: { mimeType: "^image/.*\\\\.png$" }
    icon: 'int1.png'
    name: { en: 'int1.name.en', de: 'int1.name.de' }
    description: { en: 'int1.desc.en', de: 'int1.desc.de' }
    categories: [ int1.cat.1, int1.cat.2 ]
  - id: full.int.2
    handlingApplicationId: full.app.2
    visibility: public
    requiredCapabilities: [ 'int2.cap.1', 'int2.cap.2' ]
    parameterMatch: { test: "foo" }
    icon: 'int2.png'
    name: { en: 'int2.name.en', de: 'int2.name.de' }
    description: { en: 'int2.desc.en', de: 'int2.desc.de' }
    categories: [ int2.cat.1, int2.cat.2 ]
"""

LEGACY_INFO = """\
formatVersion: 1
formatType: am-application
---
# an old-style manifest: the package is the application
id: 'legacy'
icon: 'icon.png'
code: 'legacy.qml'
runtime: 'qml'
runtimeParameters: { loadDummyData: true }
name: { en: 'legacy.en', de: 'legacy.de' }
version: v1
mimeTypes: [ "x-scheme-handler/mailto", "text/plain" ]
capabilities: [ "cameraAccess", "locationAccess" ]
categories: [ "foo", "bar" ]
"""

MINIMAL_INFO = """\
formatVersion: 1
formatType: am-package
---
id: 'minimal'
applications:
  - { id: 'minimal.app', code: 'minimal.qml', runtime: 'qml' }
"""


@dataclass(frozen=True)
class PackageSource:
    """One package source and what the validator must make of it once packed."""

    folder: str  # its folder under ../shared/fixtures/qt-packages
    info: bytes
    icon: bytes
    payload: list[Entry]  # the files after info.yaml and icon.png, as the packaging adds them
    header_version: int = 2
    expected: dict[str, object] = field(default_factory=dict)  # QtPackage fields
    rejected: str | None = None  # the validator's message, when it must refuse the package

    @property
    def package_id(self) -> str:
        return self.folder.rsplit("/", 1)[-1]


SOURCES: dict[str, PackageSource] = {
    s.folder: s
    for s in (
        PackageSource(
            "hello-world.red",
            HELLO_WORLD_RED_INFO.encode(),
            png(92, 92, _disc(92, (220, 30, 30))),
            [("main.qml", HELLO_WORLD_RED_QML.encode())],
            expected={"id": "hello-world.red", "name": "Hello Updated Red", "version": "red", "pkgformat": 2},
        ),
        PackageSource(
            "com.pelagicore.test",
            COM_PELAGICORE_TEST_INFO.encode(),
            png(32, 32, _disc(32, (40, 90, 200))),
            # what qtapplicationmanager's create-test-packages.sh adds beside info.yaml and icon.png
            [("test", b"test\n"), ("t\u00e4st", b"test with umlaut\n")],
            expected={"id": "com.pelagicore.test", "name": "Hello", "version": "1.0", "pkgformat": 2},
        ),
        PackageSource(
            "manifests/full",
            FULL_INFO.encode(),
            png(16, 16, _disc(16, (0, 160, 0))),
            [("app1.qml", b"import QtQuick 2.0\nItem {}\n"), ("app2.exe", b"MZ")],
            expected={"id": "full", "name": "pkg.name.en", "version": "v1", "pkgformat": 2},
        ),
        PackageSource(
            "manifests/legacy",
            LEGACY_INFO.encode(),
            png(16, 16, _disc(16, (120, 120, 120))),
            [("legacy.qml", b"import QtQuick 2.0\nItem {}\n")],
            header_version=1,
            expected={"id": "legacy", "name": "legacy.en", "version": "v1", "pkgformat": 1},
        ),
        PackageSource(
            "manifests/minimal",
            MINIMAL_INFO.encode(),
            png(1, 1),
            [("minimal.qml", b"import QtQuick 2.0\nItem {}\n")],
            rejected="metadata name is missing in the info part",
        ),
    )
}


def pack_source(
    source: PackageSource,
    *,
    info: bytes | None = None,
    icon: bytes | None = None,
    payload: list[Entry] | None = None,
) -> bytes:
    """The package appman-packager would make of ``source`` (header, info.yaml, icon.png, the
    payload, a footer with the digest); ``info``/``icon``/``payload`` replace the source's own,
    to pack the real fixture files the same way."""
    id_key = "packageId" if source.header_version == 2 else "applicationId"
    header = yaml_docs(
        {"formatType": "am-package-header", "formatVersion": source.header_version},
        {id_key: source.package_id, "diskSpaceUsed": 1234},
    )
    entries: list[Entry] = [
        ("--PACKAGE-HEADER--", header),
        ("info.yaml", source.info if info is None else info),
        ("icon.png", source.icon if icon is None else icon),
        *(source.payload if payload is None else payload),
    ]
    footer = yaml_docs(
        {"formatType": "am-package-footer", "formatVersion": source.header_version},
        {"digest": digest_of(entries)},
    )
    return tar_bytes([*entries, ("--PACKAGE-FOOTER--", footer)])


def pack_fixture_folder(source: PackageSource, folder: Path) -> bytes:
    """The same package made from the real files in ``folder`` (../shared/fixtures/qt-packages/...):
    its info.yaml, its icon.png when it has one (else the generated icon), and its payload
    files, or the generated payload when the original adds files at packaging time."""
    real_icon = folder / "icon.png"
    files = sorted(p for p in folder.iterdir() if p.name not in ("info.yaml", "icon.png"))
    payload = [(p.name, p.read_bytes()) for p in files] if files else None
    return pack_source(
        source,
        info=(folder / "info.yaml").read_bytes(),
        icon=real_icon.read_bytes() if real_icon.exists() else None,
        payload=payload,
    )

#!/usr/bin/env python3
"""Generate the demo store's Qt packages in repo/apps/ (reproducibly: same bytes every run).

    .venv/bin/python scripts/demo/qt.py [--repo repo]

Three packages, as the Qt deployment server's acceptance checks use them:

* com.example.plain   QML only (architecture "All"), category Entertainment
* com.example.tagged  QML only, tags qt:5.15 and build_target:desktop, conflicts neptune
* com.example.native  with an x86-64 ELF library (architecture x86_64-little_endian-64-elf), Tools

Each gets a ``<file>.toml`` sidecar with its category, vendor, descriptions and purchase id.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from builder.atomic import atomic_write
from builder.qt.pack import pack_package
from builder.qt.package import default_purchase_id, variant_key
from builder.qt.png import encode_png


def square_icon(rgb: tuple[int, int, int], size: int = 48) -> bytes:
    """A filled rounded-ish square in one colour."""
    pixel, clear = bytes([*rgb, 255]), b"\0\0\0\0"
    rows = []
    for y in range(size):
        row = b""
        for x in range(size):
            corner = min(x, size - 1 - x) + min(y, size - 1 - y) < 6
            row += clear if corner else pixel
        rows.append(row)
    return encode_png(size, size, rows)


def x86_64_elf_library() -> bytes:
    """The 64-byte header of an x86-64 ELF shared object: enough for any architecture detector."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, 0, 0, 64, 0, 0, 64, 0, 0)


QML = (
    b'import QtQuick 2.0\n\nRectangle {\n    color: "%s"\n'
    b'    Text { anchors.centerIn: parent; text: "%s" }\n}\n'
)

DEMO = [
    {
        "file": "com.example.plain.appkg",
        "id": "com.example.plain",
        "package": dict(
            name={"en": "Plain App", "de": "Einfache App"},
            version="1.0.0",
            icon=square_icon((0x41, 0xCD, 0x52)),
            files=[("main.qml", QML % (b"green", b"Plain App"))],
        ),
        "arch": "All",
        "tags_hash": "",
        "sidecar": {
            "category": "Entertainment",
            "vendor": "Qt",
            "brief_description": "A QML-only app that runs on every architecture.",
            "updated": "2026-09-14",
            "description": "<p>The <b>plain</b> demo app: one QML file, no native code.</p>",
        },
    },
    {
        "file": "com.example.tagged.appkg",
        "id": "com.example.tagged",
        "package": dict(
            name={"en": "Tagged App"},
            version="2.1",
            icon=square_icon((0x21, 0x96, 0xF3)),
            files=[("qml/", None), ("qml/main.qml", QML % (b"blue", b"Tagged App"))],
            tags=["qt:5.15", "build_target:desktop"],
            conflicts=["neptune"],
        ),
        "arch": "All",
        "tags_hash": "build_target:desktop,qt:5.15neptune",
        "sidecar": {
            "category": "Entertainment",
            "vendor": "Qt",
            "brief_description": "Shown only to desktop builds of Qt 5.15 or newer 5.15.x.",
            "updated": "2026-11-02",
            "description": "<p>Needs the tags <code>qt:5.15</code> and "
            "<code>build_target:desktop</code>.</p>",
        },
    },
    {
        "file": "com.example.native.appkg",
        "id": "com.example.native",
        "package": dict(
            name={"en": "Native App"},
            version="0.9.3",
            icon=square_icon((0xFF, 0x98, 0x00)),
            files=[
                ("main.qml", QML % (b"orange", b"Native App")),
                ("lib/", None),
                ("lib/libfoo.so", x86_64_elf_library()),
            ],
        ),
        "arch": "x86_64-little_endian-64-elf",
        "tags_hash": "",
        "sidecar": {
            "category": "Tools",
            "vendor": "Qt",
            "brief_description": "Ships a native x86-64 library.",
            "updated": "2026-10-20",
            "description": "Native demo app for x86-64 Linux devices.",
        },
    },
]


def toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2] / "repo")
    args = parser.parse_args()
    apps = args.repo / "apps"
    for demo in DEMO:
        target = apps / demo["file"]
        atomic_write(target, pack_package(demo["id"], **demo["package"]))
        sidecar = dict(demo["sidecar"])
        sidecar["purchase_id"] = default_purchase_id(variant_key(demo["id"], demo["arch"], demo["tags_hash"]))
        lines = [f"{k} = {toml_string(v)}" for k, v in sidecar.items()]
        atomic_write(target.with_name(target.name + ".toml"), ("\n".join(lines) + "\n").encode())
        print(f"wrote {target}")


if __name__ == "__main__":
    main()

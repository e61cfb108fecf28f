"""Qt packages cannot make the validator read or build more than their metadata is worth: the
icon is read under a cap (a 200 MiB icon of zeros was a 204 KB upload costing +214 MiB), and
YAML anchors and aliases are refused (nested aliases grow exponentially once anything walks the
result)."""

from __future__ import annotations

import tracemalloc

import pytest

from builder.qt.pack import package_entries, tar_bytes
from builder.qt.package import ICON_LIMIT, PackageError, validate_package

LAUGHS = b"""formatType: am-package
formatVersion: 1
---
id: com.example.laughs
icon: icon.png
version: "1.0"
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
name: {en: *f}
applications: [{id: com.example.laughs, code: main.qml, runtime: qml}]
"""


def test_a_huge_icon_is_refused_without_reading_it(tmp_path) -> None:
    package = tmp_path / "big-icon.appkg"
    package.write_bytes(tar_bytes(package_entries("com.example.bigicon", icon=bytes(64 << 20))))
    assert package.stat().st_size < 1 << 20  # zeros: a small upload
    tracemalloc.start()
    try:
        with pytest.raises(PackageError, match=f"icon.png: larger than {ICON_LIMIT} bytes"):
            validate_package(package)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_yaml_aliases_are_refused(tmp_path) -> None:
    entries = package_entries("com.example.laughs")
    entries = [(name, LAUGHS if name == "info.yaml" else data) for name, data in entries]
    package = tmp_path / "laughs.appkg"
    package.write_bytes(tar_bytes(entries))
    with pytest.raises(PackageError, match="anchors and aliases are not allowed"):
        validate_package(package)

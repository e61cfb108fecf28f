"""Sidecars: the ``<package>.toml`` file beside a package, holding what the package cannot carry.

One reader and one writer, so every runtime writes values :func:`read_sidecar` reads back with
their types. The keys each reader accepts are declared per kind (module, firmware, qt-app,
ota-build, apk) in :data:`builder.settings.SIDECARS`: a reader passes its kind and gets the values
checked against it, so a wrong type or an unknown key is a FormatError naming the file and key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.atomic import atomic_write
from builder.errors import FormatError
from builder.settings import validate_sidecar
from builder.tomlwrite import toml_document

SIDECAR_SUFFIX = ".toml"


def read_sidecar(package: Path, kind: str | None = None, *, defaults: bool = True) -> dict[str, Any]:
    """The ``<package>.toml`` sidecar beside ``package``, or {} when there is none.

    With ``kind`` (a key of :data:`builder.settings.SIDECARS`) the values are checked against
    that kind's declared keys, and with ``defaults`` every declared key is present. Without it
    the file comes back as written, every key kept: what a runtime reads to change one key and
    write the rest back."""
    path = package.with_name(package.name + SIDECAR_SUFFIX)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"sidecar {path.name}: {exc}") from exc
    if kind is None:
        return data
    return validate_sidecar(kind, data, path.name, defaults=defaults)


def write_sidecar(
    package: Path, fields: Mapping[str, Any], comment: str = "", kind: str | None = None
) -> None:
    """Replace the ``<package>.toml`` sidecar with ``fields`` (temp, fsync, rename): the one
    writer, so every runtime writes values :func:`read_sidecar` reads back with their types.
    With ``kind``, fields the kind's reader would refuse raise FormatError and nothing is written."""
    text = toml_document(fields, comment)
    parsed = tomllib.loads(text)  # never write a sidecar the reader cannot read back
    if kind is not None:
        validate_sidecar(kind, parsed, package.name + SIDECAR_SUFFIX)
    atomic_write(package.with_name(package.name + SIDECAR_SUFFIX), text.encode())

"""Sidecars: the ``<package>.toml`` file beside a package, holding what the package cannot carry.

One reader and one writer, so every runtime writes values :func:`read_sidecar` reads back with
their types; the keys each dialect accepts are declared in :mod:`builder.settings`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.atomic import atomic_write
from builder.errors import FormatError
from builder.tomlwrite import toml_document

SIDECAR_SUFFIX = ".toml"


def read_sidecar(package: Path) -> dict[str, Any]:
    """The ``<package>.toml`` sidecar beside ``package``, or {} when there is none."""
    path = package.with_name(package.name + SIDECAR_SUFFIX)
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"sidecar {path.name}: {exc}") from exc


def write_sidecar(package: Path, fields: Mapping[str, Any], comment: str = "") -> None:
    """Replace the ``<package>.toml`` sidecar with ``fields`` (temp, fsync, rename): the one
    writer, so every runtime writes values :func:`read_sidecar` reads back with their types."""
    text = toml_document(fields, comment)
    tomllib.loads(text)  # never write a sidecar the reader cannot read back
    atomic_write(package.with_name(package.name + SIDECAR_SUFFIX), text.encode())

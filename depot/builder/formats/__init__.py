"""Package-format readers: each turns one file in repo/ into catalog records.

A reader is a small object with a ``name``, a ``matches(relpath)`` test, and a
``read(source)`` method that returns records or raises :class:`FormatError` with a reason a
maintainer can act on. Adding a format is adding one module and one line in :func:`readers`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from depot.atomic import atomic_write
from depot.builder.model import Record, StoreSettings
from depot.builder.tomlwrite import toml_document

SIDECAR_SUFFIX = ".toml"


class FormatError(Exception):
    """A file cannot be published; the message says why."""


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


@dataclass(frozen=True)
class Source:
    """One input file as a reader sees it."""

    repo: Path
    relpath: str  # POSIX, relative to repo
    settings: StoreSettings
    file: Path | None = None  # set by `depot check` for a file that is not in a repo

    @property
    def path(self) -> Path:
        return self.file if self.file is not None else self.repo / self.relpath

    @property
    def filename(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]

    def sidecar(self) -> dict[str, Any]:
        """The package's ``<file>.toml`` sidecar, or {} when there is none."""
        return read_sidecar(self.path)


class Reader(Protocol):
    name: str

    def matches(self, relpath: str) -> bool: ...

    def sidecars(self, relpath: str) -> list[str]:
        """Other files whose content feeds this file's records (their stat joins the cache key)."""
        ...

    def settings_key(self, settings: StoreSettings) -> str:
        """The part of the settings this reader depends on (it joins the cache key)."""
        ...

    def read(self, source: Source) -> list[Record]: ...


def readers() -> list[Reader]:
    from depot.builder.formats.apk import ApkReader
    from depot.builder.formats.firmware import FirmwareReader
    from depot.builder.formats.module import ModuleReader
    from depot.builder.formats.ota import OtaReader
    from depot.builder.formats.qt_package import QtPackageReader

    return [ModuleReader(), FirmwareReader(), OtaReader(), QtPackageReader(), ApkReader()]

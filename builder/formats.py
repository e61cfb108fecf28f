"""Package-format readers: each turns one file in repo/ into catalog records.

A reader is a small object with a ``name``, a ``matches(relpath)`` test, and a
``read(source)`` method that returns records or raises :class:`~builder.errors.FormatError` with a
reason a maintainer can act on. A reader lives in its dialect's subpackage; adding a format is
one module there and one line in :func:`builder.registry.readers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from builder.model import Record, StoreSettings
from builder.sidecars import read_sidecar


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

    def sidecar(self, kind: str, defaults: bool = True) -> dict[str, Any]:
        """The package's ``<file>.toml`` sidecar checked as a ``kind`` sidecar
        (:data:`builder.settings.SIDECARS`), defaults filled in unless ``defaults`` is false;
        FormatError names the sidecar and the key that is wrong."""
        return read_sidecar(self.path, kind, defaults=defaults)


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

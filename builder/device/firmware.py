"""Firmware images: ``repo/firmware/<name>.<version>.<platform>.bin``.

Firmware is opaque bytes for a flasher, so the file name carries its identity; an optional
sidecar ``<file>.toml`` may add ``description``. An empty file is refused: no flasher wants it.
"""

from __future__ import annotations

import re

from builder.errors import FormatError
from builder.formats import Source
from builder.hashing import sha256_file
from builder.model import Blob, Firmware, Record, Rollout, StoreSettings
from builder.sidecars import SIDECAR_SUFFIX

FILENAME = re.compile(
    r"^(?P<name>[A-Za-z0-9_-]+)\.(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]*)\.(?P<platform>[A-Za-z0-9_-]+)\.bin$"
)


class FirmwareReader:
    name = "firmware"

    def matches(self, relpath: str) -> bool:
        return relpath.startswith("firmware/") and not relpath.endswith(SIDECAR_SUFFIX)

    def sidecars(self, relpath: str) -> list[str]:
        return [relpath + SIDECAR_SUFFIX]

    def settings_key(self, settings: StoreSettings) -> str:
        return ""

    def read(self, source: Source) -> list[Record]:
        if "/" in source.relpath[len("firmware/") :]:
            raise FormatError("firmware lives directly in firmware/, not in sub-folders")
        match = FILENAME.match(source.filename)
        if not match:
            raise FormatError(f"file name {source.filename!r} is not <name>.<version>.<platform>.bin")
        size, sha256 = sha256_file(source.path)
        if size == 0:
            raise FormatError("empty firmware image")
        sidecar = source.sidecar("firmware")
        return [
            Firmware(
                name=match["name"],
                version=match["version"],
                platform=match["platform"],
                blob=Blob(source.relpath, size, sha256),
                description=sidecar["description"],
                rollout=Rollout.from_sidecar(sidecar),
            )
        ]

"""``depot check``: run the builder's readers on loose files and say what is wrong with each."""

from __future__ import annotations

from pathlib import Path

from builder.errors import FormatError
from builder.formats import Source
from builder.model import StoreSettings
from builder.registry import readers
from builder.settings import DEFAULT_OTA_PATTERN

# Where a file of each kind would live in repo/, which is how readers recognise it.
FOLDER_BY_SUFFIX = {
    ".tar.gz": "modules",
    ".bin": "firmware",
    ".appkg": "apps",
    ".ampkg": "apps",
    ".apk": "android",
}


def check_file(path: Path, settings: StoreSettings | None = None) -> str | None:
    """None when ``path`` would be published, else the reason it would be skipped."""
    settings = settings or StoreSettings(ota_filename_pattern=DEFAULT_OTA_PATTERN)
    if not path.is_file():
        return "no such file"
    folder = next((f for s, f in FOLDER_BY_SUFFIX.items() if path.name.endswith(s)), None)
    if folder is None:
        return "not a package type Depot reads (" + ", ".join(FOLDER_BY_SUFFIX) + ")"
    relpath = f"{folder}/{path.name}"
    reader = next((r for r in readers() if r.matches(relpath)), None)
    if reader is None:
        return "no reader for this file"
    try:
        reader.read(Source(path.parent, relpath, settings, file=path))
    except FormatError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return None

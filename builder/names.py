"""Package file names: the one form a store publishes and a device reads back.

The builder's module reader and the device agent both parse ``<name>.<version>.<platform>.tar.gz``
and look for the same manifest, so the rule lives here, in the floor both may import, and not in
the device dialect the agent may not import.
"""

from __future__ import annotations

import re

from builder.errors import FormatError

MANIFEST = "module.toml"
FILENAME = re.compile(
    r"^(?P<name>[A-Za-z0-9_-]+)\.(?P<version>[A-Za-z0-9][A-Za-z0-9._+-]*)\.(?P<platform>[A-Za-z0-9_-]+)\.tar\.gz$"
)


def parse_module_filename(filename: str) -> tuple[str, str, str]:
    """``ax.2.6.4.pi64.tar.gz`` → ``("ax", "2.6.4", "pi64")``; FormatError when it is not one."""
    match = FILENAME.match(filename)
    if not match:
        raise FormatError(f"file name {filename!r} is not <name>.<version>.<platform>.tar.gz")
    return match["name"], match["version"], match["platform"]

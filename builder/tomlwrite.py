"""Turn the values ``tomllib`` reads back into TOML text, so a sidecar that is read, changed and
written again keeps every value a maintainer typed (lists, dates, nested tables) with its type."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def toml_string(value: str) -> str:
    """A TOML basic string; control characters are escaped because TOML forbids them raw."""
    out = []
    for c in value:
        if c in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[c])
        elif c < " " or c == "\x7f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if BARE_KEY.match(key) else toml_string(key)


def toml_value(value: Any) -> str:
    """One value as TOML; raises TypeError for a type TOML has no form for."""
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # repr of inf/nan is TOML's inf/nan
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_document(fields: Mapping[str, Any], comment: str = "") -> str:
    """A flat TOML document: optional ``#`` comment lines, then one ``key = value`` per field."""
    lines = [f"# {line}".rstrip() + "\n" for line in comment.splitlines()]
    lines += [f"{toml_key(k)} = {toml_value(v)}\n" for k, v in fields.items()]
    return "".join(lines)

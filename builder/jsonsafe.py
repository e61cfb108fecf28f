"""JSON from untrusted bytes: nesting checked in one linear pass before the standard parser,
which recurses (a document nested 30,000 deep ends in RecursionError). Floor code: the runtime's
request bodies and the device agent's API both parse through it.
"""

from __future__ import annotations

import json
from typing import Any

from builder.errors import DepotError

MAX_DEPTH = 32


class JsonError(DepotError, ValueError):
    """Not JSON, or nested deeper than allowed."""


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, in one pass; strings are
    skipped, so brackets inside them do not count."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def loads_json(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    if nesting_depth(raw) > max_depth:
        raise JsonError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise JsonError(str(exc)) from exc

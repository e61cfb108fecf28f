"""The two built-in category icons of the Qt dialect, drawn as PNG bytes without an image library.

``ALL_ICON`` stands for the synthetic "All" category (a 2x2 grid of tiles); ``ERROR_ICON`` is what
``/category/icon`` answers for a category without an icon or an unknown id (a crossed square),
as the reference answers with its "Error" image instead of a 404.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(width: int, height: int, rgba_rows: list[bytes]) -> bytes:
    """An 8-bit RGBA PNG from ``height`` rows of ``width*4`` bytes."""
    raw = b"".join(b"\0" + row for row in rgba_rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _draw(size: int, inside: Callable[[int, int], bool]) -> bytes:
    white, clear = b"\xff\xff\xff\xff", b"\0\0\0\0"
    rows = [b"".join(white if inside(x, y) else clear for x in range(size)) for y in range(size)]
    return encode_png(size, size, rows)


def _grid(x: int, y: int) -> bool:
    return all(3 <= v <= 28 and not 14 <= v <= 17 for v in (x, y))


def _cross(x: int, y: int) -> bool:
    border = x in (2, 3, 28, 29) or y in (2, 3, 28, 29)
    in_box = 2 <= x <= 29 and 2 <= y <= 29
    diagonal = abs(x - y) <= 1 or abs(x + y - 31) <= 1
    return in_box and (border or diagonal)


ALL_ICON = _draw(32, _grid)
ERROR_ICON = _draw(32, _cross)

"""A minimal DER reader: just enough ASN.1 to walk a PKCS#7 SignedData (v1 JAR signatures).

``cryptography`` parses X.509 certificates and verifies signatures, but does not expose a
PKCS#7 SignerInfo; this module reads the few structures around it. Lengths are checked
against the buffer, so damaged input raises :class:`DerError`.
"""

from __future__ import annotations

from dataclasses import dataclass


class DerError(ValueError):
    pass


@dataclass(frozen=True)
class Tlv:
    tag: int
    content: bytes
    raw: bytes  # tag + length + content, as encoded

    def children(self) -> list[Tlv]:
        return read_all(self.content)

    def as_int(self) -> int:
        return int.from_bytes(self.content, "big", signed=True)

    def as_oid(self) -> str:
        return decode_oid(self.content)


def read_tlv(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """The element at ``pos`` and the offset after it."""
    if pos + 2 > len(data):
        raise DerError("truncated element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used here")
    length = data[pos + 1]
    head = pos + 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or head + n > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[head : head + n], "big")
        head += n
    end = head + length
    if end > len(data):
        raise DerError("element runs past its container")
    return Tlv(tag, data[head:end], data[pos:end]), end


def read_all(data: bytes) -> list[Tlv]:
    out, pos = [], 0
    while pos < len(data):
        tlv, pos = read_tlv(data, pos)
        out.append(tlv)
    return out


def decode_oid(content: bytes) -> str:
    if not content:
        raise DerError("empty OID")
    parts: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    first = parts[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(p) for p in head + parts[1:])

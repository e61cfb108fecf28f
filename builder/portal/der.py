"""A minimal DER reader: just enough ASN.1 to walk a PKCS#7 SignedData (v1 JAR signatures) and
the parts of an X.509 certificate that verification uses.

``cryptography`` verifies signatures, but does not expose a PKCS#7 SignerInfo, and its X.509
parser refuses certificates that Android's (Java's) verifier takes, for instance a subject with
an odd string type; this module reads the few structures needed, leniently where Java is. Lengths are checked
against the buffer, so damaged input raises :class:`DerError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


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


def iter_tlv(data: bytes) -> Iterator[Tlv]:
    """The elements of ``data`` one by one (an error only when the next one is malformed)."""
    pos = 0
    while pos < len(data):
        tlv, pos = read_tlv(data, pos)
        yield tlv


UNIVERSAL, CONTEXT = 0, 2


def tag_class(tlv: Tlv) -> int:
    return tlv.tag >> 6


def tag_number(tlv: Tlv) -> int:
    return tlv.tag & 0x1F


def fields(tlv: Tlv, spec: list[tuple[int, int | None, bool]]) -> list[Tlv | None]:
    """The elements of a SEQUENCE matched to ``spec`` = [(tag class, tag number or None for
    any, optional)] the way apksig's BER parser does it: elements are read in order, an optional
    field that does not match is skipped, a mandatory one that does not match is an error, an
    element matching none of the remaining optional fields is ignored, and reading stops when
    every field is set (trailing elements are not read). Missing fields are None."""
    out: list[Tlv | None] = [None] * len(spec)
    next_field = 0
    for element in iter_tlv(tlv.content):
        if next_field >= len(spec):
            break
        for i in range(next_field, len(spec)):
            cls, number, optional = spec[i]
            if tag_class(element) == cls and (number is None or tag_number(element) == number):
                out[i] = element
                next_field = i + 1
                break
            if not optional:
                raise DerError(f"unexpected tag {element.tag:#x}")
        if next_field >= len(spec):
            break
    return out


def validate_name(der: bytes) -> None:
    """DerError unless ``der`` is an X.500 Name as Java's X500Principal reads one: a SEQUENCE of
    SETs of SEQUENCEs, each an OID and a value, nothing after it."""
    name, end = read_tlv(der)
    if end != len(der) or name.tag != 0x30:
        raise DerError("malformed name")
    for rdn in name.children():
        if rdn.tag != 0x31:
            raise DerError("malformed name")
        atvs = rdn.children()
        if not atvs:
            raise DerError("malformed name")
        for atv in atvs:
            parts = atv.children() if atv.tag == 0x30 else []
            if len(parts) != 2 or parts[0].tag != 0x06:
                raise DerError("malformed name")
            parts[0].as_oid()


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
    pending = False
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        pending = bool(byte & 0x80)
        if not pending:
            parts.append(value)
            value = 0
    if pending:
        raise DerError("truncated OID")
    first = parts[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(p) for p in head + parts[1:])


STRING_TAGS = {
    0x0C: "utf-8",
    0x12: "ascii",
    0x13: "ascii",
    0x14: "latin-1",
    0x16: "ascii",
    0x1A: "ascii",
    0x1C: "utf-32-be",
    0x1E: "utf-16-be",
}
OID_KEY_USAGE = "2.5.29.15"


@dataclass(frozen=True)
class Certificate:
    """The parts of an X.509 certificate that signature verification uses, read leniently (as
    Java's verifier reads them: a subject with an odd string type is still a certificate)."""

    der: bytes
    serial: int
    issuer: bytes  # the encoded Name
    subject: bytes
    spki: bytes  # the encoded SubjectPublicKeyInfo
    subject_attributes: tuple[tuple[str, str], ...]  # (OID, value) in encoded order
    extensions: tuple[tuple[str, bool, bytes], ...]  # (OID, critical, extnValue content)

    def public_key(self) -> Any:
        from cryptography.hazmat.primitives import serialization

        return serialization.load_der_public_key(self.spki)

    def key_usage(self) -> tuple[bool, bool] | None:
        """(digitalSignature, nonRepudiation), or None without a keyUsage extension."""
        for oid, _critical, value in self.extensions:
            if oid == OID_KEY_USAGE:
                bits, _ = read_tlv(value)
                if bits.tag != 0x03 or not bits.content:
                    raise DerError("malformed keyUsage")
                first = bits.content[1] if len(bits.content) > 1 else 0
                return bool(first & 0x80), bool(first & 0x40)
        return None


def name_attributes(name: bytes) -> tuple[tuple[str, str], ...]:
    out = []
    for rdn in read_tlv(name)[0].children():
        for atv in rdn.children():
            oid, value = atv.children()[:2]
            codec = STRING_TAGS.get(value.tag)
            text = value.content.decode(codec, errors="replace") if codec else "#" + value.raw.hex()
            out.append((oid.as_oid(), text))
    return tuple(out)


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + content


def load_certificate(der: bytes) -> Certificate:
    """The certificate ``der`` as Android's verifier takes it; DerError when it does not.

    apksig hands the bytes to Java's X.509 parser and, when that fails, parses them with its own
    ASN.1 model of a certificate (fields in order, trailing elements ignored), re-encodes that
    as DER and tries again. Here: the same field model, Java's rule that the signature algorithm
    inside and outside the signed part agree, and ``cryptography`` as the stand-in for Java's
    parser (on the bytes, else on the re-encoded form) for the rest, times and extensions
    included. Names and the key are read by this module, not by ``cryptography``, which is
    stricter than Java about their contents."""
    from cryptography import x509

    try:
        outer, _ = read_tlv(der)
        if (tag_class(outer), tag_number(outer)) != (UNIVERSAL, 16):
            raise DerError("not a certificate")
        tbs, algorithm, signature = fields(
            outer, [(UNIVERSAL, 16, False), (UNIVERSAL, 16, False), (UNIVERSAL, 3, False)]
        )
        if tbs is None or algorithm is None or signature is None:
            raise DerError("not a certificate")
        spec: list[tuple[int, int | None, bool]] = [
            (CONTEXT, 0, True),
            (UNIVERSAL, 2, False),
            (UNIVERSAL, 16, False),
            (UNIVERSAL, 16, False),
            (UNIVERSAL, 16, False),
            (UNIVERSAL, 16, False),
            (UNIVERSAL, 16, False),
            (CONTEXT, 1, True),
            (CONTEXT, 2, True),
            (CONTEXT, 3, True),
        ]
        _version, serial, inner_algorithm, issuer, _validity, subject, spki, _u1, _u2, exts = fields(
            tbs, spec
        )
        if serial is None or inner_algorithm is None or issuer is None or subject is None or spki is None:
            raise DerError("not a certificate")
        if inner_algorithm.raw != algorithm.raw:
            raise DerError("signature algorithm mismatch between the certificate and its signed part")
        extensions: list[tuple[str, bool, bytes]] = []
        if exts is not None:
            for ext in exts.children()[0].children():
                parts = ext.children()
                critical = len(parts) == 3 and parts[1].tag == 0x01 and parts[1].content != b"\0"
                extensions.append((parts[0].as_oid(), critical, parts[-1].content))
        attributes = name_attributes(subject.raw)
    except (IndexError, ValueError) as exc:
        raise DerError(f"malformed certificate: {exc}") from None
    try:
        try:
            parsed = x509.load_der_x509_certificate(der)
        except ValueError:  # apksig's second try: its own model, re-encoded as DER
            parsed = x509.load_der_x509_certificate(_tlv(0x30, tbs.raw + algorithm.raw + signature.raw))
        _ = list(parsed.extensions)
    except Exception as exc:  # cryptography raises ValueError and its own extension errors
        raise DerError(f"malformed certificate: {exc}") from None
    return Certificate(der, serial.as_int(), issuer.raw, subject.raw, spki.raw, attributes, tuple(extensions))

"""v1 (JAR) signature verification with apksig's rules, for a range of Android API levels.

What Android accepts depends on the platform: before API 18 only the digest named by
``Digest-Algorithms`` (default SHA-1) is used, before 19 a PKCS#7 signature with signed
attributes is unsafe, before 24 only the first SignerInfo is tried, and each pair of digest and
signature algorithm works only from some API level on. apksig checks every level from the APK's
minSdkVersion up; so does :func:`verify_v1` for the range it is given. The steps, in apksig's
order (``V1SchemeVerifier``): no duplicate entry names; ``META-INF/MANIFEST.MF`` parses and
every section names an entry of the APK; each ``META-INF/*.RSA|DSA|EC`` with its ``.SF`` is a
signer whose PKCS#7 SignedData verifies over the .SF; each .SF verifies against the manifest
(whole, else section by section) and honours ``X-Android-APK-Signed`` (stripping protection);
every entry outside ``META-INF/`` is in the manifest, signed by the same signers, and its bytes
match its digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from builder.portal import jarmanifest
from builder.portal.der import (
    CONTEXT,
    UNIVERSAL,
    Certificate,
    DerError,
    Tlv,
    fields,
    iter_tlv,
    load_certificate,
    read_tlv,
    tag_class,
    tag_number,
    validate_name,
)
from builder.portal.errors import ApkLimitError
from builder.portal.zipfmt import ApkZip, CdEntry

SDK_GINGERBREAD, SDK_JB_MR2, SDK_KITKAT, SDK_N, SDK_P = 9, 18, 19, 24, 28
MAX_SDK = 0x7FFFFFFF
MANIFEST = "META-INF/MANIFEST.MF"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # MANIFEST.MF and each .SF, uncompressed
MAX_BLOCK_BYTES = 1024 * 1024  # each PKCS#7 signature block
MAX_SIGNERS = 10  # JAR signers (apksig's limit since 2023; 31.0.2 has none)
SCHEME_NAMES = {2: "APK Signature Scheme v2", 3: "APK Signature Scheme v3"}

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"

DIGESTS = {  # digest OID → hashlib name
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
SIG_RSA, SIG_DSA, SIG_EC = "1.2.840.113549.1.1.1", "1.2.840.10040.4.1", "1.2.840.10045.2.1"
SIGNATURES = {  # signature OID → (hash, key) when the OID alone names the algorithm
    "1.2.840.113549.1.1.4": ("md5", "RSA"),
    "1.2.840.113549.1.1.5": ("sha1", "RSA"),
    "1.2.840.113549.1.1.14": ("sha224", "RSA"),
    "1.2.840.113549.1.1.11": ("sha256", "RSA"),
    "1.2.840.113549.1.1.12": ("sha384", "RSA"),
    "1.2.840.113549.1.1.13": ("sha512", "RSA"),
    "1.2.840.10040.4.3": ("sha1", "DSA"),
    "2.16.840.1.101.3.4.3.1": ("sha224", "DSA"),
    "2.16.840.1.101.3.4.3.2": ("sha256", "DSA"),
    "1.2.840.10045.4.1": ("sha1", "EC"),
    "1.2.840.10045.4.3.1": ("sha224", "EC"),
    "1.2.840.10045.4.3.2": ("sha256", "EC"),
    "1.2.840.10045.4.3.3": ("sha384", "EC"),
    "1.2.840.10045.4.3.4": ("sha512", "EC"),
}
KEY_OIDS = {SIG_RSA: "RSA", SIG_DSA: "DSA", SIG_EC: "EC"}
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# The API levels on which Android verifies a SignerInfo with (digest, signature algorithm),
# as apksig's OidConstants tables state them ("a-b" inclusive, "a-" open). Pairs not listed
# work on no platform.
_D = {
    "MD5": "1.2.840.113549.2.5",
    "SHA1": "1.3.14.3.2.26",
    "SHA224": "2.16.840.1.101.3.4.2.4",
    "SHA256": "2.16.840.1.101.3.4.2.1",
    "SHA384": "2.16.840.1.101.3.4.2.2",
    "SHA512": "2.16.840.1.101.3.4.2.3",
}
_S = {
    "RSA": SIG_RSA,
    "MD5wRSA": "1.2.840.113549.1.1.4",
    "SHA1wRSA": "1.2.840.113549.1.1.5",
    "SHA224wRSA": "1.2.840.113549.1.1.14",
    "SHA256wRSA": "1.2.840.113549.1.1.11",
    "SHA384wRSA": "1.2.840.113549.1.1.12",
    "SHA512wRSA": "1.2.840.113549.1.1.13",
    "DSA": SIG_DSA,
    "SHA1wDSA": "1.2.840.10040.4.3",
    "SHA224wDSA": "2.16.840.1.101.3.4.3.1",
    "SHA256wDSA": "2.16.840.1.101.3.4.3.2",
    "EC": SIG_EC,
    "SHA1wEC": "1.2.840.10045.4.1",
    "SHA224wEC": "1.2.840.10045.4.3.1",
    "SHA256wEC": "1.2.840.10045.4.3.2",
    "SHA384wEC": "1.2.840.10045.4.3.3",
    "SHA512wEC": "1.2.840.10045.4.3.4",
}
_RSA_SIGS = ("MD5wRSA", "SHA1wRSA", "SHA224wRSA", "SHA256wRSA", "SHA384wRSA", "SHA512wRSA")
_EC_SIGS = ("SHA1wEC", "SHA224wEC", "SHA256wEC", "SHA384wEC", "SHA512wEC")
_TABLE = {
    "MD5": {
        "RSA": "0-",
        "MD5wRSA": "0-8,21-",
        **dict.fromkeys(_RSA_SIGS[1:], "21-23"),
        "SHA1wDSA": "21-23",
        "SHA224wDSA": "21-23",
        "SHA256wDSA": "21-23",
        **dict.fromkeys(_EC_SIGS, "21-23"),
    },
    "SHA1": {
        "RSA": "0-",
        "SHA1wRSA": "0-",
        **dict.fromkeys(("MD5wRSA", *_RSA_SIGS[2:]), "21-23"),
        "DSA": "0-",
        "SHA1wDSA": "9-",
        "SHA224wDSA": "21-23",
        "SHA256wDSA": "21-23",
        "EC": "18-",
        "SHA1wEC": "18-",
        **dict.fromkeys(_EC_SIGS[1:], "21-23"),
    },
    "SHA224": {
        "RSA": "0-8,21-",
        "SHA224wRSA": "0-8,21-",
        "SHA256wRSA": "21-21",
        **dict.fromkeys(("MD5wRSA", "SHA1wRSA", "SHA384wRSA", "SHA512wRSA"), "21-23"),
        "DSA": "22-",
        "SHA1wDSA": "21-23",
        "SHA224wDSA": "21-",
        "SHA256wDSA": "21-23",
        "EC": "21-",
        "SHA224wEC": "21-",
        **dict.fromkeys(("SHA1wEC", "SHA256wEC", "SHA384wEC", "SHA512wEC"), "21-23"),
    },
    "SHA256": {
        "RSA": "0-8,18-",
        "SHA256wRSA": "0-8,18-",
        "SHA1wRSA": "21-21",
        **dict.fromkeys(("MD5wRSA", "SHA224wRSA", "SHA384wRSA", "SHA512wRSA"), "21-23"),
        "DSA": "22-",
        "SHA1wDSA": "21-23",
        "SHA224wDSA": "21-23",
        "SHA256wDSA": "21-",
        "EC": "18-",
        "SHA256wEC": "21-",
        **dict.fromkeys(("SHA1wEC", "SHA224wEC", "SHA384wEC", "SHA512wEC"), "21-23"),
    },
    "SHA384": {
        "RSA": "18-",
        "SHA384wRSA": "21-",
        **dict.fromkeys(("MD5wRSA", "SHA1wRSA", "SHA224wRSA", "SHA256wRSA", "SHA512wRSA"), "21-23"),
        "SHA1wDSA": "21-23",
        "SHA224wDSA": "21-23",
        "SHA256wDSA": "21-23",
        "EC": "18-",
        "SHA384wEC": "21-",
        **dict.fromkeys(("SHA1wEC", "SHA224wEC", "SHA256wEC", "SHA512wEC"), "21-23"),
    },
    "SHA512": {
        "RSA": "18-",
        "SHA512wRSA": "21-",
        "SHA384wRSA": "21-21",
        **dict.fromkeys(("MD5wRSA", "SHA1wRSA", "SHA224wRSA", "SHA256wRSA"), "21-23"),
        "SHA1wDSA": "21-23",
        "SHA224wDSA": "21-23",
        "SHA256wDSA": "21-23",
        "EC": "18-",
        "SHA512wEC": "21-",
        **dict.fromkeys(_EC_SIGS[:4], "21-23"),
    },
}


def _ranges(spec: str) -> list[tuple[int, int]]:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi) if hi else MAX_SDK))
    return out


SUPPORTED_LEVELS = {(_D[d], _S[s]): _ranges(spec) for d, row in _TABLE.items() for s, spec in row.items()}

# Manifest digest attribute names (upper-case, as in Digest-Algorithms) → hashlib name
JAR_DIGEST_NAMES = {
    "MD5": "md5",
    "SHA": "sha1",
    "SHA1": "sha1",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}
JAR_DIGEST_MIN_SDK = {"md5": 0, "sha1": 0, "sha256": 0, "sha384": SDK_GINGERBREAD, "sha512": SDK_GINGERBREAD}
STRONGEST_FIRST = (("sha512", "SHA-512"), ("sha384", "SHA-384"), ("sha256", "SHA-256"), ("sha1", "SHA1"))

# Critical certificate extensions Java's X.509 implementation understands (others: rejected).
KNOWN_CRITICAL = {
    "2.5.29.14",
    "2.5.29.15",
    "2.5.29.16",
    "2.5.29.17",
    "2.5.29.18",
    "2.5.29.19",
    "2.5.29.30",
    "2.5.29.31",
    "2.5.29.32",
    "2.5.29.33",
    "2.5.29.35",
    "2.5.29.36",
    "2.5.29.37",
    "2.5.29.54",
    "1.3.6.1.5.5.7.1.1",
    "1.3.6.1.5.5.7.1.11",
    "2.16.840.1.113730.1.1",
}
STRING_TAGS = {0x0C, 0x12, 0x13, 0x14, 0x16, 0x1A, 0x1C, 0x1E}


class V1Error(Exception):
    """One reason the JAR signature fails; collected, not raised to the caller."""


@dataclass
class V1Result:
    verified: bool = False
    signers: list[bytes] = field(default_factory=list)  # the signing certificates (DER), apksig order
    errors: list[str] = field(default_factory=list)


def missing_levels(supported: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """The parts of [lo, hi] no range of ``supported`` covers."""
    out, at = [], lo
    for a, b in sorted(supported):
        if b < at:
            continue
        if a > hi:
            break
        if a > at:
            out.append((at, a - 1))
        at = max(at, b + 1)
        if at > hi:
            return out
    if at <= hi:
        out.append((at, hi))
    return out


def _levels_text(levels: list[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}+" if b == MAX_SDK else f"{a}-{b}" for a, b in levels)


def b64decode(value: str) -> bytes:
    """Base64 as Java's basic decoder reads it (padding optional); V1Error when it is not."""
    text = value
    if not re.fullmatch(r"[A-Za-z0-9+/]*(={0,2})", text):
        raise V1Error(f"a digest is not valid Base64: {value[:40]!r}")
    body = text.rstrip("=")
    pad = len(text) - len(body)
    if len(body) % 4 == 1 or (pad and (len(body) + pad) % 4):
        raise V1Error(f"a digest is not valid Base64: {value[:40]!r}")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise V1Error(f"a digest is not valid Base64: {exc}") from None


def digests_to_verify(
    section: jarmanifest.Section, suffix: str, min_sdk: int, max_sdk: int
) -> list[tuple[str, bytes]]:
    """(hashlib name, expected digest) pairs Android checks for ``section`` (apksig's
    ``getDigestsToVerify``)."""
    result: list[tuple[str, bytes]] = []
    if min_sdk < SDK_JB_MR2:
        algs = section.get("Digest-Algorithms")
        if algs is None:
            algs = "SHA SHA1"
        for alg in algs.split():
            value = section.get(alg + suffix)
            if value is None:
                continue
            name = JAR_DIGEST_NAMES.get(alg.upper())
            if name is None or JAR_DIGEST_MIN_SDK[name] > min_sdk:
                continue
            result.append((name, b64decode(value)))
            break
        if not result:
            return result
    if max_sdk >= SDK_JB_MR2:
        for name, attr in STRONGEST_FIRST:
            value = section.get(attr + suffix)
            if value is None:
                continue
            digest = b64decode(value)
            known = next((d for n, d in result if n == name), None)
            if known is None or known != digest:
                result.append((name, digest))
            break
    return result


def _digest(name: str, data: bytes, start: int = 0, size: int | None = None) -> bytes:
    h = hashlib.new(name)
    h.update(memoryview(data)[start : len(data) if size is None else start + size])
    return h.digest()


# -- PKCS#7 ---------------------------------------------------------------------------------------


def _name_key(der: bytes) -> Any:
    """A comparable form of an X.500 name, close to Java's X500Principal equality."""
    name, _ = read_tlv(der)
    key = []
    for rdn in name.children():
        atoms = []
        for atv in rdn.children():
            oid, value = atv.children()[:2]
            if value.tag in STRING_TAGS:
                codec = "utf-16-be" if value.tag == 0x1E else "utf-32-be" if value.tag == 0x1C else "utf-8"
                text = " ".join(value.content.decode(codec, errors="replace").split()).casefold()
                atoms.append((oid.as_oid(), text))
            else:
                atoms.append((oid.as_oid(), value.raw.hex()))
        key.append(tuple(sorted(atoms)))
    return tuple(key)


def _find_cert(certs: list[Certificate], info: _SignerInfo) -> Certificate:
    """The certificate with the signer's issuer and serial; the issuer must be a well-formed
    name as soon as there is a certificate to compare it with (Java's X500Principal)."""
    wanted_key = None
    for cert in certs:
        if wanted_key is None:
            try:
                validate_name(info.sid_issuer.raw)
            except (DerError, IndexError) as exc:
                raise V1Error(f"the signer's issuer is not a valid name: {exc}") from None
            wanted_key = _name_key(info.sid_issuer.raw)
        if cert.serial != info.sid_serial:
            continue
        if cert.issuer == info.sid_issuer.raw or _name_key(cert.issuer) == wanted_key:
            return cert
    raise V1Error("the signing certificate referenced in SignerInfo is not in SignedData")


def _check_cert(cert: Certificate) -> None:
    for oid, critical, _ in cert.extensions:
        if critical and oid not in KNOWN_CRITICAL:
            raise V1Error("the signing certificate has unsupported critical extensions")
    usage = cert.key_usage()
    if usage is not None and not any(usage):
        raise V1Error("the signing certificate is not authorized for use in digital signatures (keyUsage)")


def _verify_raw(key: Any, alg: tuple[str, str], signature: bytes, data: bytes) -> bool:
    hash_name, kind = alg
    hash_cls = HASHES[hash_name]
    try:
        if kind == "RSA" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_cls())
        elif kind == "EC" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_cls()))
        elif kind == "DSA" and isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, hash_cls())
        else:
            raise V1Error(f"the certificate's key does not fit the signature algorithm ({kind})")
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise V1Error(f"the signature cannot be checked: {exc}") from None
    return True


U, C = UNIVERSAL, CONTEXT


@dataclass
class _SignerInfo:
    sid_issuer: Tlv
    sid_serial: int
    digest_alg: str
    signed_attrs: Tlv | None
    sig_alg: str
    signature: bytes


def _is(tlv: Tlv | None, cls: int, number: int) -> Tlv:
    if tlv is None or tag_class(tlv) != cls or tag_number(tlv) != number:
        raise DerError("unexpected or missing element")
    return tlv


def _int32(tlv: Tlv) -> int:
    value = tlv.as_int() if tlv.content else 0
    if not -(2**31) <= value < 2**31:
        raise DerError("INTEGER cannot be represented as int")
    return value


def _algorithm(tlv: Tlv | None) -> str:
    oid, _params = fields(_is(tlv, U, 16), [(U, 6, False), (U, None, True)])
    return _is(oid, U, 6).as_oid()


def _attributes(container: Tlv) -> list[tuple[str, list[Tlv]]]:
    """A SET OF Attribute (OID and SET OF values), each parsed as apksig parses it."""
    out = []
    for attr in iter_tlv(container.content):
        oid, values = fields(_is(attr, U, 16), [(U, 6, False), (U, 17, False)])
        out.append((_is(oid, U, 6).as_oid(), list(iter_tlv(_is(values, U, 17).content))))
    return out


def parse_signed_data(block: bytes) -> tuple[str, list[Tlv], list[_SignerInfo]]:
    """(encapsulated content type, certificates, signer infos) of a PKCS#7 ContentInfo, with the
    field rules of apksig's ASN.1 model (ContentInfo, SignedData, SignerInfo): every signer info
    and every listed structure must parse, not only the one that is verified."""
    content_info, _ = read_tlv(block)
    content_type, content = fields(_is(content_info, U, 16), [(U, 6, False), (C, 0, False)])
    if _is(content_type, U, 6).as_oid() != OID_SIGNED_DATA:
        raise V1Error("unsupported ContentInfo.contentType")
    inner = next(iter_tlv(_is(content, C, 0).content), None)
    spec: list[tuple[int, int | None, bool]] = [
        (U, 2, False),
        (U, 17, False),
        (U, 16, False),
        (C, 0, True),
        (C, 1, True),
        (U, 17, False),
    ]
    version, digest_algs, encap, certs, crls, infos = fields(_is(inner, U, 16), spec)
    _int32(_is(version, U, 2))
    for alg in iter_tlv(_is(digest_algs, U, 17).content):
        _algorithm(alg)
    encap_type, encap_content = fields(_is(encap, U, 16), [(U, 6, False), (C, 0, True)])
    if encap_content is not None and next(iter_tlv(encap_content.content), None) is None:
        raise DerError("empty encapsulated content")
    cert_list = list(iter_tlv(certs.content)) if certs is not None else []
    if crls is not None:
        list(iter_tlv(crls.content))
    signer_infos = []
    for info in iter_tlv(_is(infos, U, 17).content):
        spec = [
            (U, 2, False),
            (U, None, False),
            (U, 16, False),
            (C, 0, True),
            (U, 16, False),
            (U, 4, False),
            (C, 1, True),
        ]
        v, sid, digest, signed, sig_alg, signature, unsigned = fields(_is(info, U, 16), spec)
        _int32(_is(v, U, 2))
        issuer, serial = fields(_is(sid, U, 16), [(U, None, False), (U, 2, False)])
        if issuer is None:
            raise DerError("no issuer in the signer identifier")
        if unsigned is not None:
            _attributes(unsigned)
        signer_infos.append(
            _SignerInfo(
                issuer,
                _is(serial, U, 2).as_int() if serial is not None and serial.content else 0,
                _algorithm(digest),
                signed,
                _algorithm(sig_alg),
                _is(signature, U, 4).content,
            )
        )
    return _is(encap_type, U, 6).as_oid(), cert_list, signer_infos


def _signed_attributes(attrs: Tlv) -> dict[str, list[Tlv]]:
    out: dict[str, list[Tlv]] = {}
    for key, values in _attributes(attrs):
        if key in out:
            raise V1Error(f"duplicate signed attribute {key}")
        out[key] = values
    return out


def _single(attrs: dict[str, list[Tlv]], oid: str, cls: int, number: int) -> Tlv | None:
    values = attrs.get(oid)
    if not values:
        return None
    if len(values) > 1:
        raise V1Error(f"signed attribute {oid} has several values")
    try:
        return _is(values[0], cls, number)
    except DerError:
        raise V1Error(f"signed attribute {oid} has a value of the wrong type") from None


def verify_block(block_name: str, block: bytes, sf: bytes, min_sdk: int, max_sdk: int) -> bytes:
    """The signing certificate (DER) of the PKCS#7 block over ``sf``; V1Error when none verifies."""
    try:
        encap_type, certs_tlv, infos = parse_signed_data(block)
    except V1Error as exc:
        raise V1Error(f"{block_name}: {exc}") from None
    except (DerError, IndexError, ValueError) as exc:
        raise V1Error(f"{block_name}: malformed signature block: {exc}") from None
    if not infos:
        raise V1Error(f"{block_name}: the signature block has no signers")
    try:
        certs = [load_certificate(c.raw) for c in certs_tlv]
    except DerError as exc:
        raise V1Error(f"{block_name}: malformed signature block: bad certificate ({exc})") from None
    reason = "the signature does not match the .SF file"
    for info in infos[:1] if min_sdk < SDK_N else infos:
        try:
            found = _verify_signer_info(info, certs, encap_type, sf, min_sdk, max_sdk)
        except V1Error as exc:
            raise V1Error(f"{block_name}: {exc}") from None
        except (DerError, IndexError, ValueError) as exc:
            raise V1Error(f"{block_name}: malformed signature block: {exc}") from None
        if isinstance(found, bytes):
            return found
        reason = found
    raise V1Error(f"{block_name}: {reason} (did not verify against the .SF file)")


def _verify_signer_info(
    info: _SignerInfo,
    certs: list[Certificate],
    encap_type: str,
    sf: bytes,
    min_sdk: int,
    max_sdk: int,
) -> bytes | str:
    """The certificate when ``info`` verifies, else why not (a string)."""
    digest_alg, sig_alg, signed_attrs = info.digest_alg, info.sig_alg, info.signed_attrs
    missing = missing_levels(SUPPORTED_LEVELS.get((digest_alg, sig_alg), []), min_sdk, max_sdk)
    if missing:
        raise V1Error(
            f"uses digest algorithm {digest_alg} and signature algorithm {sig_alg}, which Android "
            f"does not support on API level(s) {_levels_text(missing)} for which the APK is verified"
        )
    cert = _find_cert(certs, info)
    _check_cert(cert)
    if sig_alg in SIGNATURES:
        alg = SIGNATURES[sig_alg]
    elif sig_alg in KEY_OIDS and digest_alg in DIGESTS:
        alg = (DIGESTS[digest_alg], KEY_OIDS[sig_alg])
    else:
        raise V1Error(f"unsupported signature algorithm {sig_alg}")
    if alg[0] not in HASHES:
        raise V1Error(f"unsupported signature algorithm {sig_alg}")
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise V1Error(f"the signing certificate's key cannot be read: {exc}") from None
    data = sf
    if signed_attrs is not None:
        if min_sdk < SDK_KITKAT:
            raise V1Error(
                f"APKs with signed attributes are broken on platforms with API level < {SDK_KITKAT}"
            )
        attrs = _signed_attributes(signed_attrs)
        if max_sdk >= SDK_N:
            content_type = _single(attrs, OID_CONTENT_TYPE, U, 6)
            if content_type is None:
                raise V1Error("no content type in the signed attributes")
            if content_type.as_oid() != encap_type:
                return "the content type signed attribute does not match the SignedData"
        message_digest = _single(attrs, OID_MESSAGE_DIGEST, U, 4)
        if message_digest is None:
            raise V1Error("no message digest in the signed attributes")
        if digest_alg not in DIGESTS:
            raise V1Error(f"unsupported digest algorithm {digest_alg}")
        if message_digest.content != _digest(DIGESTS[digest_alg], sf):
            return "the signature block's message digest does not match the .SF file"
        data = b"\x31" + signed_attrs.raw[1:]
    if not _verify_raw(key, alg, info.signature, data):
        return "the signature does not match the .SF file"
    return cert.der


# -- the whole v1 check ---------------------------------------------------------------------------


@dataclass(eq=False)  # signers compare by identity
class _Signer:
    name: str
    block: CdEntry
    sf_entry: CdEntry
    sf: bytes = b""
    cert: bytes = b""
    sf_names: set[str] = field(default_factory=set)
    ignored: bool = False


def verify_v1(apk: ApkZip, found_schemes: set[int], min_sdk: int, max_sdk: int = MAX_SDK) -> V1Result:
    """apksig's v1 verdict for API levels [min_sdk, max_sdk]; ``found_schemes`` are the APK
    Signing Block schemes (2, 3) that were found and verified. Raises ApkFormatError (and
    ApkLimitError) for an entry that cannot be read, as apksig does."""
    result = V1Result()
    errors = result.errors
    entries = apk.entries
    names: set[str] = set()
    duplicates: list[str] = []
    for e in entries:
        if e.name in names and e.name not in duplicates:
            duplicates.append(e.name)
        names.add(e.name)
    if duplicates:
        errors.extend(f"duplicate entry in the ZIP: {n}" for n in duplicates)
        return result

    manifest_entry = None
    sf_entries: dict[str, CdEntry] = {}
    blocks: list[CdEntry] = []
    for e in entries:
        n = e.name
        if not n.startswith("META-INF/"):
            continue
        if manifest_entry is None and n == MANIFEST:
            manifest_entry = e
            continue
        if n.endswith(".SF"):
            sf_entries[n] = e
        elif n.endswith((".RSA", ".DSA", ".EC")):
            blocks.append(e)
    if manifest_entry is None:
        errors.append(f"Missing {MANIFEST}")
        return result
    manifest_bytes = apk.read(manifest_entry, MAX_MANIFEST_BYTES)
    manifest = jarmanifest.parse(manifest_bytes, max_sections=len(entries) + 1, what=MANIFEST)
    sections: dict[str, jarmanifest.Section] = {}
    for number, section in enumerate(manifest.named, start=1):
        if section.name is None:
            errors.append(f"{MANIFEST} section #{number} has no name")
        elif section.name in sections:
            errors.append(f"duplicate section {section.name!r} in {MANIFEST}")
        else:
            sections[section.name] = section
            if section.name not in names:
                errors.append(f"{section.name} is listed in {MANIFEST} but is not in the APK")
    if errors:
        return result

    signers = []
    for block in blocks:
        sf_name = block.name[: block.name.rindex(".")] + ".SF"
        sf_entry = sf_entries.get(sf_name)
        if sf_entry is not None:
            signers.append(_Signer(block.name[len("META-INF/") :], block, sf_entry))
    if not signers:
        errors.append("No JAR signatures")
        return result
    if len(signers) > MAX_SIGNERS:  # newer apksig refuses these too; each keeps its .SF in memory
        raise ApkLimitError(f"the APK has {len(signers)} JAR signers; the store reads at most {MAX_SIGNERS}")

    for signer in signers:
        block_bytes = apk.read(signer.block, MAX_BLOCK_BYTES)
        signer.sf = apk.read(signer.sf_entry, MAX_MANIFEST_BYTES)
        try:
            signer.cert = verify_block(signer.block.name, block_bytes, signer.sf, min_sdk, max_sdk)
        except V1Error as exc:
            errors.append(f"JAR signer {signer.name}: {exc}")
    if errors:
        return result

    remaining = []
    for signer in signers:
        try:
            _verify_sf(
                signer, manifest_bytes, manifest.main, sections, found_schemes, min_sdk, max_sdk, len(entries)
            )
        except V1Error as exc:
            if not signer.ignored:
                errors.append(f"{signer.sf_entry.name}: {exc}")
            continue
        if not signer.ignored:
            remaining.append(signer)
    if errors:
        return result
    if not remaining:
        errors.append("No JAR signatures")
        return result

    apk_signers = _verify_entries(apk, entries, sections, remaining, min_sdk, max_sdk, errors)
    if errors:
        return result
    result.verified = True
    result.signers = [s.cert for s in remaining if any(s is t for t in apk_signers)]
    return result


def _verify_sf(
    signer: _Signer,
    manifest_bytes: bytes,
    main: jarmanifest.Section,
    sections: dict[str, jarmanifest.Section],
    found_schemes: set[int],
    min_sdk: int,
    max_sdk: int,
    entry_count: int,
) -> None:
    sf = jarmanifest.parse(signer.sf, max_sections=2 * entry_count + 16, what=signer.sf_entry.name)
    sf_main = sf.main
    if sf_main.get("Signature-Version") is None:
        signer.ignored = True
        raise V1Error("no Signature-Version attribute")
    if max_sdk >= SDK_N:
        signed_with = sf_main.get("X-Android-APK-Signed")
        if signed_with is not None:
            supported = {2, 3} if max_sdk >= SDK_P else {2}
            for token in signed_with.split(","):
                token = token.strip()
                if not re.fullmatch(r"[+-]?[0-9]+", token):
                    continue
                scheme = int(token)
                if scheme in supported and scheme not in found_schemes:
                    raise V1Error(
                        f"the JAR signature says the APK is also signed with {SCHEME_NAMES[scheme]} "
                        f"(v{scheme}), and that signature is missing: it was stripped"
                    )
    created_by = sf_main.get("Created-By")
    signtool = created_by is not None and "signtool" in created_by
    whole = digests_to_verify(sf_main, "-Digest" if signtool else "-Digest-Manifest", min_sdk, max_sdk)
    manifest_verified = bool(whole) and all(_digest(a, manifest_bytes) == d for a, d in whole)
    if not signtool:
        for alg, expected in digests_to_verify(sf_main, "-Digest-Manifest-Main-Attributes", min_sdk, max_sdk):
            if _digest(alg, manifest_bytes, main.start, main.size) != expected:
                raise V1Error(f"the {alg.upper()} digest of the {MANIFEST} main section does not match")
    seen: set[str] = set()
    problems: list[str] = []
    for number, section in enumerate(sf.named, start=1):
        name = section.name
        if name is None:
            signer.ignored = True
            raise V1Error(f"section #{number} has no name")
        if name in seen:
            signer.ignored = True
            raise V1Error(f"duplicate section {name!r}")
        seen.add(name)
        if manifest_verified:
            continue
        entry_section = sections.get(name)
        if entry_section is None:
            signer.ignored = True
            problems.append(f"no digest for {name}: it is not in {MANIFEST}")
            continue
        wanted = digests_to_verify(section, "-Digest", min_sdk, max_sdk)
        if not wanted:
            problems.append(f"no supported digest for {name}")
            continue
        size = entry_section.size
        if (
            signtool
            and manifest_bytes[entry_section.start + size - 2 : entry_section.start + size] == b"\n\n"
        ):
            size -= 1
        for alg, expected in wanted:
            if _digest(alg, manifest_bytes, entry_section.start, size) != expected:
                problems.append(
                    f"the {alg.upper()} digest of the {MANIFEST} section for {name} does not match"
                )
    signer.sf_names = seen
    if problems:
        if not whole:
            problems.insert(0, "the .SF file has no digest of the whole manifest")
        raise V1Error("; ".join(problems))


def _feeder(hashers: list[Any]) -> Callable[[bytes], object]:
    if len(hashers) == 1:
        return hashers[0].update

    def feed(chunk: bytes) -> None:
        for h in hashers:
            h.update(chunk)

    return feed


def _verify_entries(
    apk: ApkZip,
    entries: list[CdEntry],
    sections: dict[str, jarmanifest.Section],
    signers: list[_Signer],
    min_sdk: int,
    max_sdk: int,
    errors: list[str],
) -> list[_Signer]:
    first: list[_Signer] | None = None
    first_name = ""
    for entry in sorted(entries, key=lambda e: e.local_offset):
        name = entry.name
        if name.startswith("META-INF/"):
            continue
        section = sections.get(name)
        if section is None:
            errors.append(f"{name} is not protected by the JAR signature (no digest in {MANIFEST})")
            continue
        entry_signers = [s for s in signers if name in s.sf_names]
        if not entry_signers:
            errors.append(f"{name} is not signed: no .SF file lists it")
            continue
        if first is None:
            first, first_name = entry_signers, name
        elif entry_signers != first:
            errors.append(f"{name} and {first_name} are signed by different signers")
            continue
        try:
            wanted = digests_to_verify(section, "-Digest", min_sdk, max_sdk)
        except V1Error as exc:
            errors.append(f"{name}: {exc}")
            continue
        if not wanted:
            errors.append(f"no supported digest for {name} in {MANIFEST}")
            continue
        hashers = [(alg, expected, hashlib.new(alg)) for alg, expected in wanted]
        apk.stream(entry, _feeder([h for _, _, h in hashers]))
        for alg, expected, h in hashers:
            if h.digest() != expected:
                errors.append(
                    f"{alg.upper()} digest of {name} does not match the digest specified in {MANIFEST}"
                )
    if first is None:
        errors.append("no JAR entries are covered by the signature")
        return []
    return first

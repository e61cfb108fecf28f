"""Verify APK signatures: v1 (JAR signing) and the APK Signing Block's v2 and v3 schemes.

Verification means recomputing what was signed and checking it with the signer's public key,
not noticing that a signature block exists (the pitfall of several Python APK libraries: they
report a tampered APK as "signed v2"). For each scheme present:

* v1: the PKCS#7 signer info over ``META-INF/<name>.SF`` is verified with the certificate's key;
  the .SF digests must match MANIFEST.MF (whole, or section by section); every entry's bytes
  must match its MANIFEST.MF digest, and every entry must be listed.
* v2/v3: each signer's signature over its signed data is verified with its public key, the
  first certificate must carry that key, and the chunked SHA-256/512 digest of the whole file
  (entries, central directory, EOCD; signing block excluded) must equal the signed digest.

Which schemes a device needs depends on the manifest's minSdkVersion (v2 exists from API 24),
so :class:`SignatureReport` also says whether the verified schemes cover the declared minimum.
Rotation proofs (the v3 lineage) are not evaluated: the current signer is what is reported.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from builder.portal.der import DerError, Tlv, read_tlv

EOCD_MAGIC = b"PK\x05\x06"
EOCD_SIZE = 22
SIG_BLOCK_MAGIC = b"APK Sig Block 42"
V2_ID = 0x7109871A
V3_ID = 0xF05368C0
V31_ID = 0x1B93AD61
STRIPPING_PROTECTION_ATTR = 0xBEEFF00D
CHUNK = 1 << 20
MIN_SDK_V2 = 24  # Android 7.0: the first platform that checks v2 signatures

# algorithm id → (padding kind, hash for the signature, content digest kind)
ALGORITHMS: dict[int, tuple[str, type[hashes.HashAlgorithm], str]] = {
    0x0101: ("pss", hashes.SHA256, "sha256"),
    0x0102: ("pss", hashes.SHA512, "sha512"),
    0x0103: ("pkcs1", hashes.SHA256, "sha256"),
    0x0104: ("pkcs1", hashes.SHA512, "sha512"),
    0x0201: ("ecdsa", hashes.SHA256, "sha256"),
    0x0202: ("ecdsa", hashes.SHA512, "sha512"),
    0x0301: ("dsa", hashes.SHA256, "sha256"),
    0x0421: ("pkcs1", hashes.SHA256, "verity"),
    0x0423: ("ecdsa", hashes.SHA256, "verity"),
    0x0425: ("dsa", hashes.SHA256, "verity"),
}

DIGEST_OIDS: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.14.3.2.26": hashes.SHA1,
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
    "2.16.840.1.101.3.4.2.4": hashes.SHA224,
    "1.2.840.113549.1.1.5": hashes.SHA1,
    "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384,
    "1.2.840.113549.1.1.13": hashes.SHA512,
}
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"

# MANIFEST.MF / .SF digest attribute names → hashlib names
JAR_DIGESTS = {"SHA1": "sha1", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
SIGNATURE_FILE = re.compile(r"^META-INF/[^/]+\.(SF|RSA|DSA|EC)$", re.IGNORECASE)


class ApkFormatError(ValueError):
    """The file is not an APK we can read at all (not a ZIP, damaged structure)."""


class SignatureError(ValueError):
    """A signature is present but does not verify."""


@dataclass(frozen=True)
class SignerCert:
    subject: str  # RFC 2253 order, as apksigner prints it: "CN=..., O=..., C=..."
    sha256: str
    sha1: str

    @classmethod
    def from_der(cls, der: bytes) -> SignerCert:
        cert = x509.load_der_x509_certificate(der)
        return cls(
            subject=distinguished_name(cert.subject),
            sha256=hashlib.sha256(der).hexdigest(),
            sha1=hashlib.sha1(der).hexdigest(),
        )


@dataclass
class SignatureReport:
    """What was found and what verified. ``verified`` is the verdict on the bytes."""

    present: dict[str, bool] = field(default_factory=lambda: {"v1": False, "v2": False, "v3": False})
    verified_schemes: dict[str, bool] = field(default_factory=lambda: {"v1": False, "v2": False, "v3": False})
    signers: list[SignerCert] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def signed(self) -> bool:
        return any(self.present.values())

    @property
    def verified(self) -> bool:
        return self.signed and not self.errors and any(self.verified_schemes.values())

    def covers_min_sdk(self, min_sdk: int) -> bool:
        """Whether a device at ``min_sdk`` can check the verified schemes (below API 24 only v1)."""
        if min_sdk < MIN_SDK_V2:
            return self.verified_schemes["v1"]
        return any(self.verified_schemes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "verified": self.verified_schemes,
            "signers": [s.__dict__ for s in self.signers],
            "errors": self.errors,
        }


def distinguished_name(name: x509.Name) -> str:
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


# -- ZIP layout -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZipLayout:
    cd_offset: int
    cd_size: int
    eocd_offset: int


def zip_layout(data: bytes | mmap.mmap) -> ZipLayout:
    """Where the central directory and its end record sit; refuses what Android would."""
    size = len(data)
    if size < EOCD_SIZE:
        raise ApkFormatError("not a ZIP archive (too short)")
    start = max(0, size - EOCD_SIZE - 0xFFFF)
    pos = data.rfind(EOCD_MAGIC, start, size - EOCD_SIZE + 4)
    while pos >= 0:
        comment_len = struct.unpack_from("<H", data, pos + 20)[0]
        if pos + EOCD_SIZE + comment_len == size:
            break
        pos = data.rfind(EOCD_MAGIC, start, pos)
    if pos < 0:
        raise ApkFormatError("not a ZIP archive (no end of central directory record)")
    cd_size, cd_offset = struct.unpack_from("<II", data, pos + 12)
    if cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF:
        raise ApkFormatError("ZIP64 archives are not valid APKs")
    if cd_offset + cd_size != pos:
        raise ApkFormatError("malformed ZIP: the central directory is not where the end record says")
    if cd_size and data[cd_offset : cd_offset + 4] != b"PK\x01\x02":
        raise ApkFormatError("malformed ZIP: no central directory at the recorded offset")
    return ZipLayout(cd_offset, cd_size, pos)


def signing_block(data: bytes | mmap.mmap, layout: ZipLayout) -> tuple[int, dict[int, bytes]] | None:
    """(offset of the APK Signing Block, id → value) or None when there is none."""
    cd = layout.cd_offset
    if cd < 32 or data[cd - 16 : cd] != SIG_BLOCK_MAGIC:
        return None
    footer_size = struct.unpack_from("<Q", data, cd - 24)[0]
    start = cd - footer_size - 8
    if footer_size < 24 or start < 0:
        raise SignatureError("APK Signing Block size is out of range")
    if struct.unpack_from("<Q", data, start)[0] != footer_size:
        raise SignatureError("APK Signing Block sizes in header and footer differ")
    pairs: dict[int, bytes] = {}
    pos, end = start + 8, cd - 24
    while pos < end:
        if pos + 12 > end:
            raise SignatureError("APK Signing Block entry is truncated")
        length = struct.unpack_from("<Q", data, pos)[0]
        if length < 4 or pos + 8 + length > end:
            raise SignatureError("APK Signing Block entry runs past the block")
        pair_id = struct.unpack_from("<I", data, pos + 8)[0]
        pairs[pair_id] = bytes(data[pos + 12 : pos + 8 + length])
        pos += 8 + length
    return start, pairs


def content_digest(data: bytes | mmap.mmap, layout: ZipLayout, block_start: int, kind: str) -> bytes:
    """The v2/v3 chunked digest: over entries, central directory and an EOCD that points at
    where the signing block starts, each cut into 1 MiB chunks."""
    eocd = bytearray(data[layout.eocd_offset :])
    struct.pack_into("<I", eocd, 16, block_start)
    sections: list[tuple[bytes | mmap.mmap | bytearray, int, int]] = [
        (data, 0, block_start),
        (data, layout.cd_offset, layout.eocd_offset),
        (eocd, 0, len(eocd)),
    ]
    chunk_digests = []
    for buf, begin, end in sections:
        for off in range(begin, end, CHUNK):
            piece = buf[off : min(off + CHUNK, end)]
            h = hashlib.new(kind)
            h.update(b"\xa5" + struct.pack("<I", len(piece)))
            h.update(piece)
            chunk_digests.append(h.digest())
    top = hashlib.new(kind)
    top.update(b"\x5a" + struct.pack("<I", len(chunk_digests)))
    for d in chunk_digests:
        top.update(d)
    return top.digest()


# -- v2 / v3 ------------------------------------------------------------------------------------


def _lp(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise SignatureError("length-prefixed field is truncated")
    n = struct.unpack_from("<I", buf, pos)[0]
    if pos + 4 + n > len(buf):
        raise SignatureError("length-prefixed field runs past its container")
    return buf[pos + 4 : pos + 4 + n], pos + 4 + n


def _items(buf: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(buf):
        item, pos = _lp(buf, pos)
        out.append(item)
    return out


def _u32(buf: bytes, pos: int) -> tuple[int, int]:
    if pos + 4 > len(buf):
        raise SignatureError("field is truncated")
    return struct.unpack_from("<I", buf, pos)[0], pos + 4


def _verify_raw(public_key: Any, algorithm: int, signature: bytes, data: bytes) -> None:
    kind, hash_cls, _ = ALGORITHMS[algorithm]
    try:
        if kind in ("pss", "pkcs1"):
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise SignatureError("RSA signature algorithm with a non-RSA key")
            pad = (
                padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls().digest_size)
                if kind == "pss"
                else padding.PKCS1v15()
            )
            public_key.verify(signature, data, pad, hash_cls())
        elif kind == "ecdsa":
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise SignatureError("ECDSA signature algorithm with a non-EC key")
            public_key.verify(signature, data, ec.ECDSA(hash_cls()))
        else:
            if not isinstance(public_key, dsa.DSAPublicKey):
                raise SignatureError("DSA signature algorithm with a non-DSA key")
            public_key.verify(signature, data, hash_cls())
    except InvalidSignature as exc:
        raise SignatureError("signature over signed-data did not verify") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"signature cannot be checked: {exc}") from exc


def verify_block_scheme(
    value: bytes, scheme: str, digest_of: Any, has_v3: bool
) -> tuple[list[SignerCert], list[str]]:
    """Verify every signer of a v2 or v3 block; returns their certificates and the errors."""
    signers, errors = [], []
    try:
        (signer_seq, _) = _lp(value, 0)
        raw_signers = _items(signer_seq)
    except SignatureError as exc:
        return [], [f"APK Signature Scheme {scheme}: {exc}"]
    if not raw_signers:
        return [], [f"APK Signature Scheme {scheme}: no signers"]
    for n, raw in enumerate(raw_signers, start=1):
        prefix = f"APK Signature Scheme {scheme} signer #{n}"
        try:
            signers.append(_verify_signer(raw, scheme, digest_of, has_v3))
        except SignatureError as exc:
            errors.append(f"{prefix}: {exc}")
        except (ValueError, DerError) as exc:
            errors.append(f"{prefix}: malformed: {exc}")
    return signers, errors


def _verify_signer(raw: bytes, scheme: str, digest_of: Any, has_v3: bool) -> SignerCert:
    signed_data, pos = _lp(raw, 0)
    if scheme != "v2":
        _min_sdk, pos = _u32(raw, pos)
        _max_sdk, pos = _u32(raw, pos)
    signatures_buf, pos = _lp(raw, pos)
    public_key_der, pos = _lp(raw, pos)
    public_key = serialization.load_der_public_key(public_key_der)

    signatures = []
    for item in _items(signatures_buf):
        algorithm, p = _u32(item, 0)
        sig, _ = _lp(item, p)
        signatures.append((algorithm, sig))
    supported = [(a, s) for a, s in signatures if a in ALGORITHMS]
    if not supported:
        raise SignatureError("no signature with a supported algorithm")
    for algorithm, sig in supported:
        _verify_raw(public_key, algorithm, sig, signed_data)

    digests_buf, p = _lp(signed_data, 0)
    certs_buf, p = _lp(signed_data, p)
    if scheme != "v2":
        _, p = _u32(signed_data, p)
        _, p = _u32(signed_data, p)
    attrs_buf, p = _lp(signed_data, p)
    digests = {}
    for item in _items(digests_buf):
        algorithm, q = _u32(item, 0)
        digest, _ = _lp(item, q)
        digests[algorithm] = digest
    if sorted(digests) != sorted(a for a, _ in signatures):
        raise SignatureError("signature algorithms differ between digests and signatures records")
    certs = _items(certs_buf)
    if not certs:
        raise SignatureError("no certificates")
    cert = x509.load_der_x509_certificate(certs[0])
    cert_key = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    given_key = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if cert_key != given_key:
        raise SignatureError("public key does not match the first certificate")

    checked = 0
    for algorithm, _ in supported:
        kind = ALGORITHMS[algorithm][2]
        if kind == "verity":
            continue
        if digest_of(kind) != digests[algorithm]:
            raise SignatureError(f"APK integrity check failed. CHUNKED_{kind.upper()} digest mismatch")
        checked += 1
    if not checked:
        raise SignatureError("only verity digests present, which this verifier does not compute")

    if scheme == "v2" and not has_v3:
        for attr in _items(attrs_buf):
            attr_id, q = _u32(attr, 0)
            if attr_id == STRIPPING_PROTECTION_ATTR:
                raise SignatureError("the signer declares a v3 signature, which was stripped")
    return SignerCert.from_der(certs[0])


# -- v1 (JAR signing) -------------------------------------------------------------------------------


@dataclass
class JarSection:
    raw: bytes
    attrs: dict[str, str]


def parse_jar_manifest(data: bytes) -> tuple[JarSection, dict[str, JarSection]]:
    """Main section and named sections (by ``Name``), each with its exact bytes."""
    lines = re.split(rb"(\r\n|\n|\r)", data)
    sections: list[JarSection] = []
    current: list[bytes] = []
    attrs: dict[str, str] = {}
    last_key: str | None = None

    def close() -> None:
        nonlocal current, attrs, last_key
        if current:
            sections.append(JarSection(b"".join(current), attrs))
        current, attrs, last_key = [], {}, None

    for i in range(0, len(lines), 2):
        text = lines[i]
        newline = lines[i + 1] if i + 1 < len(lines) else b""
        if not text:
            if newline or current:
                current.append(newline)
            close()
            continue
        current.append(text + newline)
        if text.startswith(b" ") and last_key is not None:
            attrs[last_key] += text[1:].decode("utf-8", errors="replace")
        elif b":" in text:
            key, _, val = text.partition(b":")
            last_key = key.decode("utf-8", errors="replace").strip()
            attrs[last_key] = val.decode("utf-8", errors="replace").strip()
    close()
    if not sections:
        return JarSection(b"", {}), {}
    main, named = sections[0], {}
    for section in sections[1:]:
        name = section.attrs.get("Name")
        if name is not None:
            if name in named:
                raise SignatureError(f"duplicate entry {name!r} in a manifest")
            named[name] = section
    return main, named


def _jar_digests(attrs: dict[str, str], suffix: str) -> dict[str, str]:
    out = {}
    for key, value in attrs.items():
        if key.endswith(suffix) and key[: -len(suffix)] in JAR_DIGESTS:
            out[JAR_DIGESTS[key[: -len(suffix)]]] = value
    return out


def _b64digest(algorithm: str, data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


def _pkcs7_signer_cert(block: bytes, signed_file: bytes) -> bytes:
    """Verify the PKCS#7 SignedData over ``signed_file``; returns the signer's certificate DER."""
    content_info, _ = read_tlv(block)
    parts = content_info.children()
    if len(parts) < 2 or parts[0].as_oid() != OID_SIGNED_DATA:
        raise SignatureError("signature block is not PKCS#7 SignedData")
    signed_data = parts[1].children()[0].children()
    certs: list[Tlv] = []
    signer_infos: list[Tlv] = []
    for tlv in signed_data[3:]:
        if tlv.tag == 0xA0:
            certs = tlv.children()
        elif tlv.tag == 0x31:
            signer_infos = tlv.children()
    if not signer_infos:
        raise SignatureError("signature block has no signer")
    info = signer_infos[0].children()
    sid, digest_alg = info[1], info[2]
    idx = 3
    signed_attrs: Tlv | None = None
    if info[idx].tag == 0xA0:
        signed_attrs = info[idx]
        idx += 1
    encrypted = info[idx + 1]
    hash_cls = DIGEST_OIDS.get(digest_alg.children()[0].as_oid())
    if hash_cls is None:
        raise SignatureError("unsupported digest algorithm in the signature block")
    cert_der = _match_cert(certs, sid)
    cert = x509.load_der_x509_certificate(cert_der)
    data = signed_file
    if signed_attrs is not None:
        digest = hashlib.new(hash_cls().name, signed_file).digest()
        found = False
        for attr in signed_attrs.children():
            fields = attr.children()
            if fields[0].as_oid() == OID_MESSAGE_DIGEST:
                found = fields[1].children()[0].content == digest
        if not found:
            raise SignatureError("the signature's message digest does not match the .SF file")
        data = b"\x31" + signed_attrs.raw[1:]
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(encrypted.content, data, padding.PKCS1v15(), hash_cls())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(encrypted.content, data, ec.ECDSA(hash_cls()))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(encrypted.content, data, hash_cls())
        else:
            raise SignatureError("unsupported signer key type")
    except InvalidSignature as exc:
        raise SignatureError("the signature over the .SF file did not verify") from exc
    return cert_der


def _match_cert(certs: list[Tlv], sid: Tlv) -> bytes:
    if sid.tag != 0x30:
        raise SignatureError("signer identified by key id, which JAR signing does not use")
    issuer, serial = sid.children()[0].raw, sid.children()[1].as_int()
    for cert in certs:
        tbs = cert.children()[0].children()
        fields = tbs[1:] if tbs[0].tag == 0xA0 else tbs
        if fields[0].as_int() == serial and fields[2].raw == issuer:
            return cert.raw
    raise SignatureError("the signer's certificate is not in the signature block")


def verify_v1(zf: zipfile.ZipFile, present_blocks: set[str]) -> tuple[list[SignerCert], list[str]]:
    names = [i.filename for i in zf.infolist()]
    blocks = [n for n in names if SIGNATURE_FILE.match(n) and not n.upper().endswith(".SF")]
    if "META-INF/MANIFEST.MF" not in names:
        return [], ["Missing META-INF/MANIFEST.MF"]
    manifest_bytes = zf.read("META-INF/MANIFEST.MF")
    main, entries = parse_jar_manifest(manifest_bytes)
    signers: list[SignerCert] = []
    errors: list[str] = []
    for block in blocks:
        sf_name = block.rsplit(".", 1)[0] + ".SF"
        if sf_name not in names:
            errors.append(f"{block} has no matching .SF file")
            continue
        sf_bytes = zf.read(sf_name)
        try:
            cert_der = _pkcs7_signer_cert(zf.read(block), sf_bytes)
            _check_sf(sf_name, sf_bytes, manifest_bytes, main, entries, present_blocks)
            signers.append(SignerCert.from_der(cert_der))
        except SignatureError as exc:
            errors.append(f"{sf_name}: {exc}")
        except (DerError, ValueError, IndexError) as exc:
            errors.append(f"{block}: malformed signature block: {exc}")
    if not signers and not errors:
        return [], ["No JAR signatures"]
    errors.extend(_check_entries(zf, names, entries))
    return signers, errors


def _check_sf(
    sf_name: str,
    sf_bytes: bytes,
    manifest_bytes: bytes,
    main: JarSection,
    entries: dict[str, JarSection],
    present_blocks: set[str],
) -> None:
    sf_main, sf_entries = parse_jar_manifest(sf_bytes)
    signed_with = sf_main.attrs.get("X-Android-APK-Signed", "")
    for scheme_id in (s.strip() for s in signed_with.split(",") if s.strip()):
        scheme = {"2": "v2", "3": "v3"}.get(scheme_id)
        if scheme and scheme not in present_blocks:
            raise SignatureError(f"the JAR signature says the APK is also signed with {scheme}, now missing")
    whole = _jar_digests(sf_main.attrs, "-Digest-Manifest")
    if whole and all(_b64digest(a, manifest_bytes) == v for a, v in whole.items()):
        return
    if not sf_entries:
        raise SignatureError("the manifest digest does not match and no per-entry digests are given")
    for name, section in sf_entries.items():
        wanted = _jar_digests(section.attrs, "-Digest")
        if not wanted:
            raise SignatureError(f"no supported digest for {name}")
        if name not in entries:
            raise SignatureError(f"{name} is in the .SF file but not in MANIFEST.MF")
        for algorithm, value in wanted.items():
            if _b64digest(algorithm, entries[name].raw) != value:
                raise SignatureError(f"digest of the MANIFEST.MF section for {name} does not match")
    missing = set(entries) - set(sf_entries)
    if missing:
        raise SignatureError(f"{sorted(missing)[0]} is not covered by the signature")


def _check_entries(zf: zipfile.ZipFile, names: list[str], entries: dict[str, JarSection]) -> list[str]:
    errors = []
    files = [n for n in names if not n.endswith("/")]
    for name in files:
        if name == "META-INF/MANIFEST.MF" or SIGNATURE_FILE.match(name):
            continue
        section = entries.get(name)
        if section is None:
            errors.append(f"{name} is not protected by the JAR signature (not in META-INF/MANIFEST.MF)")
            continue
        wanted = _jar_digests(section.attrs, "-Digest")
        if not wanted:
            errors.append(f"no supported digest for {name} in META-INF/MANIFEST.MF")
            continue
        hashers = {a: hashlib.new(a) for a in wanted}
        with zf.open(name) as f:
            while chunk := f.read(CHUNK):
                for h in hashers.values():
                    h.update(chunk)
        import base64

        for algorithm, h in hashers.items():
            if base64.b64encode(h.digest()).decode() != wanted[algorithm]:
                errors.append(
                    f"{algorithm.upper()} digest of {name} does not match the digest in META-INF/MANIFEST.MF"
                )
    for name in set(entries) - set(files):
        errors.append(f"{name} is listed in META-INF/MANIFEST.MF but is not in the APK")
    return errors


# -- the whole verdict ----------------------------------------------------------------------------


def verify_apk(path: Path) -> SignatureReport:
    """Check every signature scheme present in the APK at ``path``.

    Raises ApkFormatError when the file is not a ZIP at all. The ZIP must also read through
    ``zipfile`` (the v1 check needs it), which is opened by the caller's reader anyway."""
    report = SignatureReport()
    with path.open("rb") as f:
        if path.stat().st_size == 0:
            raise ApkFormatError("empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            layout = zip_layout(data)
            try:
                found = signing_block(data, layout)
            except SignatureError as exc:
                report.errors.append(str(exc))
                found = None
            cache: dict[str, bytes] = {}

            def digest_of(kind: str) -> bytes:
                if kind not in cache:
                    assert found is not None
                    cache[kind] = content_digest(data, layout, found[0], kind)
                return cache[kind]

            pairs = found[1] if found else {}
            report.present["v2"] = V2_ID in pairs
            report.present["v3"] = V3_ID in pairs
            v3_signers: list[SignerCert] = []
            v2_signers: list[SignerCert] = []
            if report.present["v3"]:
                v3_signers, errors = verify_block_scheme(pairs[V3_ID], "v3", digest_of, True)
                report.errors.extend(errors)
                report.verified_schemes["v3"] = bool(v3_signers) and not errors
            if report.present["v2"]:
                v2_signers, errors = verify_block_scheme(pairs[V2_ID], "v2", digest_of, report.present["v3"])
                report.errors.extend(errors)
                report.verified_schemes["v2"] = bool(v2_signers) and not errors
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ApkFormatError(f"not a ZIP archive: {exc}") from exc
    with zf:
        names = [i.filename for i in zf.infolist()]
        if len(names) != len(set(names)):
            report.errors.append("the ZIP has duplicate entry names")
        has_v1 = any(SIGNATURE_FILE.match(n) and n.upper().endswith(".SF") for n in names)
        report.present["v1"] = has_v1
        v1_signers: list[SignerCert] = []
        if has_v1:
            present_blocks = {s for s in ("v2", "v3") if report.present[s]}
            try:
                v1_signers, errors = verify_v1(zf, present_blocks)
            except SignatureError as exc:
                v1_signers, errors = [], [str(exc)]
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                v1_signers, errors = [], [f"cannot read an entry: {exc}"]
            report.errors.extend(errors)
            report.verified_schemes["v1"] = bool(v1_signers) and not errors
    if v1_signers and v2_signers and {s.sha256 for s in v1_signers} != {s.sha256 for s in v2_signers}:
        report.errors.append("v1 and v2 signers do not match")
    report.signers = v3_signers or v2_signers or v1_signers
    return report

"""Build real APKs for tests: a compiled (binary XML) manifest, a JAR (v1) signature and an
APK Signing Block with v2 and v3 signatures; and the damaged APKs a store must refuse.

Everything is made with the real formats: AXML chunks, MANIFEST.MF/.SF digests, a PKCS#7
SignedData from ``cryptography``, and the v2/v3 signer records over the chunked SHA-256 digest
of the ZIP sections (as apksigner writes them). These builders reproduce every case of
../shared/fixtures/apk (v1, v1+v2, v1+v2+v3, v2-only, debug-signed, unsigned, a broken v2
signature, content changed after signing, an empty ZIP, a central directory the end record
does not point at) and add what the fixtures lack: a debuggable app, chosen permissions and
versionCodes, and a second signing key for the same package (signer pinning).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

ANDROID_NS = "http://schemas.android.com/apk/res/android"
ATTR_IDS = {
    "name": 0x01010003,
    "debuggable": 0x0101000F,
    "minSdkVersion": 0x0101020C,
    "versionCode": 0x0101021B,
    "versionName": 0x0101021C,
    "targetSdkVersion": 0x01010270,
}
TYPE_STRING, TYPE_INT_DEC, TYPE_INT_BOOLEAN = 0x03, 0x10, 0x12


def compile_manifest(
    package: str,
    version_code: int | str,
    version_name: str = "1.0",
    min_sdk: int | None = 21,
    debuggable: bool = False,
    permissions: tuple[str, ...] = (),
    target_sdk: int | None = None,
) -> bytes:
    """A binary AndroidManifest.xml as aapt would write it (UTF-16 string pool). ``min_sdk``
    None leaves out ``<uses-sdk>`` (Android then reads minSdkVersion 1)."""
    strings = list(ATTR_IDS)  # resource-mapped attribute names first, as aapt orders them
    index: dict[str, int] = {s: i for i, s in enumerate(strings)}

    def s(text: str) -> int:
        if text not in index:
            index[text] = len(strings)
            strings.append(text)
        return index[text]

    def attr(name: str, kind: int, value: int | str, android: bool = True) -> bytes:
        raw = s(value) if isinstance(value, str) else 0xFFFFFFFF
        data = s(value) if isinstance(value, str) else int(value)
        ns = s(ANDROID_NS) if android else 0xFFFFFFFF
        return struct.pack("<IIIHBBI", ns, s(name), raw, 8, 0, kind, data & 0xFFFFFFFF)

    def start(name: str, attrs: list[bytes]) -> bytes:
        body = struct.pack("<IIHHHHHH", 0xFFFFFFFF, s(name), 20, 20, len(attrs), 0, 0, 0) + b"".join(attrs)
        return struct.pack("<HHIII", 0x0102, 16, 16 + len(body), 1, 0xFFFFFFFF) + body

    def end(name: str) -> bytes:
        return struct.pack("<HHIIIII", 0x0103, 16, 24, 1, 0xFFFFFFFF, 0xFFFFFFFF, s(name))

    # a string versionCode is what a hostile build tool can write (aapt writes an integer)
    code_kind = TYPE_STRING if isinstance(version_code, str) else TYPE_INT_DEC
    nodes = [
        struct.pack("<HHIIIII", 0x0100, 16, 24, 1, 0xFFFFFFFF, s("android"), s(ANDROID_NS)),
        start(
            "manifest",
            [
                attr("versionCode", code_kind, version_code),
                attr("versionName", TYPE_STRING, version_name),
                attr("package", TYPE_STRING, package, android=False),
            ],
        ),
    ]
    sdk = [attr("minSdkVersion", TYPE_INT_DEC, min_sdk)] if min_sdk is not None else []
    sdk += [attr("targetSdkVersion", TYPE_INT_DEC, target_sdk)] if target_sdk is not None else []
    if sdk:
        nodes += [start("uses-sdk", sdk), end("uses-sdk")]
    for perm in permissions:
        nodes += [start("uses-permission", [attr("name", TYPE_STRING, perm)]), end("uses-permission")]
    app_attrs = [attr("debuggable", TYPE_INT_BOOLEAN, 0xFFFFFFFF)] if debuggable else []
    nodes += [start("application", app_attrs), end("application"), end("manifest")]
    nodes.append(struct.pack("<HHIIIII", 0x0101, 16, 24, 1, 0xFFFFFFFF, s("android"), s(ANDROID_NS)))

    data = b""
    offsets = []
    for text in strings:
        offsets.append(len(data))
        encoded = text.encode("utf-16-le")
        data += struct.pack("<H", len(text)) + encoded + b"\0\0"
    data += b"\0" * (-len(data) % 4)
    header = 28
    pool_head = struct.pack("<HHIIIIII", 0x0001, header, 0, len(strings), 0, 0, header + 4 * len(strings), 0)
    pool = pool_head + b"".join(struct.pack("<I", o) for o in offsets) + data
    pool = pool[:4] + struct.pack("<I", len(pool)) + pool[8:]
    res_map = struct.pack("<HHI", 0x0180, 8, 8 + 4 * len(ATTR_IDS)) + b"".join(
        struct.pack("<I", i) for i in ATTR_IDS.values()
    )
    body = pool + res_map + b"".join(nodes)
    return struct.pack("<HHI", 0x0003, 8, 8 + len(body)) + body


@dataclass(frozen=True)
class SigningKey:
    key: object
    cert: x509.Certificate

    @property
    def cert_sha256(self) -> str:
        return hashlib.sha256(self.cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def make_key(
    common_name: str, org: str | None = None, country: str | None = None, rsa_key: bool = False
) -> SigningKey:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)] if country else []
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    attrs += [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    return key_with_name(x509.Name(attrs), rsa_key)


def key_with_name(name: x509.Name, rsa_key: bool = False) -> SigningKey:
    """A fresh key and a self-signed certificate for ``name``, attributes in the order given."""
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365 * 30))
        .sign(key, hashes.SHA256())
    )
    return SigningKey(key, cert)


@cache
def release_key() -> SigningKey:
    return make_key("Depot Test Release", "Depot", "DE")


@cache
def other_key() -> SigningKey:
    return make_key("Someone Else", "Elsewhere", "AT")


@cache
def debug_key() -> SigningKey:
    return make_key("Android Debug", "Android", "US", rsa_key=True)


@cache
def politedroid_key() -> SigningKey:
    """The signer of the com.politedroid counterparts: a key of that package alone, so that an
    APK built with the default :func:`release_key` for the same package is a signer change."""
    return make_key("Polite Droid Maintainer", "Polite Droid", "US", rsa_key=True)  # minSdk 3: RSA


@cache
def rsa_key() -> SigningKey:
    """An RSA 2048 release key (like apksig's ``rsa-2048`` test key, but made here)."""
    return make_key("rsa-2048", rsa_key=True)


def _b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _b64sha1(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


# The first API levels where Android's JAR verifier takes SHA-256 digests and signed attributes
# (apksig's V1SchemeVerifier): an APK for older devices is signed SHA-1, without attributes.
SHA256_DIGESTS_SINCE, SIGNED_ATTRIBUTES_SINCE = 18, 19


def sign_v1(
    files: dict[str, bytes],
    key: SigningKey,
    alias: str = "CERT",
    also_signed: Sequence[str] = (),
    legacy: bool = False,
) -> dict[str, bytes]:
    """``files`` plus META-INF/MANIFEST.MF, <alias>.SF and the PKCS#7 block. ``also_signed``
    ("v2", "v3") sets the .SF's ``X-Android-APK-Signed``, which tells a verifier that
    stripping those signatures is an attack. ``legacy`` signs as apksigner does for a minSdk
    below 18: SHA-1 digests, SHA1withRSA and no signed attributes (the key must be RSA)."""
    if legacy:
        return _sign_v1_legacy(files, key, alias, also_signed)
    sections = {n: f"Name: {n}\r\nSHA-256-Digest: {_b64sha256(d)}\r\n\r\n".encode() for n, d in files.items()}
    manifest = b"Manifest-Version: 1.0\r\nCreated-By: depot-tests\r\n\r\n" + b"".join(sections.values())
    sf = (
        b"Signature-Version: 1.0\r\nCreated-By: depot-tests\r\n"
        + (
            f"X-Android-APK-Signed: {', '.join(s.removeprefix('v') for s in also_signed)}\r\n".encode()
            if also_signed
            else b""
        )
        + f"SHA-256-Digest-Manifest: {_b64sha256(manifest)}\r\n\r\n".encode()
        + b"".join(
            f"Name: {n}\r\nSHA-256-Digest: {_b64sha256(s)}\r\n\r\n".encode() for n, s in sections.items()
        )
    )
    block = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(sf)
        .add_signer(key.cert, key.key, hashes.SHA256())
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.NoCapabilities],
        )
    )
    suffix = "RSA" if isinstance(key.key, rsa.RSAPrivateKey) else "EC"
    return {
        **files,
        "META-INF/MANIFEST.MF": manifest,
        f"META-INF/{alias}.SF": sf,
        f"META-INF/{alias}.{suffix}": block,
    }


def _sign_v1_legacy(
    files: dict[str, bytes], key: SigningKey, alias: str, also_signed: Sequence[str]
) -> dict[str, bytes]:
    from tests.support.apk_mutants import pkcs7_sign  # SHA-1 PKCS#7, which cryptography won't write

    sections = {n: f"Name: {n}\r\nSHA1-Digest: {_b64sha1(d)}\r\n\r\n".encode() for n, d in files.items()}
    manifest = b"Manifest-Version: 1.0\r\nCreated-By: depot-tests\r\n\r\n" + b"".join(sections.values())
    schemes = ", ".join(s.removeprefix("v") for s in also_signed)
    signed = f"X-Android-APK-Signed: {schemes}\r\n" if also_signed else ""
    sf = (
        f"Signature-Version: 1.0\r\nCreated-By: depot-tests\r\n{signed}"
        f"SHA1-Digest-Manifest: {_b64sha1(manifest)}\r\n\r\n".encode()
        + b"".join(f"Name: {n}\r\nSHA1-Digest: {_b64sha1(s)}\r\n\r\n".encode() for n, s in sections.items())
    )
    assert isinstance(key.key, rsa.RSAPrivateKey), "devices before API 18 verify RSA JAR signatures only"
    return {
        **files,
        "META-INF/MANIFEST.MF": manifest,
        f"META-INF/{alias}.SF": sf,
        f"META-INF/{alias}.RSA": pkcs7_sign(sf, key, "sha1"),
    }


def zip_apk(files: dict[str, bytes]) -> bytes:
    """The ZIP of an APK: native libraries (``lib/``) stored uncompressed, as the build tools
    store them, everything else deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            method = zipfile.ZIP_STORED if name.startswith("lib/") else zipfile.ZIP_DEFLATED
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=method)
    return buf.getvalue()


def build_apk(
    path: Path | None = None,
    package: str = "com.example.depot",
    version_code: int = 1,
    key: SigningKey | None = None,
    extra_files: dict[str, bytes] | None = None,
    schemes: Sequence[str] = ("v1",),
    **manifest: object,
) -> bytes:
    """An APK signed with ``schemes`` (any of "v1", "v2", "v3"; none for an unsigned APK);
    written to ``path`` when given. Returns its bytes."""
    key = key or release_key()
    files = {
        "AndroidManifest.xml": compile_manifest(package, version_code, **manifest),  # type: ignore[arg-type]
        "classes.dex": b"dex\n035\0" + package.encode() + b"\0" * 64,
        **(extra_files or {}),
    }
    if "v1" in schemes:
        min_sdk = manifest.get("min_sdk", 21)
        legacy = min_sdk is None or int(min_sdk) < SIGNED_ATTRIBUTES_SINCE  # type: ignore[call-overload]
        files = sign_v1(files, key, also_signed=[s for s in schemes if s != "v1"], legacy=legacy)
    data = zip_apk(files)
    block_schemes = [s for s in schemes if s in ("v2", "v3")]
    if block_schemes:
        data = sign_block(data, key, block_schemes)
    if path is not None:
        path.write_bytes(data)
    return data


# -- the APK Signing Block (v2 and v3) -------------------------------------------------------------

V2_BLOCK_ID = 0x7109871A
V3_BLOCK_ID = 0xF05368C0
STRIPPING_PROTECTION = 0xBEEFF00D  # in a v2 signer's attributes: "there is also a v3 signature"
SIGNING_BLOCK_MAGIC = b"APK Sig Block 42"
RSA_PKCS1_SHA256, ECDSA_SHA256 = 0x0103, 0x0201
V3_MIN_SDK, V3_MAX_SDK = 24, 0x7FFFFFFF


def _lp(data: bytes) -> bytes:
    """A uint32 length-prefixed field."""
    return struct.pack("<I", len(data)) + data


def _seq(items: Sequence[bytes]) -> bytes:
    return _lp(b"".join(_lp(i) for i in items))


def _eocd_offset(apk: bytes) -> int:
    pos = apk.rfind(b"PK\x05\x06")
    if pos < 0 or pos + 22 != len(apk):
        raise ValueError("expected a ZIP without an archive comment")
    return pos


def chunked_sha256(sections: Sequence[bytes]) -> bytes:
    """The v2/v3 content digest: every section cut into 1 MiB chunks, each hashed as
    0xa5 + length + bytes, and the chunk digests hashed as 0x5a + count + digests."""
    digests = []
    for section in sections:
        for off in range(0, len(section), 1 << 20):
            chunk = section[off : off + (1 << 20)]
            digests.append(hashlib.sha256(b"\xa5" + struct.pack("<I", len(chunk)) + chunk).digest())
    return hashlib.sha256(b"\x5a" + struct.pack("<I", len(digests)) + b"".join(digests)).digest()


def _raw_signature(key: SigningKey, data: bytes) -> tuple[int, bytes]:
    if isinstance(key.key, rsa.RSAPrivateKey):
        return RSA_PKCS1_SHA256, key.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(key.key, ec.EllipticCurvePrivateKey)
    return ECDSA_SHA256, key.key.sign(data, ec.ECDSA(hashes.SHA256()))


def _signer(scheme: str, key: SigningKey, digest: bytes, attributes: bytes, corrupt: bool) -> bytes:
    algorithm = RSA_PKCS1_SHA256 if isinstance(key.key, rsa.RSAPrivateKey) else ECDSA_SHA256
    cert = key.cert.public_bytes(serialization.Encoding.DER)
    sdk_range = struct.pack("<II", V3_MIN_SDK, V3_MAX_SDK) if scheme == "v3" else b""
    signed_data = (
        _seq([struct.pack("<I", algorithm) + _lp(digest)]) + _seq([cert]) + sdk_range + _lp(attributes)
    )
    algorithm, signature = _raw_signature(key, signed_data)
    if corrupt:
        signature = signature[:-1] + bytes([signature[-1] ^ 0xFF])
    public_key = key.key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signatures = _seq([struct.pack("<I", algorithm) + _lp(signature)])
    return _lp(signed_data) + sdk_range + signatures + _lp(public_key)


def sign_block(
    apk: bytes, key: SigningKey, schemes: Sequence[str] = ("v2",), corrupt_signature: bool = False
) -> bytes:
    """``apk`` (a ZIP, maybe v1-signed) with an APK Signing Block holding a signature for each of
    ``schemes`` inserted before its central directory. ``corrupt_signature`` flips a bit of each
    signature value: the signed data and digests stay right, the signature no longer verifies."""
    eocd_at = _eocd_offset(apk)
    (cd_offset,) = struct.unpack_from("<I", apk, eocd_at + 16)
    # The EOCD as digested points at the signing block, which starts where the CD starts now.
    digest = chunked_sha256([apk[:cd_offset], apk[cd_offset:eocd_at], apk[eocd_at:]])
    pairs = b""
    for scheme in schemes:
        attributes = b""
        if scheme == "v2" and "v3" in schemes:
            attributes = _lp(struct.pack("<II", STRIPPING_PROTECTION, 3))
        value = _seq([_signer(scheme, key, digest, attributes, corrupt_signature)])
        pair_id = V2_BLOCK_ID if scheme == "v2" else V3_BLOCK_ID
        pairs += struct.pack("<QI", 4 + len(value), pair_id) + value
    size = len(pairs) + 8 + 16  # the pairs, the second size field and the magic
    block = struct.pack("<Q", size) + pairs + struct.pack("<Q", size) + SIGNING_BLOCK_MAGIC
    eocd = bytearray(apk[eocd_at:])
    struct.pack_into("<I", eocd, 16, cd_offset + len(block))
    return apk[:cd_offset] + block + apk[cd_offset:eocd_at] + bytes(eocd)


# -- APKs a store must refuse ---------------------------------------------------------------------


def empty_zip() -> bytes:
    """A ZIP with no entries at all: only its 22-byte end record."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w"):
        pass
    return buf.getvalue()


def with_misplaced_central_directory(apk: bytes) -> bytes:
    """``apk`` with the first byte of its central directory cut out: the end record's offset and
    size no longer lead to a central directory (a ZIP reader gives up)."""
    eocd_at = _eocd_offset(apk)
    (cd_offset,) = struct.unpack_from("<I", apk, eocd_at + 16)
    return apk[:cd_offset] + apk[cd_offset + 1 :]


def with_entry_changed(apk: bytes, name: str, new: bytes) -> bytes:
    """``apk`` with the content of its stored (uncompressed) entry ``name`` replaced by ``new``
    (same length) and the CRC-32 fixed in the local header and the central directory: a
    well-formed ZIP whose content changed after signing."""
    with zipfile.ZipFile(io.BytesIO(apk)) as zf:
        info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != len(new):
        raise ValueError(f"{name} must be stored uncompressed and {len(new)} bytes long")
    data = bytearray(apk)
    local = info.header_offset
    name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
    start = local + 30 + name_len + extra_len
    data[start : start + len(new)] = new
    crc = zlib.crc32(new)
    struct.pack_into("<I", data, local + 14, crc)
    eocd_at = _eocd_offset(apk)
    (cd_offset,) = struct.unpack_from("<I", data, eocd_at + 16)
    pos = cd_offset
    while data[pos : pos + 4] == b"PK\x01\x02":
        n, e, c = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + 46 : pos + 46 + n].decode() == name:
            struct.pack_into("<I", data, pos + 16, crc)
            break
        pos += 46 + n + e + c
    return bytes(data)


# -- counterparts of ../shared/fixtures/apk ----------------------------------------------------------

TINYAPP = {
    "package": "android.appsecurity.cts.tinyapp",
    "version_code": 10,
    "version_name": "1.0",
    "min_sdk": 23,
    "target_sdk": 23,
}
FAKE_SO = {"lib/armeabi/fake.so": b"Hello\n"}
POLITEDROID_PERMISSIONS = ("android.permission.READ_CALENDAR", "android.permission.RECEIVE_BOOT_COMPLETED")


def _politedroid(version_code: int, version_name: str) -> bytes:
    return build_apk(
        package="com.politedroid",
        version_code=version_code,
        version_name=version_name,
        min_sdk=3,
        permissions=POLITEDROID_PERMISSIONS,
        key=politedroid_key(),
    )


_FIXTURE_LIKE = {
    "golden-aligned-v1v2-out.apk": lambda: build_apk(
        **TINYAPP, extra_files=FAKE_SO, key=rsa_key(), schemes=("v1", "v2")
    ),
    "golden-aligned-v1v2v3-out.apk": lambda: build_apk(
        **TINYAPP, extra_files=FAKE_SO, key=rsa_key(), schemes=("v1", "v2", "v3")
    ),
    "v2-only-with-rsa-pkcs1-sha256-2048.apk": lambda: build_apk(**TINYAPP, key=rsa_key(), schemes=("v2",)),
    "Test-debug.apk": lambda: build_apk(
        package="org.t0t0.androguard.test", version_code=1, min_sdk=None, key=debug_key()
    ),
    "golden-aligned-in.apk": lambda: build_apk(**TINYAPP, extra_files=FAKE_SO, schemes=()),
    "v2-only-with-rsa-pkcs1-sha256-2048-sig-does-not-verify.apk": lambda: sign_block(
        build_apk(**TINYAPP, schemes=()), rsa_key(), ("v2",), corrupt_signature=True
    ),
    "golden-aligned-v1v2-out-tampered.apk": lambda: with_entry_changed(
        fixture_like("golden-aligned-v1v2-out.apk"), "lib/armeabi/fake.so", b"Iello\n"
    ),
    "empty-unsigned.apk": empty_zip,
    "v2-only-truncated-cd.apk": lambda: with_misplaced_central_directory(
        fixture_like("v2-only-with-rsa-pkcs1-sha256-2048.apk")
    ),
    "com.politedroid_3.apk": lambda: _politedroid(3, "1.2"),
    "com.politedroid_4.apk": lambda: _politedroid(4, "1.3"),
}
FIXTURE_NAMES = tuple(_FIXTURE_LIKE)


@cache
def fixture_like(name: str) -> bytes:
    """An APK made here with what ../shared/fixtures/apk/<name> is about (README.md): the same
    manifest facts (package, versionCode, versionName, SDKs, ABIs, permissions), the same
    signature schemes or the same damage, signed with a key made here (:func:`fixture_like_signer`).
    The same bytes for the whole test session."""
    return _FIXTURE_LIKE[name]()


_FIXTURE_LIKE_SIGNERS = {
    "golden-aligned-v1v2-out.apk": rsa_key,
    "golden-aligned-v1v2v3-out.apk": rsa_key,
    "v2-only-with-rsa-pkcs1-sha256-2048.apk": rsa_key,
    "Test-debug.apk": debug_key,
    "com.politedroid_3.apk": politedroid_key,
    "com.politedroid_4.apk": politedroid_key,
}


def fixture_like_signer(name: str) -> SigningKey | None:
    """The key whose signature on :func:`fixture_like` ``(name)`` verifies; None for the
    unsigned, broken, tampered and malformed ones."""
    key = _FIXTURE_LIKE_SIGNERS.get(name)
    return key() if key else None

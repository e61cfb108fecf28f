"""Build real, v1-signed APKs for tests: a compiled (binary XML) manifest and a JAR signature.

The fixtures in ../shared/fixtures/apk cover the signature verdicts; these builders add what
the fixtures lack: a debuggable app, chosen permissions and versionCodes, and a second signing
key for the same package (signer pinning). Everything is made with the real formats: AXML
chunks, MANIFEST.MF/.SF digests and a PKCS#7 SignedData from ``cryptography``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import struct
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

ANDROID_NS = "http://schemas.android.com/apk/res/android"
ATTR_IDS = {
    "name": 0x01010003,
    "debuggable": 0x0101000F,
    "minSdkVersion": 0x0101020C,
    "versionCode": 0x0101021B,
    "versionName": 0x0101021C,
}
TYPE_STRING, TYPE_INT_DEC, TYPE_INT_BOOLEAN = 0x03, 0x10, 0x12


def compile_manifest(
    package: str,
    version_code: int,
    version_name: str = "1.0",
    min_sdk: int = 21,
    debuggable: bool = False,
    permissions: tuple[str, ...] = (),
) -> bytes:
    """A binary AndroidManifest.xml as aapt would write it (UTF-16 string pool)."""
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

    nodes = [
        struct.pack("<HHIIIII", 0x0100, 16, 24, 1, 0xFFFFFFFF, s("android"), s(ANDROID_NS)),
        start(
            "manifest",
            [
                attr("versionCode", TYPE_INT_DEC, version_code),
                attr("versionName", TYPE_STRING, version_name),
                attr("package", TYPE_STRING, package, android=False),
            ],
        ),
        start("uses-sdk", [attr("minSdkVersion", TYPE_INT_DEC, min_sdk)]),
        end("uses-sdk"),
    ]
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
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)] if country else []
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    attrs += [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    name = x509.Name(attrs)
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


def _b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def sign_v1(files: dict[str, bytes], key: SigningKey, alias: str = "CERT") -> dict[str, bytes]:
    """``files`` plus META-INF/MANIFEST.MF, <alias>.SF and the PKCS#7 block."""
    sections = {n: f"Name: {n}\r\nSHA-256-Digest: {_b64sha256(d)}\r\n\r\n".encode() for n, d in files.items()}
    manifest = b"Manifest-Version: 1.0\r\nCreated-By: depot-tests\r\n\r\n" + b"".join(sections.values())
    sf = (
        b"Signature-Version: 1.0\r\nCreated-By: depot-tests\r\n"
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


def build_apk(
    path: Path | None = None,
    package: str = "com.example.depot",
    version_code: int = 1,
    key: SigningKey | None = None,
    extra_files: dict[str, bytes] | None = None,
    **manifest: object,
) -> bytes:
    """A v1-signed APK; written to ``path`` when given. Returns its bytes."""
    files = {
        "AndroidManifest.xml": compile_manifest(package, version_code, **manifest),  # type: ignore[arg-type]
        "classes.dex": b"dex\n035\0" + package.encode() + b"\0" * 64,
        **(extra_files or {}),
    }
    signed = sign_v1(files, key or release_key())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in signed.items():
            zf.writestr(name, data)
    data = buf.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data

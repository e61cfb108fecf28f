"""APKs made byte by byte, and seeded mutations of them, for the differential test against apksigner.

``apk_factory`` builds well-formed APKs with ``zipfile``; here every field of the ZIP can be
chosen (method field and real codec apart, CRC, flags, version needed, extra fields, data
descriptors, comments, Zip64 records, duplicates, names that are not UTF-8), and the JAR
signature can be made with SHA-1 or SHA-256, with or without signed attributes, for any minSdk:
so the bases cover the API-level rules of v1 verification too. :func:`mutants` derives seeded,
reproducible damage from each base: every mutant has a name that says what was done.
"""

from __future__ import annotations

import base64
import bz2
import hashlib
import lzma
import random
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tests.support.apk_factory import SigningKey, compile_manifest, sign_block

# -- keys that are the same in every run ---------------------------------------------------------


def _probable_prime(n: int, rng: random.Random) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(32):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, rng: random.Random) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _probable_prime(candidate, rng):
            return candidate


def seeded_rsa_key(seed: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key from a seed (the same in every run, unlike rsa.generate_private_key)."""
    rng = random.Random(seed)
    e = 65537
    while True:
        p, q = _prime(bits // 2, rng), _prime(bits // 2, rng)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            break
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


class DeterministicEcKey(ec.EllipticCurvePrivateKey):
    """An EC key whose ECDSA signatures are deterministic (RFC 6979), so the APKs signed with
    it are the same bytes in every run."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        assert isinstance(signature_algorithm, ec.ECDSA)
        return self._key.sign(data, ec.ECDSA(signature_algorithm.algorithm, deterministic_signing=True))

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        return self._key.exchange(algorithm, peer_public_key)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._key.curve

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        return self._key.private_numbers()

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:
        return self._key.private_bytes(*args, **kwargs)  # type: ignore[arg-type]

    def __copy__(self) -> DeterministicEcKey:
        return self

    def __deepcopy__(self, memo: object) -> DeterministicEcKey:
        return self


def seeded_key(seed: str, kind: str, common_name: str) -> SigningKey:
    """A signing key and self-signed certificate that are the same bytes in every run."""
    import datetime as dt

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    if kind == "rsa":
        key: object = seeded_rsa_key(seed)
        real = key
    else:
        secret = random.Random(seed).getrandbits(240) + 1
        real = ec.derive_private_key(secret, ec.SECP256R1())
        key = DeterministicEcKey(real)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(real.public_key())  # type: ignore[attr-defined]
        .serial_number(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365 * 30))
        .sign(real, hashes.SHA256(), ecdsa_deterministic=True if kind == "ec" else None)  # type: ignore[arg-type]
    )
    return SigningKey(key, cert)


# -- DER and PKCS#7 ------------------------------------------------------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def integer(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8 or 1, "big", signed=True)
    return tlv(0x02, raw)


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(items)))


def alg_id(dotted: str) -> bytes:
    return seq(oid(dotted), b"\x05\x00")


DIGEST_OID = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1"}
HASH = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}
RSA_OID, EC_OID = "1.2.840.113549.1.1.1", "1.2.840.10045.2.1"
SIG_OID = {
    ("RSA", "sha1"): "1.2.840.113549.1.1.5",
    ("RSA", "sha256"): "1.2.840.113549.1.1.11",
    ("EC", "sha1"): "1.2.840.10045.4.1",
    ("EC", "sha256"): "1.2.840.10045.4.3.2",
}


def _cert_issuer_serial(cert_der: bytes) -> tuple[bytes, int]:
    from builder.portal.der import read_tlv

    tbs = read_tlv(cert_der)[0].children()[0].children()
    fields = tbs[1:] if tbs[0].tag == 0xA0 else tbs
    return fields[2].raw, fields[0].as_int()


def pkcs7_sign(
    data: bytes, key: SigningKey, digest: str = "sha1", key_oid_only: bool = True, signed_attrs: bool = False
) -> bytes:
    """A detached PKCS#7 SignedData over ``data`` as jarsigner writes it: the digest algorithm,
    and either the key's OID (rsaEncryption, ecPublicKey) or the combined one as the signature
    algorithm; signed attributes (content type, message digest) when asked."""
    kind = "RSA" if isinstance(key.key, rsa.RSAPrivateKey) else "EC"
    cert = key.cert.public_bytes(serialization.Encoding.DER)
    issuer, serial = _cert_issuer_serial(cert)
    sig_oid = (RSA_OID if kind == "RSA" else EC_OID) if key_oid_only else SIG_OID[(kind, digest)]
    to_sign = data
    attrs = b""
    if signed_attrs:
        content = seq(oid("1.2.840.113549.1.9.3"), set_of(oid("1.2.840.113549.1.7.1")))
        message = seq(oid("1.2.840.113549.1.9.4"), set_of(tlv(0x04, hashlib.new(digest, data).digest())))
        attr_set = set_of(content, message)
        to_sign = attr_set
        attrs = b"\xa0" + attr_set[1:]
    if kind == "RSA":
        assert isinstance(key.key, rsa.RSAPrivateKey)
        signature = key.key.sign(to_sign, padding.PKCS1v15(), HASH[digest]())
    else:
        assert isinstance(key.key, ec.EllipticCurvePrivateKey)
        signature = key.key.sign(to_sign, ec.ECDSA(HASH[digest]()))
    signer_info = seq(
        integer(1),
        seq(issuer, integer(serial)),
        alg_id(DIGEST_OID[digest]),
        attrs,
        alg_id(sig_oid),
        tlv(0x04, signature),
    )
    signed_data = seq(
        integer(1),
        set_of(alg_id(DIGEST_OID[digest])),
        seq(oid("1.2.840.113549.1.7.1")),
        tlv(0xA0, cert),
        set_of(signer_info),
    )
    return seq(oid("1.2.840.113549.1.7.2"), tlv(0xA0, signed_data))


# -- JAR signing ----------------------------------------------------------------------------------


def _wrap(line: bytes, eol: bytes) -> bytes:
    """A manifest line cut at 72 bytes with continuation lines, as jarsigner writes it."""
    out = [line[:72]]
    rest = line[72:]
    while rest:
        out.append(b" " + rest[:71])
        rest = rest[71:]
    return eol.join(out) + eol


@dataclass(frozen=True)
class JarOptions:
    digest: str = "sha256"  # of the entries, the manifest and the PKCS#7 signer
    signed_attrs: bool = False
    key_oid_only: bool = True
    also_signed: str | None = None  # the X-Android-APK-Signed value
    whole_manifest_digest: bool = True
    main_attributes_digest: bool = False
    created_by: str = "1.0 (Android)"
    eol: bytes = b"\r\n"
    digest_algorithms: str | None = None  # a Digest-Algorithms attribute in each manifest section


def jar_sign(
    files: dict[bytes, bytes], key: SigningKey, options: JarOptions = JarOptions()
) -> dict[bytes, bytes]:
    """``files`` (raw entry names → content) plus MANIFEST.MF, CERT.SF and CERT.RSA/EC."""
    eol = options.eol
    label = b"SHA1" if options.digest == "sha1" else b"SHA-256"

    def b64(data: bytes) -> bytes:
        return base64.b64encode(hashlib.new(options.digest, data).digest())

    main = b"Manifest-Version: 1.0" + eol + b"Created-By: " + options.created_by.encode() + eol + eol
    sections = {}
    for name, data in files.items():
        body = _wrap(b"Name: " + name, eol)
        if options.digest_algorithms is not None:
            body += b"Digest-Algorithms: " + options.digest_algorithms.encode() + eol
        sections[name] = body + label + b"-Digest: " + b64(data) + eol + eol
    manifest = main + b"".join(sections.values())
    sf = b"Signature-Version: 1.0" + eol + b"Created-By: " + options.created_by.encode() + eol
    if options.also_signed is not None:
        sf += b"X-Android-APK-Signed: " + options.also_signed.encode() + eol
    if options.whole_manifest_digest:
        sf += label + b"-Digest-Manifest: " + b64(manifest) + eol
    if options.main_attributes_digest:
        sf += label + b"-Digest-Manifest-Main-Attributes: " + b64(main) + eol
    sf += eol
    for name, section in sections.items():
        sf += _wrap(b"Name: " + name, eol) + label + b"-Digest: " + b64(section) + eol + eol
    block = pkcs7_sign(sf, key, options.digest, options.key_oid_only, options.signed_attrs)
    suffix = b"RSA" if isinstance(key.key, rsa.RSAPrivateKey) else b"EC"
    return {
        **files,
        b"META-INF/MANIFEST.MF": manifest,
        b"META-INF/CERT.SF": sf,
        b"META-INF/CERT." + suffix: block,
    }


# -- a ZIP writer with every field under control ----------------------------------------------------

STORED, DEFLATED = 0, 8


@dataclass
class Entry:
    name: bytes
    content: bytes
    method: int = DEFLATED  # the method field written
    codec: str = ""  # "stored", "deflate", "bzip2", "lzma"; default from the method
    flags: int = 0x0800  # UTF-8 names
    version: int = 20
    lfh_extra: bytes = b""
    cd_extra: bytes = b""
    descriptor: str = ""  # "", "signed" (with PK\7\8), "bare"
    crc: int | None = None  # None: the right CRC-32
    zip64_lfh: bool = False  # 0xFFFFFFFF sizes and a Zip64 extra field in the local header

    def payload(self) -> bytes:
        codec = self.codec or ("stored" if self.method == STORED else "deflate")
        if codec == "stored":
            return self.content
        if codec == "deflate":
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            return c.compress(self.content) + c.flush()
        if codec == "bzip2":
            return bz2.compress(self.content)
        if codec == "lzma":
            return lzma.compress(self.content, format=lzma.FORMAT_ALONE)
        raise ValueError(codec)


def write_zip(entries: Sequence[Entry], comment: bytes = b"", zip64_end: bool = False) -> bytes:
    out = bytearray()
    central = bytearray()
    for e in entries:
        data = e.payload()
        crc = zlib.crc32(e.content) if e.crc is None else e.crc
        flags = e.flags | (0x08 if e.descriptor else 0)
        offset = len(out)
        csize, usize = len(data), len(e.content)
        extra = e.lfh_extra
        l_crc, l_csize, l_usize = (0, 0, 0) if e.descriptor else (crc, csize, usize)
        if e.zip64_lfh:
            extra = struct.pack("<HHQQ", 1, 16, usize, csize) + extra
            l_csize = l_usize = 0xFFFFFFFF
        out += struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            e.version,
            flags,
            e.method,
            0,
            0x5821,
            l_crc,
            l_csize,
            l_usize,
            len(e.name),
            len(extra),
        )
        out += e.name + extra + data
        if e.descriptor == "signed":
            out += struct.pack("<4sIII", b"PK\x07\x08", crc, csize, usize)
        elif e.descriptor == "bare":
            out += struct.pack("<III", crc, csize, usize)
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            0x0314,
            e.version,
            flags,
            e.method,
            0,
            0x5821,
            crc,
            csize,
            usize,
            len(e.name),
            len(e.cd_extra),
            0,
            0,
            0,
            0,
            offset,
        )
        central += e.name + e.cd_extra
    cd_offset = len(out)
    out += central
    if zip64_end:
        z64 = len(out)
        out += struct.pack(
            "<4sQHHIIQQQQ",
            b"PK\x06\x06",
            44,
            45,
            45,
            0,
            0,
            len(entries),
            len(entries),
            len(central),
            cd_offset,
        )
        out += struct.pack("<4sIQI", b"PK\x06\x07", 0, z64, 1)
    out += struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), cd_offset, len(comment)
    )
    return bytes(out + comment)


# -- the bases ------------------------------------------------------------------------------------


def app_files(package: str, min_sdk: int | None, target_sdk: int | None = None) -> dict[bytes, bytes]:
    rng = random.Random(package)
    text = " ".join(rng.choice(["car", "store", "depot", "apk", "android", "signal"]) for _ in range(600))
    return {
        b"AndroidManifest.xml": compile_manifest(package, 7, "1.7", min_sdk=min_sdk, target_sdk=target_sdk),
        b"classes.dex": b"dex\n035\0" + bytes(rng.getrandbits(8) for _ in range(1500)) + b"\0" * 800,
        b"resources.arsc": b"\x02\x00\x0c\x00" + bytes(range(256)) * 4,
        b"assets/readme.txt": text.encode(),
        b"lib/armeabi-v7a/libnative.so": b"\x7fELF\x01\x01\x01" + b"\x00" * 300,
        b"res/raw/empty.bin": b"",
    }


def default_method(name: bytes) -> int:
    return (
        STORED if name.startswith(b"lib/") or name in (b"resources.arsc", b"res/raw/empty.bin") else DEFLATED
    )


@dataclass(frozen=True)
class Recipe:
    """How a base APK is made: manifest facts, key, JAR options, block schemes, ZIP layout."""

    name: str
    key: Callable[[], SigningKey]
    min_sdk: int | None = 21
    target_sdk: int | None = None
    v1: JarOptions | None = field(default_factory=JarOptions)
    block: tuple[str, ...] = ()
    layout: Callable[[list[Entry]], list[Entry]] | None = None
    comment: bytes = b""
    zip64_end: bool = False
    files: Callable[[dict[bytes, bytes]], dict[bytes, bytes]] | None = None
    edit_signed: Callable[[dict[bytes, bytes]], dict[bytes, bytes]] | None = None  # after v1 signing

    def build(self) -> bytes:
        files = app_files(f"com.example.diff.{self.name.replace('-', '_')}", self.min_sdk, self.target_sdk)
        if self.files is not None:
            files = self.files(files)
        if self.v1 is not None:
            options = self.v1
            if options.also_signed is None and self.block:
                options = replace(options, also_signed=", ".join(s.removeprefix("v") for s in self.block))
            files = jar_sign(files, self.key(), options)
        if self.edit_signed is not None:
            files = self.edit_signed(files)
        entries = [Entry(n, c, method=default_method(n)) for n, c in files.items()]
        if self.layout is not None:
            entries = self.layout(entries)
        data = write_zip(entries, self.comment, self.zip64_end)
        if self.block:
            data = sign_block(data, self.key(), self.block)
        return data


def per_entry(change: Callable[[Entry], Entry | None]) -> Callable[[list[Entry]], list[Entry]]:
    def layout(entries: list[Entry]) -> list[Entry]:
        out = []
        for e in entries:
            new = change(e)
            out.append(e if new is None else new)
        return out

    return layout


def only(name: bytes, **changes: object) -> Callable[[list[Entry]], list[Entry]]:
    return per_entry(lambda e: replace(e, **changes) if e.name == name else None)  # type: ignore[arg-type]


def stored_meta_inf(entries: list[Entry]) -> list[Entry]:
    return [replace(e, method=STORED) if e.name.startswith(b"META-INF/") else e for e in entries]


def edit_manifest(change: Callable[[bytes], bytes]) -> Callable[[dict[bytes, bytes]], dict[bytes, bytes]]:
    def edit(files: dict[bytes, bytes]) -> dict[bytes, bytes]:
        return {**files, b"META-INF/MANIFEST.MF": change(files[b"META-INF/MANIFEST.MF"])}

    return edit


def _sections(manifest: bytes) -> list[bytes]:
    parts = manifest.split(b"\r\n\r\n")
    return [p + b"\r\n\r\n" for p in parts[:-1]]


def _swap_sections(manifest: bytes) -> bytes:
    s = _sections(manifest)
    return b"".join([s[0], *reversed(s[1:])])


def _dup_section(manifest: bytes) -> bytes:
    s = _sections(manifest)
    return manifest + s[1]


def _continuation_in_main(manifest: bytes) -> bytes:
    return manifest.replace(
        b"Created-By: ", b"X-Extra: first part\r\n  and a continuation\r\nCreated-By: ", 1
    )


def recipes(keys: dict[str, Callable[[], SigningKey]]) -> list[Recipe]:
    """The bases: schemes x minSdk x algorithms, and ZIP layouts Android reads in its own way."""
    rsa_, ec_ = keys["rsa"], keys["ec"]
    sha1 = JarOptions(digest="sha1")
    sha256 = JarOptions(digest="sha256")
    attrs = JarOptions(digest="sha256", signed_attrs=True)
    long_name = b"assets/" + b"a-rather-long-directory-name/" * 4 + b"file-with-a-long-name.txt"
    out = [
        # scheme and platform rules
        Recipe("v1-rsa-sha1-min3", rsa_, min_sdk=3, v1=sha1),
        Recipe("v1-rsa-sha256-min3", rsa_, min_sdk=3, v1=sha256),
        Recipe("v1-rsa-sha256-min18", rsa_, min_sdk=18, v1=sha256),
        Recipe("v1-rsa-attrs-min18", rsa_, min_sdk=18, v1=attrs),
        Recipe("v1-rsa-attrs-min19", rsa_, min_sdk=19, v1=attrs),
        Recipe("v1-ec-sha1-min17", ec_, min_sdk=17, v1=sha1),
        Recipe("v1-ec-sha1-min18", ec_, min_sdk=18, v1=sha1),
        Recipe("v1-ec-sha256-min21", ec_, min_sdk=21, v1=JarOptions(digest="sha256", key_oid_only=False)),
        Recipe(
            "v1-ec-sha256-combined-min20", ec_, min_sdk=20, v1=JarOptions(digest="sha256", key_oid_only=False)
        ),
        Recipe("v1-rsa-nouses-sdk", rsa_, min_sdk=None, v1=sha1),
        Recipe("v1-rsa-min24", rsa_, min_sdk=24, v1=sha256),
        Recipe("v1-rsa-target30", rsa_, min_sdk=21, target_sdk=30, v1=sha256),
        Recipe(
            "v1-rsa-digest-algorithms",
            rsa_,
            min_sdk=10,
            v1=JarOptions(digest="sha1", digest_algorithms="SHA1"),
        ),
        Recipe(
            "v1-rsa-main-attrs", rsa_, min_sdk=21, v1=JarOptions(digest="sha256", main_attributes_digest=True)
        ),
        Recipe(
            "v1-rsa-no-whole-digest",
            rsa_,
            min_sdk=21,
            v1=JarOptions(digest="sha1", whole_manifest_digest=False),
        ),
        Recipe("v1-rsa-signtool", rsa_, min_sdk=21, v1=JarOptions(digest="sha1", created_by="signtool 1.0")),
        Recipe("v1-rsa-lf", rsa_, min_sdk=21, v1=JarOptions(digest="sha1", eol=b"\n")),
        Recipe("v1-stripped-claim", rsa_, min_sdk=21, v1=JarOptions(digest="sha256", also_signed="2")),
        Recipe(
            "v1-claims-unknown-scheme", rsa_, min_sdk=21, v1=JarOptions(digest="sha256", also_signed="7, x")
        ),
        Recipe("v1v2-rsa-min23", rsa_, min_sdk=23, v1=sha256, block=("v2",)),
        Recipe("v1v2-ec-min24", ec_, min_sdk=24, v1=sha256, block=("v2",)),
        Recipe("v1v2v3-rsa-min23", rsa_, min_sdk=23, v1=sha256, block=("v2", "v3")),
        Recipe("v2-rsa-min24", rsa_, min_sdk=24, v1=None, block=("v2",)),
        Recipe("v2-rsa-min23", rsa_, min_sdk=23, v1=None, block=("v2",)),
        Recipe("v2v3-ec-min28", ec_, min_sdk=28, v1=None, block=("v2", "v3")),
        Recipe("v3-ec-min28", ec_, min_sdk=28, v1=None, block=("v3",)),
        Recipe("v2-ec-target30", ec_, min_sdk=24, target_sdk=30, v1=None, block=("v2",)),
        # META-INF stored: flipped bytes land in the manifest and the PKCS#7 block themselves
        Recipe("v1-rsa-stored-meta-inf", rsa_, min_sdk=21, v1=sha1, layout=stored_meta_inf),
        Recipe(
            "v1-ec-attrs-stored-meta-inf",
            ec_,
            min_sdk=21,
            v1=JarOptions(digest="sha256", signed_attrs=True, key_oid_only=False),
            layout=stored_meta_inf,
        ),
        # ZIP layouts (v1: every entry is read; v2-only at 24: only the manifest is)
        Recipe("zip-descriptors", rsa_, v1=sha1, layout=per_entry(lambda e: replace(e, descriptor="signed"))),
        Recipe(
            "zip-bare-descriptors", rsa_, v1=sha1, layout=per_entry(lambda e: replace(e, descriptor="bare"))
        ),
        Recipe(
            "zip-extras",
            rsa_,
            v1=sha1,
            layout=per_entry(
                lambda e: replace(
                    e, lfh_extra=b"\x35\xd9\x06\x00\x00\x10" + b"\0" * 4, cd_extra=b"\xca\xfe\x00\x00"
                )
            ),
        ),
        Recipe("zip-comment", rsa_, v1=sha1, comment=b"built by depot tests PK\x05\x06 not a record"),
        Recipe(
            "zip-method12-deflated", rsa_, v1=sha1, layout=only(b"classes.dex", method=12, codec="deflate")
        ),
        Recipe(
            "zip-method99-deflated-v2",
            rsa_,
            min_sdk=24,
            v1=None,
            block=("v2",),
            layout=only(b"classes.dex", method=99, codec="deflate"),
        ),
        Recipe("zip-bzip2", rsa_, v1=sha1, layout=only(b"classes.dex", method=12, codec="bzip2")),
        Recipe("zip-lzma", rsa_, v1=sha1, layout=only(b"assets/readme.txt", method=14, codec="lzma")),
        Recipe(
            "zip-bzip2-unread-v2",
            rsa_,
            min_sdk=24,
            v1=None,
            block=("v2",),
            layout=only(b"classes.dex", method=12, codec="bzip2"),
        ),
        Recipe(
            "zip-bzip2-v1v2-min24",  # apksigner does not read v1 from API 24 on: accepted
            rsa_,
            min_sdk=24,
            v1=sha1,
            block=("v2",),
            layout=only(b"classes.dex", method=12, codec="bzip2"),
        ),
        Recipe(
            "zip-bzip2-manifest-v2",
            rsa_,
            min_sdk=24,
            v1=None,
            block=("v2",),
            layout=only(b"AndroidManifest.xml", method=12, codec="bzip2"),
        ),
        Recipe("zip-wrong-crcs", rsa_, v1=sha1, layout=only(b"classes.dex", crc=0x12345678)),
        Recipe("zip-encrypted-flag", rsa_, v1=sha1, layout=only(b"classes.dex", flags=0x0801)),
        Recipe("zip-version-needed", rsa_, v1=sha1, layout=per_entry(lambda e: replace(e, version=0xFF))),
        Recipe("zip-duplicate", rsa_, v1=sha1, layout=lambda es: [*es, es[1]]),
        Recipe("zip-duplicate-v2", rsa_, min_sdk=24, v1=None, block=("v2",), layout=lambda es: [*es, es[1]]),
        Recipe(
            "zip-directories",
            rsa_,
            v1=sha1,
            layout=lambda es: [
                Entry(b"assets/", b"", method=STORED),
                Entry(b"lib/", b"", method=STORED),
                *es,
            ],
        ),
        Recipe("zip-zip64-end", rsa_, v1=sha1, zip64_end=True),
        Recipe("zip-zip64-end-v2", rsa_, min_sdk=24, v1=None, block=("v2",), zip64_end=True),
        Recipe("zip-zip64-local", rsa_, v1=sha1, layout=only(b"classes.dex", zip64_lfh=True)),
        Recipe("zip-no-utf8-flag", rsa_, v1=sha1, layout=per_entry(lambda e: replace(e, flags=0))),
        Recipe("name-long", rsa_, v1=sha1, files=lambda f: {**f, long_name: b"long name\n"}),
        Recipe("name-unicode", rsa_, v1=sha1, files=lambda f: {**f, "assets/straße/café.txt".encode(): b"u"}),
        Recipe("name-bad-utf8", rsa_, v1=sha1, files=lambda f: {**f, b"assets/bad-\xff\xfe-name.txt": b"b"}),
        # MANIFEST.MF edited after signing: the .SF's per-section digests decide
        Recipe(
            "mf-main-attribute-added",
            rsa_,
            v1=sha1,
            edit_signed=edit_manifest(lambda m: m.replace(b"\r\n\r\n", b"\r\nX-Added: yes\r\n\r\n", 1)),
        ),
        Recipe("mf-main-continuation", rsa_, v1=sha1, edit_signed=edit_manifest(_continuation_in_main)),
        Recipe("mf-sections-reordered", rsa_, v1=sha1, edit_signed=edit_manifest(_swap_sections)),
        Recipe(
            "mf-blank-lines",
            rsa_,
            v1=sha1,
            edit_signed=edit_manifest(lambda m: m.replace(b"\r\n\r\nName", b"\r\n\r\n\r\n\r\nName")),
        ),
        Recipe(
            "mf-name-lowercase",
            rsa_,
            v1=sha1,
            edit_signed=edit_manifest(lambda m: m.replace(b"Name: classes.dex", b"name: classes.dex")),
        ),
        Recipe("mf-duplicate-section", rsa_, v1=sha1, edit_signed=edit_manifest(_dup_section)),
        Recipe(
            "mf-main-attrs-digest-broken",
            rsa_,
            v1=JarOptions(digest="sha1", main_attributes_digest=True),
            edit_signed=edit_manifest(
                lambda m: m.replace(b"Manifest-Version: 1.0", b"Manifest-Version: 1.1")
            ),
        ),
        Recipe("mf-no-final-newline", rsa_, v1=sha1, edit_signed=edit_manifest(lambda m: m[:-2])),
        Recipe(
            "mf-unknown-entry",
            rsa_,
            v1=sha1,
            edit_signed=edit_manifest(lambda m: m + b"Name: nothing.here\r\nSHA1-Digest: AAAA\r\n\r\n"),
        ),
        Recipe(
            "mf-lf-in-main",
            rsa_,
            v1=sha1,
            edit_signed=edit_manifest(
                lambda m: m.replace(b"Manifest-Version: 1.0\r\n", b"Manifest-Version: 1.0\n")
            ),
        ),
    ]
    return out


# -- looking into a ZIP for mutations -------------------------------------------------------------


@dataclass
class Record:
    cd: int  # offset of the central directory record
    lfh: int  # offset of the local header
    name: bytes
    method: int
    csize: int
    usize: int
    n: int
    e: int
    c: int


@dataclass
class View:
    data: bytes
    eocd: int
    cd: int
    cd_size: int
    records: list[Record]

    def data_of(self, r: Record) -> tuple[int, int] | None:
        if r.lfh + 30 > len(self.data) or self.data[r.lfh : r.lfh + 4] != b"PK\x03\x04":
            return None
        n, e = struct.unpack_from("<HH", self.data, r.lfh + 26)
        start = r.lfh + 30 + n + e
        size = r.usize if r.method == 0 else r.csize
        if start + size > len(self.data):
            return None
        return start, size


def view(data: bytes) -> View | None:
    """The end record (the last one whose comment reaches the end), directory and records, or None."""
    eocd = len(data) - 22
    while eocd >= max(0, len(data) - 0xFFFF - 22):
        eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - 0xFFFF - 22), eocd + 4)
        if eocd < 0 or struct.unpack_from("<H", data, eocd + 20)[0] == len(data) - 22 - eocd:
            break
        eocd -= 1
    if eocd < 0 or eocd + 22 > len(data):
        return None
    count, cd_size, cd = struct.unpack_from("<HII", data, eocd + 10)
    records = []
    pos = cd
    for _ in range(count):
        if pos + 46 > len(data) or data[pos : pos + 4] != b"PK\x01\x02":
            return None
        (method,) = struct.unpack_from("<H", data, pos + 10)
        csize, usize, n, e, c = struct.unpack_from("<IIHHH", data, pos + 20)
        (lfh,) = struct.unpack_from("<I", data, pos + 42)
        records.append(Record(pos, lfh, data[pos + 46 : pos + 46 + n], method, csize, usize, n, e, c))
        pos += 46 + n + e + c
    return View(data, eocd, cd, cd_size, records) if records else None


def _put(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def _flip(data: bytes, offset: int, rng: random.Random) -> bytes:
    b = bytearray(data)
    b[offset] ^= rng.randrange(1, 256)
    return bytes(b)


# -- mutations ------------------------------------------------------------------------------------

Mutation = Callable[[bytes, random.Random], "tuple[str, bytes] | None"]


def _pick(v: View, rng: random.Random, want: Callable[[Record], bool] = lambda r: True) -> Record | None:
    chosen = [r for r in v.records if want(r)]
    return rng.choice(chosen) if chosen else None


def _field(where: str, cd_off: int, lfh_off: int, fmt: str) -> Mutation:
    """Set a header field of a random entry in the central directory, the local header or both."""

    def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
        v = view(data)
        if v is None:
            return None
        r = _pick(v, rng)
        assert r is not None
        size = struct.calcsize(fmt)
        value = rng.choice({"<H": [12, 14, 99, 0xFF, 1], "<I": [0, 1, 0x12345678, 0xFFFFFFFF]}.get(fmt, [1]))
        if where == "flags":
            value = struct.unpack_from(fmt, data, r.cd + cd_off)[0] ^ rng.choice([0x01, 0x08, 0x41])
        side = rng.choice(["cd", "lfh", "both"])
        out = data
        if side in ("cd", "both"):
            out = _put(out, r.cd + cd_off, fmt, value)
        if side in ("lfh", "both") and r.lfh + lfh_off + size <= len(out):
            out = _put(out, r.lfh + lfh_off, fmt, value)
        return f"{where}={value:#x} in {side} of {r.name!r}", out

    return mutate


def method_change(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    return _field("method", 10, 8, "<H")(data, rng)


def flags_change(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    return _field("flags", 8, 6, "<H")(data, rng)


def version_needed(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    return _field("version-needed", 6, 4, "<H")(data, rng)


def crc_change(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    return _field("crc", 16, 14, "<I")(data, rng)


def usize_change(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    r = _pick(v, rng)
    assert r is not None
    value = max(0, r.usize + rng.choice([-1, 1, 7, 1 << 20, -r.usize]))
    return f"cd uncompressed size {r.usize}->{value} of {r.name!r}", _put(data, r.cd + 24, "<I", value)


def csize_change(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    r = _pick(v, rng)
    assert r is not None
    value = max(0, r.csize + rng.choice([-1, 1, 100]))
    side = rng.choice(["cd", "both"])
    out = _put(data, r.cd + 20, "<I", value)
    if side == "both":
        out = _put(out, r.lfh + 18, "<I", value)
    return f"compressed size {r.csize}->{value} in {side} of {r.name!r}", out


def eocd_count(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    delta = rng.choice([-1, 1])
    count = len(v.records) + delta
    which = rng.choice(["total", "disk", "both"])
    out = data
    if which in ("total", "both"):
        out = _put(out, v.eocd + 10, "<H", count)
    if which in ("disk", "both"):
        out = _put(out, v.eocd + 8, "<H", count)
    return f"EOCD {which} entry count {delta:+d}", out


def eocd_fields(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    choice = rng.choice(
        ["cd-offset+1", "cd-offset-1", "cd-size+1", "cd-size-1", "zip64-offset", "zip64-count"]
    )
    if choice.startswith("cd-offset"):
        return choice, _put(data, v.eocd + 16, "<I", v.cd + (1 if choice.endswith("+1") else -1))
    if choice.startswith("cd-size"):
        return choice, _put(data, v.eocd + 12, "<I", v.cd_size + (1 if choice.endswith("+1") else -1))
    if choice == "zip64-offset":
        return choice, _put(data, v.eocd + 16, "<I", 0xFFFFFFFF)
    return choice, _put(_put(data, v.eocd + 10, "<H", 0xFFFF), v.eocd + 8, "<H", 0xFFFF)


def zip64_locator(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    """A Zip64 end record and locator inserted between the central directory and its end record."""
    v = view(data)
    if v is None:
        return None
    z64 = struct.pack(
        "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, len(v.records), len(v.records), v.cd_size, v.cd
    )
    loc = struct.pack("<4sIQI", b"PK\x06\x07", 0, v.eocd, 1)
    return "zip64 end record inserted", data[: v.eocd] + z64 + loc + data[v.eocd :]


def comment_change(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    (length,) = struct.unpack_from("<H", data, v.eocd + 20)
    choice = rng.choice(["length+1", "length-1", "appended", "fake-eocd"])
    if choice == "length+1":
        return choice, _put(data, v.eocd + 20, "<H", length + 1)
    if choice == "length-1":
        return (choice, _put(data, v.eocd + 20, "<H", length - 1)) if length else None
    extra = b"a comment" if choice == "appended" else b"PK\x05\x06" + b"\0" * 18
    return choice, _put(data + extra, v.eocd + 20, "<H", length + len(extra))


def flip_entry_data(want: Callable[[Record], bool], label: str) -> Mutation:
    def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
        v = view(data)
        if v is None:
            return None
        r = _pick(v, rng, want)
        if r is None:
            return None
        span = v.data_of(r)
        if span is None or span[1] == 0:
            return None
        at = span[0] + rng.randrange(span[1])
        return f"{label}: byte {at - span[0]} of {r.name!r} flipped", _flip(data, at, rng)

    return mutate


flip_deflated = flip_entry_data(lambda r: r.method != 0, "deflated data")
flip_stored = flip_entry_data(lambda r: r.method == 0, "stored data")
flip_manifest_mf = flip_entry_data(lambda r: r.name == b"META-INF/MANIFEST.MF", "MANIFEST.MF")
flip_signature_file = flip_entry_data(lambda r: r.name.startswith(b"META-INF/CERT."), "signature file")


def bad_utf8_name(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    r = _pick(v, rng, lambda r: r.n > 2)
    if r is None:
        return None
    i = rng.randrange(r.n)
    bad = rng.choice([0xFF, 0xC3, 0x80, 0xED])
    side = rng.choice(["cd", "lfh", "both"])
    b = bytearray(data)
    if side in ("cd", "both"):
        b[r.cd + 46 + i] = bad
    if side in ("lfh", "both") and r.lfh + 30 + i < len(b):
        b[r.lfh + 30 + i] = bad
    return f"name byte {i} of {r.name!r} -> {bad:#x} in {side}", bytes(b)


def truncate(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    at = rng.randrange(0, len(data))
    return f"truncated at {at} of {len(data)}", data[:at]


def random_flips(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    out = data
    where = []
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(out))
        where.append(at)
        out = _flip(out, at, rng)
    return f"random bytes flipped at {where}", out


def region_flip(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    regions = {"eocd": (v.eocd, len(data)), "cd": (v.cd, v.eocd)}
    magic = data.rfind(b"APK Sig Block 42", 0, v.cd + 1)
    if magic > 0:
        size = struct.unpack_from("<Q", data, magic - 8)[0]
        regions["signing-block"] = (max(0, magic + 16 - size - 8), magic + 16)
    r = _pick(v, rng)
    assert r is not None
    regions["local-header"] = (r.lfh, min(len(data), r.lfh + 30 + r.n))
    name = rng.choice(sorted(regions))
    lo, hi = regions[name]
    if hi <= lo:
        return None
    at = rng.randrange(lo, hi)
    return f"{name} byte {at - lo} flipped", _flip(data, at, rng)


def duplicate_record(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    r = _pick(v, rng)
    assert r is not None
    record = data[r.cd : r.cd + 46 + r.n + r.e + r.c]
    eocd = bytearray(data[v.eocd :])
    struct.pack_into("<HHI", eocd, 8, len(v.records) + 1, len(v.records) + 1, v.cd_size + len(record))
    return f"central record of {r.name!r} duplicated", data[: v.eocd] + record + bytes(eocd)


def descriptor_flag(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    r = _pick(v, rng)
    assert r is not None
    side = rng.choice(["cd", "lfh", "both"])
    out = data
    if side in ("cd", "both"):
        out = _put(out, r.cd + 8, "<H", struct.unpack_from("<H", out, r.cd + 8)[0] ^ 0x08)
    if side in ("lfh", "both"):
        out = _put(out, r.lfh + 6, "<H", struct.unpack_from("<H", out, r.lfh + 6)[0] ^ 0x08)
    return f"data descriptor flag toggled in {side} of {r.name!r}", out


def extra_length(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    v = view(data)
    if v is None:
        return None
    r = _pick(v, rng)
    assert r is not None
    side = rng.choice(["lfh", "cd"])
    delta = rng.choice([1, 4, 200])
    if side == "lfh":
        (e,) = struct.unpack_from("<H", data, r.lfh + 28)
        return f"local extra length +{delta} of {r.name!r}", _put(data, r.lfh + 28, "<H", e + delta)
    return f"central extra length +{delta} of {r.name!r}", _put(data, r.cd + 30, "<H", r.e + delta)


def signing_block_pair(data: bytes, rng: random.Random) -> tuple[str, bytes] | None:
    magic = data.find(b"APK Sig Block 42")
    if magic < 0:
        return None
    size = struct.unpack_from("<Q", data, magic - 8)[0]
    start = magic + 16 - size - 8
    choice = rng.choice(["first-pair-id", "first-pair-length", "footer-size", "header-size", "magic"])
    if choice == "first-pair-id":
        return choice, _put(data, start + 16, "<I", 0x5EEDF00D)
    if choice == "first-pair-length":
        return choice, _put(data, start + 8, "<Q", rng.choice([0, 3, 1 << 40]))
    if choice == "footer-size":
        return choice, _put(data, magic - 8, "<Q", size + 8)
    if choice == "header-size":
        return choice, _put(data, start, "<Q", size - 8)
    return choice, data[:magic] + b"APK Sig Block 43" + data[magic + 16 :]


MUTATIONS: list[tuple[str, Mutation]] = [
    ("method", method_change),
    ("flags", flags_change),
    ("version-needed", version_needed),
    ("crc", crc_change),
    ("uncompressed-size", usize_change),
    ("compressed-size", csize_change),
    ("eocd-count", eocd_count),
    ("eocd-fields", eocd_fields),
    ("zip64-locator", zip64_locator),
    ("comment", comment_change),
    ("flip-deflated", flip_deflated),
    ("flip-stored", flip_stored),
    ("flip-manifest-mf", flip_manifest_mf),
    ("flip-signature-file", flip_signature_file),
    ("bad-utf8-name", bad_utf8_name),
    ("truncate", truncate),
    ("random-flips", random_flips),
    ("region-flip", region_flip),
    ("duplicate-record", duplicate_record),
    ("descriptor-flag", descriptor_flag),
    ("extra-length", extra_length),
    ("signing-block", signing_block_pair),
]


@dataclass(frozen=True)
class Mutant:
    name: str  # "<base> / <mutation>: <what was done>", enough to reproduce it with the seed
    data: bytes


def mutants(bases: dict[str, bytes], seed: int, per_base: int) -> Iterator[Mutant]:
    """Each base unchanged, then ``per_base`` seeded mutants of it, cycling through the mutations
    (those that do not apply, like signing-block damage on a v1-only APK, are skipped)."""
    for base_index, (name, data) in enumerate(sorted(bases.items())):
        yield Mutant(f"{name} / unchanged", data)
        rng = random.Random(seed * 1000 + base_index)
        made = tried = 0
        order = list(MUTATIONS)
        rng.shuffle(order)
        while made < per_base and tried < per_base * 4:
            label, mutate = order[tried % len(order)]
            tried += 1
            try:
                result = mutate(data, rng)
            except (struct.error, IndexError, ValueError):  # a field points outside this file
                continue
            if result is None:
                continue
            what, mutated = result
            if mutated == data:
                continue
            made += 1
            yield Mutant(f"{name} / {label}: {what}", mutated)


# -- named malformed APKs (for the runtime and build tests) ------------------------------------------


def _patched(data: bytes, name: bytes, places: Sequence[tuple[str, int]], fmt: str, value: int) -> bytes:
    """``data`` with a header field of entry ``name`` set in the given places ("cd"/"lfh", offset)."""
    found = view(data)
    assert found is not None
    [record] = [r for r in found.records if r.name == name]
    out = data
    for side, offset in places:
        out = _put(out, (record.cd if side == "cd" else record.lfh) + offset, fmt, value)
    return out


def _name_byte(data: bytes, name: bytes, sides: Sequence[str]) -> bytes:
    found = view(data)
    assert found is not None
    [record] = [r for r in found.records if r.name == name]
    out = bytearray(data)
    for side in sides:
        out[(record.cd + 46 if side == "cd" else record.lfh + 30) + 3] = 0xFF
    return bytes(out)


def _eocd_total(data: bytes, delta: int) -> bytes:
    found = view(data)
    assert found is not None
    return _put(data, found.eocd + 10, "<H", len(found.records) + delta)


def _flip_in(data: bytes, name: bytes) -> bytes:
    found = view(data)
    assert found is not None
    [record] = [r for r in found.records if r.name == name]
    span = found.data_of(record)
    assert span is not None
    out = bytearray(data)
    out[span[0] + span[1] // 2] ^= 0x55
    return bytes(out)


MALFORMED_LAYOUTS: dict[str, Callable[[list[Entry]], list[Entry]]] = {
    "bzip2-entry": only(b"classes.dex", method=12, codec="bzip2"),
    "lzma-entry": only(b"assets/readme.txt", method=14, codec="lzma"),
    "method-99-on-stored-bytes": only(b"classes.dex", method=99, codec="stored"),
    "encrypted-flag-on-garbage": only(b"classes.dex", flags=0x0801, method=99, codec="stored"),
    "zip64-local-header": only(b"classes.dex", zip64_lfh=True),
    "duplicate-entry": lambda es: [*es, es[1]],
}
MALFORMED_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "central-name-not-utf8": lambda d: _name_byte(d, b"classes.dex", ["cd"]),
    "name-not-utf8-in-both-headers": lambda d: _name_byte(d, b"assets/readme.txt", ["cd", "lfh"]),
    "eocd-count-one-lower": lambda d: _eocd_total(d, -1),
    "eocd-count-one-higher": lambda d: _eocd_total(d, +1),
    "flipped-byte-in-manifest-mf": lambda d: _flip_in(d, b"META-INF/MANIFEST.MF"),
    "flipped-byte-in-deflated-entry": lambda d: _flip_in(d, b"classes.dex"),
    "crc-in-central-directory-only": lambda d: _patched(d, b"classes.dex", [("cd", 16)], "<I", 0x1234),
    "crc-in-local-header-only": lambda d: _patched(d, b"classes.dex", [("lfh", 14)], "<I", 0x1234),
    "uncompressed-size-changed": lambda d: _patched(d, b"classes.dex", [("cd", 24)], "<I", 1),
    "version-needed-0xff-and-method-99-on-stored-data": lambda d: _patched(
        _patched(d, b"lib/armeabi-v7a/libnative.so", [("cd", 6), ("lfh", 4)], "<H", 0xFF),
        b"lib/armeabi-v7a/libnative.so",
        [("cd", 10), ("lfh", 8)],
        "<H",
        99,
    ),
    "truncated": lambda d: d[: len(d) * 2 // 3],
    "not-a-zip": lambda d: b"<html>this is not an APK</html>",
}
MANIFEST_BOMB = (
    b"Manifest-Version: 1.0\r\nX-Bomb: a\r\n " + b"y" * 70 + (b"\r\n " + b"y" * 70) * 3_000 + b"\r\n"
)
MALFORMED_CASES = sorted([*MALFORMED_LAYOUTS, *MALFORMED_DAMAGE, "manifest-mf-bomb"])


def malformed_base(key: SigningKey) -> bytes:
    return Recipe("malformed-base", lambda: key, v1=JarOptions(digest="sha1")).build()


def malformed_case(name: str, key: SigningKey) -> bytes:
    """One of :data:`MALFORMED_CASES`: an APK every reader must refuse, built from a v1 APK."""
    if name in MALFORMED_LAYOUTS:
        return Recipe(
            f"case-{name}", lambda: key, v1=JarOptions(digest="sha1"), layout=MALFORMED_LAYOUTS[name]
        ).build()
    if name == "manifest-mf-bomb":
        return Recipe(
            "case-bomb",
            lambda: key,
            v1=JarOptions(digest="sha1"),
            edit_signed=lambda f: {**f, b"META-INF/MANIFEST.MF": MANIFEST_BOMB},
        ).build()
    return MALFORMED_DAMAGE[name](malformed_base(key))

"""The APK Signing Block and its v2 and v3 signature schemes, with apksig's rules.

Verification means recomputing what was signed and checking it with the signer's public key,
not noticing that a signature block exists. The block is found as apksig finds it (right before
a central directory that the end record follows immediately; sizes in header and footer equal);
a block or scheme entry that cannot be found or walked counts as *absent*, exactly as on
Android, so the APK then falls back to the older schemes (whose stripping protection catches
the removal). For each signer: the signature with the strongest algorithm that every targeted
platform supports is verified over the signed data with the signer's public key, the first
certificate must carry that key, the digest records must list the signature records'
algorithms, and the chunked SHA-256/512 (or verity) digest of the file (entries, central
directory, end record pointing at the block) must equal the signed one. v3 signers must cover
the platforms from the targeted minimum up without gaps. A v2 signer's stripping-protection
attribute requires the v3 block it names.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from builder.portal.der import DerError, load_certificate
from builder.portal.errors import ApkLimitError
from builder.portal.zipfmt import ApkZip

SIG_BLOCK_MAGIC = b"APK Sig Block 42"
V2_ID = 0x7109871A
V3_ID = 0xF05368C0
STRIPPING_PROTECTION_ATTR = 0xBEEFF00D
PROOF_OF_ROTATION_ATTR = 0x3BA06F8C
INT_MAX = 0x7FFFFFFF
SDK_N, SDK_P = 24, 28
CHUNK = 1 << 20
VERITY_CHUNK = 4096
MAX_SIGNERS = 10  # per scheme (apksig's limit since 2023; 31.0.2 has none)
VERITY_SALT = b"\0" * 8

# algorithm id → (name, key type, padding, hash, content digest, first platform that has it)
ALGORITHMS: dict[int, tuple[str, str, str, type[hashes.HashAlgorithm], str, int]] = {
    0x0101: ("RSA_PSS_WITH_SHA256", "RSA", "pss", hashes.SHA256, "sha256", SDK_N),
    0x0102: ("RSA_PSS_WITH_SHA512", "RSA", "pss", hashes.SHA512, "sha512", SDK_N),
    0x0103: ("RSA_PKCS1_V1_5_WITH_SHA256", "RSA", "pkcs1", hashes.SHA256, "sha256", SDK_N),
    0x0104: ("RSA_PKCS1_V1_5_WITH_SHA512", "RSA", "pkcs1", hashes.SHA512, "sha512", SDK_N),
    0x0201: ("ECDSA_WITH_SHA256", "EC", "", hashes.SHA256, "sha256", SDK_N),
    0x0202: ("ECDSA_WITH_SHA512", "EC", "", hashes.SHA512, "sha512", SDK_N),
    0x0301: ("DSA_WITH_SHA256", "DSA", "", hashes.SHA256, "sha256", SDK_N),
    0x0421: ("VERITY_RSA_PKCS1_V1_5_WITH_SHA256", "RSA", "pkcs1", hashes.SHA256, "verity", SDK_P),
    0x0423: ("VERITY_ECDSA_WITH_SHA256", "EC", "", hashes.SHA256, "verity", SDK_P),
    0x0425: ("VERITY_DSA_WITH_SHA256", "DSA", "", hashes.SHA256, "verity", SDK_P),
}
DIGEST_STRENGTH = {"sha256": 0, "verity": 1, "sha512": 2}
DIGEST_NAMES = {"sha256": "CHUNKED_SHA256", "sha512": "CHUNKED_SHA512", "verity": "VERITY_CHUNKED_SHA256"}


class Malformed(Exception):
    """A record of the block cannot be read (apksig: ApkFormatException, BufferUnderflow)."""


class BlockError(Exception):
    """A signer does not verify."""


@dataclass
class Signer:
    certs: list[bytes] = field(default_factory=list)
    min_sdk: int = 0
    max_sdk: int = 0
    digests: list[tuple[int, bytes]] = field(default_factory=list)
    lineage: bool = False


@dataclass
class BlockResult:
    verified: bool = False
    signers: list[Signer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lineage: bool = False  # a v3 signer carries a proof-of-rotation lineage (not evaluated)


@dataclass(frozen=True)
class SigningBlock:
    start: int
    pairs: bytes  # the block without its size fields and magic


def find_signing_block(apk: ApkZip) -> SigningBlock | None:
    """The APK Signing Block, or None where apksig finds none."""
    data, cd = apk.data, apk.cd_offset
    if not apk.cd_followed_by_eocd or cd < 32:
        return None
    if data[cd - 16 : cd] != SIG_BLOCK_MAGIC:
        return None
    (size,) = struct.unpack_from("<Q", data, cd - 24)
    if size < 24 or size > INT_MAX - 8:
        return None
    start = cd - (size + 8)
    if start < 0 or struct.unpack_from("<Q", data, start)[0] != size:
        return None
    return SigningBlock(start, bytes(data[start + 8 : cd - 24]))


def find_scheme(block: SigningBlock, block_id: int) -> bytes | None:
    """The value of the first pair with ``block_id``; None when the pairs cannot be walked to it."""
    pairs = block.pairs
    pos = 0
    while pos < len(pairs):
        if len(pairs) - pos < 8:
            return None
        (length,) = struct.unpack_from("<Q", pairs, pos)
        pos += 8
        if length < 4 or length > INT_MAX or length > len(pairs) - pos:
            return None
        (pair_id,) = struct.unpack_from("<I", pairs, pos)
        if pair_id == block_id:
            return pairs[pos + 4 : pos + length]
        pos += length
    return None


# -- reading length-prefixed records as Java's ByteBuffer does -------------------------------------


class _Buf:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u32(self) -> int:
        if self.remaining() < 4:
            raise Malformed("field is truncated")
        (v,) = struct.unpack_from("<I", self.data, self.pos)
        self.pos += 4
        return int(v)

    def i32(self) -> int:
        v = self.u32()
        return v - (1 << 32) if v & 0x80000000 else v

    def prefixed(self) -> bytes:
        n = self.i32()
        if n < 0:
            raise Malformed("negative length")
        if n > self.remaining():
            raise Malformed("length-prefixed field longer than remaining buffer")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def items(self) -> list[bytes]:
        out = []
        while self.remaining():
            out.append(self.prefixed())
        return out


# -- signers --------------------------------------------------------------------------------------


def _signatures_to_verify(
    sigs: list[tuple[int, bytes]], min_sdk: int, max_sdk: int
) -> list[tuple[int, bytes]]:
    best: dict[int, tuple[int, bytes]] = {}
    min_provided = INT_MAX + 1
    for alg_id, sig in sigs:
        alg_min = ALGORITHMS[alg_id][5]
        if alg_min > max_sdk:
            continue
        min_provided = min(min_provided, alg_min)
        current = best.get(alg_min)
        if current is None or (
            DIGEST_STRENGTH[ALGORITHMS[alg_id][4]] > DIGEST_STRENGTH[ALGORITHMS[current[0]][4]]
        ):
            best[alg_min] = (alg_id, sig)
    if min_sdk < min_provided:
        raise BlockError(
            "no signature with an algorithm that every targeted platform supports"
            + (f" (the first such platform is API {min_provided})" if best else "")
        )
    return sorted(best.values())


def _load_key(key_der: bytes, kind: str) -> Any:
    try:
        key = serialization.load_der_public_key(key_der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BlockError(f"malformed public key: {exc}") from None
    wanted = {"RSA": rsa.RSAPublicKey, "EC": ec.EllipticCurvePublicKey, "DSA": dsa.DSAPublicKey}[kind]
    if not isinstance(key, wanted):
        raise BlockError(f"malformed public key: not an {kind} key")
    return key


def _verify_signature(key: Any, alg_id: int, signature: bytes, data: bytes) -> None:
    name, kind, pad, hash_cls, _, _ = ALGORITHMS[alg_id]
    try:
        if kind == "RSA":
            chosen = (
                padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls().digest_size)
                if pad == "pss"
                else padding.PKCS1v15()
            )
            key.verify(signature, data, chosen, hash_cls())
        elif kind == "EC":
            key.verify(signature, data, ec.ECDSA(hash_cls()))
        else:
            key.verify(signature, data, hash_cls())
    except InvalidSignature:
        raise BlockError(f"{name} signature over signed-data did not verify") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BlockError(f"{name} signature cannot be checked: {exc}") from None


def _parse_signer(
    raw: bytes,
    scheme: int,
    min_sdk: int,
    max_sdk: int,
    supported_schemes: set[int],
    found_schemes: set[int],
    digest_kinds: set[str],
) -> Signer:
    signer = Signer()
    buf = _Buf(raw)
    signed_data = buf.prefixed()
    if scheme == 3:
        signer.min_sdk, signer.max_sdk = buf.i32(), buf.i32()
        if signer.min_sdk < 0 or signer.min_sdk > signer.max_sdk:
            raise BlockError(f"invalid SDK versions in the signer: {signer.min_sdk}..{signer.max_sdk}")
    signatures_buf = _Buf(buf.prefixed())
    key_der = buf.prefixed()
    all_algs: list[int] = []
    supported: list[tuple[int, bytes]] = []
    while signatures_buf.remaining():
        item = _Buf(signatures_buf.prefixed())
        alg_id = item.u32()
        sig = item.prefixed()
        all_algs.append(alg_id)
        if alg_id in ALGORITHMS:
            supported.append((alg_id, sig))
    if not all_algs:
        raise BlockError("no signatures")
    lo, hi = (signer.min_sdk, signer.max_sdk) if scheme == 3 else (min_sdk, max_sdk)
    for alg_id, sig in _signatures_to_verify(supported, lo, hi):
        key = _load_key(key_der, ALGORITHMS[alg_id][1])
        _verify_signature(key, alg_id, sig, signed_data)
        digest_kinds.add(ALGORITHMS[alg_id][4])

    data = _Buf(signed_data)
    digests_buf = _Buf(data.prefixed())
    certs_buf = _Buf(data.prefixed())
    if scheme == 3:
        signed_min, signed_max = data.i32(), data.i32()
        if (signed_min, signed_max) != (signer.min_sdk, signer.max_sdk):
            raise BlockError("the SDK versions of the signer and of its signed data differ")
    attrs_buf = _Buf(data.prefixed())
    while certs_buf.remaining():
        cert = certs_buf.prefixed()
        try:
            load_certificate(cert)
        except DerError as exc:
            raise BlockError(f"malformed certificate #{len(signer.certs) + 1}: {exc}") from None
        signer.certs.append(cert)
    if not signer.certs:
        raise BlockError("no certificates")
    try:
        cert_key = (
            load_certificate(signer.certs[0])
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BlockError(f"the certificate's public key cannot be read: {exc}") from None
    if cert_key != key_der:
        raise BlockError("public key mismatch between the certificate and the signature record")
    while digests_buf.remaining():
        item = _Buf(digests_buf.prefixed())
        alg_id = item.u32()
        signer.digests.append((alg_id, item.prefixed()))
    if [a for a, _ in signer.digests] != all_algs:
        raise BlockError("signature algorithms differ between the signatures and digests records")
    expected_schemes = set()
    while attrs_buf.remaining():
        attr = _Buf(attrs_buf.prefixed())
        attr_id = attr.u32()
        if scheme == 2 and attr_id == STRIPPING_PROTECTION_ATTR:
            named = attr.i32()
            if named in supported_schemes:
                expected_schemes.add(named)
        elif scheme == 3 and attr_id == PROOF_OF_ROTATION_ATTR:
            signer.lineage = True
    for named in sorted(expected_schemes - found_schemes):
        raise BlockError(
            f"the signer says the APK is also signed with APK Signature Scheme v{named}, "
            "and that signature is missing: it was stripped"
        )
    return signer


def verify_scheme(
    value: bytes,
    scheme: int,
    min_sdk: int,
    max_sdk: int,
    supported_schemes: set[int],
    found_schemes: set[int],
    digest_of: Callable[[str], bytes],
) -> BlockResult:
    """apksig's verdict on one scheme block (``scheme`` 2 or 3) for API levels [min_sdk, max_sdk]."""
    label = f"APK Signature Scheme v{scheme}"
    result = BlockResult()
    try:
        signers_raw = _Buf(_Buf(value).prefixed())
    except Malformed:
        result.errors.append(f"{label}: malformed list of signers")
        return result
    if not signers_raw.remaining():
        result.errors.append(f"{label}: no signers")
        return result
    kinds: set[str] = set()
    number = 0
    while signers_raw.remaining():
        number += 1
        if number > MAX_SIGNERS:
            raise ApkLimitError(
                f"{label} has more than {MAX_SIGNERS} signers; the store reads at most {MAX_SIGNERS}"
            )
        try:
            signer = _parse_signer(
                signers_raw.prefixed(), scheme, min_sdk, max_sdk, supported_schemes, found_schemes, kinds
            )
        except Malformed as exc:
            result.errors.append(f"{label} signer #{number}: malformed signer block ({exc})")
            return result
        except BlockError as exc:
            result.errors.append(f"{label} signer #{number}: {exc}")
            return result
        result.signers.append(signer)
        result.lineage = result.lineage or signer.lineage
    try:
        actual = {kind: digest_of(kind) for kind in kinds}
    except BlockError as exc:
        result.errors.append(f"{label}: {exc}")
        return result
    for number, signer in enumerate(result.signers, start=1):
        for alg_id, expected in signer.digests:
            kind = ALGORITHMS[alg_id][4] if alg_id in ALGORITHMS else None
            if kind is None or kind not in actual:
                continue
            if actual[kind] != expected:
                result.errors.append(
                    f"{label} signer #{number}: APK integrity check failed. {DIGEST_NAMES[kind]} digest "
                    f"mismatch. Expected: <{expected.hex()}>, actual: <{actual[kind].hex()}>"
                )
    if result.errors:
        return result
    if scheme == 3:
        by_max: dict[int, Signer] = {}
        for signer in result.signers:
            by_max[signer.max_sdk] = signer
        first_min = last_max = 0
        for max_key in sorted(by_max):
            signer = by_max[max_key]
            if first_min == 0:
                first_min = signer.min_sdk
            elif signer.min_sdk != last_max + 1:
                result.errors.append(f"{label}: the signers' SDK version ranges overlap or leave gaps")
                break
            last_max = signer.max_sdk
        if not result.errors and (first_min > min_sdk or last_max < max_sdk):
            result.errors.append(
                f"{label}: the signers cover API levels {first_min}-{last_max} only, not {min_sdk} and later"
            )
    result.verified = not result.errors
    return result


# -- content digests ------------------------------------------------------------------------------


def _sections(apk: ApkZip, block_start: int) -> list[tuple[Any, int, int]]:
    eocd = bytearray(apk.eocd)
    struct.pack_into("<I", eocd, 16, block_start)
    return [
        (apk.data, 0, block_start),
        (apk.data, apk.cd_offset, apk.eocd_offset),
        (bytes(eocd), 0, len(eocd)),
    ]


def chunked_digest(apk: ApkZip, block_start: int, kind: str) -> bytes:
    """The v2/v3 chunked digest: the three sections cut into 1 MiB chunks, each hashed as
    0xa5 + length + bytes, the chunk digests hashed as 0x5a + count + digests."""
    chunk_digests = []
    for buf, begin, end in _sections(apk, block_start):
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


def _salted(data: bytes | bytearray) -> Any:
    return hashlib.sha256(VERITY_SALT + data)


def verity_digest(apk: ApkZip, block_start: int) -> bytes:
    """The verity root hash (SHA-256 Merkle tree over 4 KiB pages, each hashed after an 8-byte
    zero salt) of the same three sections, followed by their total size (little-endian 64 bits)."""
    if block_start % VERITY_CHUNK:
        raise BlockError("the APK Signing Block is not aligned on a 4 KiB boundary (verity)")
    if (apk.cd_offset - block_start) % VERITY_CHUNK:
        raise BlockError("the APK Signing Block size is not a multiple of 4 KiB (verity)")
    total = 0
    level = bytearray()
    pending = b""
    for buf, begin, end in _sections(apk, block_start):
        total += end - begin
        for off in range(begin, end, CHUNK):
            piece = pending + bytes(buf[off : min(off + CHUNK, end)])
            cut = len(piece) - len(piece) % VERITY_CHUNK
            for p in range(0, cut, VERITY_CHUNK):
                level += _salted(piece[p : p + VERITY_CHUNK]).digest()
            pending = piece[cut:]
    if pending:
        level += _salted(pending.ljust(VERITY_CHUNK, b"\0")).digest()
    while True:
        if len(level) % VERITY_CHUNK:
            level += b"\0" * (VERITY_CHUNK - len(level) % VERITY_CHUNK)
        if len(level) <= VERITY_CHUNK:
            break
        level = bytearray(
            b"".join(
                _salted(level[p : p + VERITY_CHUNK]).digest() for p in range(0, len(level), VERITY_CHUNK)
            )
        )
    root = _salted(bytes(level[:VERITY_CHUNK]).ljust(VERITY_CHUNK, b"\0")).digest()
    return root + struct.pack("<Q", total)

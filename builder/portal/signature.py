"""Verify APK signatures: v1 (JAR signing) and the APK Signing Block's v2 and v3 schemes.

Two views of the same checks, both on :class:`builder.portal.zipfmt.ApkZip`:

* :meth:`Verifier.verdict` is **apksigner's verdict** (``apksigner verify`` without options, as
  apksig's ``ApkVerifier`` decides it) for the APK's minSdkVersion: the v3 block is verified for
  API 28+, v2 only when minSdk < 28 or there is no v3, v1 only when minSdk < 24 or there is no
  v2/v3 signature, and v1 for every platform from minSdk up (algorithms, digests, signed
  attributes). Then the v1 and v2 signers must be the same certificates, the v3 signer must be
  the older schemes' signer, ``targetSandboxVersion`` > 1 needs v2+, ``targetSdkVersion`` >= 30
  needs a verified v2 or v3 signature.
* :class:`SignatureReport` (:func:`verify_apk`) checks **every scheme present**, each for
  current platforms (API 24 and later), and reports what verified and why not. A scheme that
  is present but broken counts as an error here even when apksigner would not look at it.

:func:`builder.portal.apk.inspect_apk` decides with the first (apksigner's verdict, for the
portal, the build and ``depot check`` alike) and keeps the second for what it reports.
Rotation proofs (a v3 lineage) are not evaluated: the current signer is what is reported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from builder.portal import blocks
from builder.portal.blocks import V2_ID, V3_ID, BlockError, BlockResult, SigningBlock
from builder.portal.der import load_certificate
from builder.portal.errors import ApkFormatError
from builder.portal.v1 import MAX_SDK, V1Result, verify_v1
from builder.portal.zipfmt import ApkZip

__all__ = [
    "MIN_SDK_V2",
    "ApkFormatError",
    "SignatureReport",
    "SignerCert",
    "Verdict",
    "Verifier",
    "verify_apk",
]

MIN_SDK_V2 = 24  # Android 7.0: the first platform that checks v2 signatures
SDK_P = 28  # Android 9: the first platform that checks v3 signatures
SDK_R = 30  # Android 11: targetSdkVersion 30 needs a v2 or newer signature
SUPPORTED_BLOCK_SCHEMES = {2, 3}


@dataclass(frozen=True)
class SignerCert:
    subject: str  # RFC 2253 order, as apksigner prints it: "CN=..., O=..., C=..."
    sha256: str
    sha1: str
    subject_attributes: tuple[tuple[str, str], ...] = ()  # (OID, value) of every name attribute

    @classmethod
    def from_der(cls, der: bytes) -> SignerCert:
        cert = load_certificate(der)
        try:
            subject = distinguished_name(x509.load_der_x509_certificate(der).subject)
        except ValueError:  # a name cryptography does not read (Android's verifier does)
            subject = ", ".join(f"{oid}={value}" for oid, value in reversed(cert.subject_attributes))
        return cls(
            subject=subject,
            sha256=hashlib.sha256(der).hexdigest(),
            sha1=hashlib.sha1(der).hexdigest(),
            subject_attributes=cert.subject_attributes,
        )


def distinguished_name(name: x509.Name) -> str:
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


@dataclass
class Verdict:
    """apksigner's answer for one minSdkVersion: verified when ``errors`` is empty."""

    min_sdk: int
    errors: list[str] = field(default_factory=list)
    schemes: dict[str, bool] = field(default_factory=lambda: {"v1": False, "v2": False, "v3": False})
    signers: list[bytes] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.errors


@dataclass
class SignatureReport:
    """What was found and what verified. ``verified`` is the verdict on the bytes for current
    platforms, over every scheme present; ``verdict`` (when computed) is apksigner's."""

    present: dict[str, bool] = field(default_factory=lambda: {"v1": False, "v2": False, "v3": False})
    verified_schemes: dict[str, bool] = field(default_factory=lambda: {"v1": False, "v2": False, "v3": False})
    signers: list[SignerCert] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    verdict: Verdict | None = None

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
            "signers": [
                {k: v for k, v in s.__dict__.items() if k != "subject_attributes"} for s in self.signers
            ],
            "errors": self.errors,
        }


class Verifier:
    """The signature checks of one APK, each computed once (digests and scheme results cached)."""

    def __init__(self, apk: ApkZip) -> None:
        self.apk = apk
        self._block: SigningBlock | None = None
        self._block_found = False
        self._digests: dict[str, bytes] = {}
        self._blocks: dict[tuple[int, int, frozenset[int]], BlockResult] = {}
        self._v1: dict[tuple[int, frozenset[int]], V1Result] = {}

    # -- the pieces -----------------------------------------------------------------------------

    @property
    def block(self) -> SigningBlock | None:
        if not self._block_found:
            self._block = blocks.find_signing_block(self.apk)
            self._block_found = True
        return self._block

    def scheme_value(self, scheme: int) -> bytes | None:
        block = self.block
        if block is None:
            return None
        return blocks.find_scheme(block, V2_ID if scheme == 2 else V3_ID)

    @property
    def has_v1(self) -> bool:
        return any(e.name.startswith("META-INF/") and e.name.endswith(".SF") for e in self.apk.entries)

    def digest(self, kind: str) -> bytes:
        if kind not in self._digests:
            block = self.block
            assert block is not None
            if kind == "verity":
                self._digests[kind] = blocks.verity_digest(self.apk, block.start)
            else:
                self._digests[kind] = blocks.chunked_digest(self.apk, block.start, kind)
        return self._digests[kind]

    def scheme(self, scheme: int, min_sdk: int, found: set[int]) -> BlockResult | None:
        """The v2 or v3 result for [min_sdk, ∞), or None when the APK has no such block."""
        value = self.scheme_value(scheme)
        if value is None:
            return None
        key = (scheme, min_sdk, frozenset(found))
        if key not in self._blocks:
            self._blocks[key] = blocks.verify_scheme(
                value, scheme, min_sdk, MAX_SDK, SUPPORTED_BLOCK_SCHEMES, found, self.digest
            )
        return self._blocks[key]

    def v1(self, min_sdk: int, found: set[int]) -> V1Result:
        key = (min(min_sdk, MIN_SDK_V2), frozenset(found))  # the v1 rules are the same from API 24 up
        if key not in self._v1:
            self._v1[key] = verify_v1(self.apk, found, key[0])
        return self._v1[key]

    # -- apksigner's verdict --------------------------------------------------------------------

    def verdict(self, min_sdk: int, target_sdk: int, target_sandbox: int = 1) -> Verdict:
        """apksig's ``ApkVerifier.verify()`` for API levels [min_sdk, ∞)."""
        out = Verdict(min_sdk)
        found: set[int] = set()
        v3 = self.scheme(3, max(min_sdk, SDK_P), set())
        if v3 is not None:
            if v3.errors:
                out.errors.extend(v3.errors)
                return out
            found.add(3)
        v2 = None
        if min_sdk < SDK_P or not found:
            v2 = self.scheme(2, max(min_sdk, MIN_SDK_V2), found)
            if v2 is not None:
                if v2.errors:
                    out.errors.extend(v2.errors)
                    return out
                found.add(2)
        if target_sandbox > 1 and not found:
            out.errors.append(
                f"targetSandboxVersion {target_sandbox} needs an APK Signature Scheme v2 or newer signature"
            )
            return out
        v1 = None
        if min_sdk < MIN_SDK_V2 or not found:
            v1 = self.v1(min_sdk, found)
            if v1.errors:
                out.errors.extend(v1.errors)
                return out
        out.schemes = {
            "v1": bool(v1 and v1.verified),
            "v2": bool(v2 and v2.verified),
            "v3": bool(v3 and v3.verified),
        }
        out.errors.extend(cross_check(v1, v2, v3))
        if target_sdk >= SDK_R and not (out.schemes["v2"] or out.schemes["v3"]):
            out.errors.append(
                f"Target SDK version {target_sdk} requires a minimum of signature scheme v2; the APK "
                "is not signed with this or a later signature scheme"
            )
        if out.errors:
            return out
        if v3 is not None and v3.verified:
            out.signers = [v3.signers[-1].certs[0]]
        elif v2 is not None and v2.verified:
            out.signers = [s.certs[0] for s in v2.signers]
        elif v1 is not None:
            out.signers = list(v1.signers)
        return out

    # -- every scheme present, for current platforms ---------------------------------------------

    def report(self) -> SignatureReport:
        report = SignatureReport()
        names = [e.name for e in self.apk.entries]
        if len(names) != len(set(names)):  # refused even where apksigner does not read v1
            report.errors.append("the ZIP has duplicate entry names")
        report.present["v1"] = self.has_v1
        # Each scheme on its own: stripping protection asks whether the named block is there,
        # a broken one is reported by its own check.
        v3 = self.scheme(3, SDK_P, set())
        found = {3} if v3 is not None else set()
        v2 = self.scheme(2, MIN_SDK_V2, found)
        if v2 is not None:
            found.add(2)
        report.present["v3"] = v3 is not None
        report.present["v2"] = v2 is not None
        for name, result in (("v3", v3), ("v2", v2)):
            if result is not None:
                report.errors.extend(result.errors)
                report.verified_schemes[name] = result.verified
        v1 = None
        if report.present["v1"]:
            v1 = self.v1(MIN_SDK_V2, found)
            report.errors.extend(v1.errors)
            report.verified_schemes["v1"] = v1.verified
        report.errors.extend(cross_check(v1, v2, v3))
        certs: list[bytes] = []
        if v3 is not None and v3.verified:
            certs = [v3.signers[-1].certs[0]]
        elif v2 is not None and v2.verified:
            certs = [s.certs[0] for s in v2.signers]
        elif v1 is not None and v1.verified:
            certs = list(v1.signers)
        report.signers = [SignerCert.from_der(c) for c in certs]
        return report


def cross_check(v1: V1Result | None, v2: BlockResult | None, v3: BlockResult | None) -> list[str]:
    """apksig's signer agreement rules between the schemes that verified."""
    errors = []
    v1_ok, v2_ok, v3_ok = bool(v1 and v1.verified), bool(v2 and v2.verified), bool(v3 and v3.verified)
    if v1_ok and v2_ok:
        assert v1 is not None and v2 is not None
        v1_certs = set(v1.signers)
        v2_certs = {s.certs[0] for s in v2.signers}
        if v1_certs != v2_certs:
            errors.append("the v1 (JAR) and APK Signature Scheme v2 signers do not match")
    if v3_ok and (v1_ok or v2_ok):
        assert v3 is not None
        older = (
            list(v1.signers) if v1_ok and v1 is not None else [s.certs[0] for s in v2.signers] if v2 else []
        )
        if len(older) != 1:
            errors.append("APK Signature Scheme v3 supports one signer only, the older schemes have several")
        if not v3.lineage:
            if len(v3.signers) != 1:
                errors.append("APK Signature Scheme v3 has several signers but no rotation lineage")
            elif older and older[0] != v3.signers[0].certs[0]:
                errors.append("the APK Signature Scheme v3 signer differs from the v1/v2 signer")
    return errors


def verify_apk(path: Path) -> SignatureReport:
    """Check every signature scheme present in the APK at ``path`` (for current platforms).

    Raises ApkFormatError when the file is not a readable ZIP."""
    with ApkZip.open(path) as apk:
        try:
            return Verifier(apk).report()
        except BlockError as exc:  # pragma: no cover - verify_scheme catches its own
            raise ApkFormatError(str(exc)) from exc

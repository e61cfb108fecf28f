"""Android APKs: ``repo/android/<package>-<versionCode>.apk`` plus ``<apk>.toml``.

The CI portal writes both when the store team releases a version; a maintainer may also drop an
APK in by hand. The sidecar holds what the APK does not carry: ``status`` (only ``live`` is
published; no sidecar counts as live), ``countries`` and ``vehicle_contexts`` (the release
targets) and ``released`` (a timestamp). The APK itself must parse and its signature must
verify; :func:`inspect_apk` is the one inspection shared with the portal's upload validation.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import FormatError
from builder.formats import Source
from builder.hashing import sha256_file
from builder.model import AndroidVersion, Blob, Record, StoreSettings
from builder.portal.errors import MALFORMED, SIGNATURE_INVALID, UNSIGNED, ApkError, ApkFormatError
from builder.portal.manifest import AxmlError, ManifestInfo, parse_manifest
from builder.portal.zipfmt import ApkZip
from builder.settings import COUNTRY as COUNTRY  # re-exported: the release targets' forms
from builder.settings import VEHICLE_CONTEXT as VEHICLE_CONTEXT
from builder.sidecars import SIDECAR_SUFFIX

if TYPE_CHECKING:  # signature verification loads cryptography: only when an APK is read
    from builder.portal.signature import SignatureReport, Verdict, Verifier

__all__ = ["ApkError", "ApkInfo", "ApkReader", "inspect_apk", "read_manifest"]

log = logging.getLogger("builder.portal.apk")
FOLDER = "android/"
MANIFEST_NAME = "AndroidManifest.xml"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
ABI_ENTRY = re.compile(r"^lib/([^/]+)/[^/]+\.so$")
PACKAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class ApkInfo:
    manifest: ManifestInfo
    abis: tuple[str, ...]
    signature: SignatureReport


def _malformed(exc: ApkFormatError) -> ApkFormatError:
    message = str(exc)
    return exc if message.startswith("Malformed APK") else ApkFormatError(f"Malformed APK: {message}")


def _manifest(apk: ApkZip) -> tuple[ManifestInfo, tuple[str, ...]]:
    entry = apk.find(MANIFEST_NAME)
    if entry is None:
        raise ApkFormatError(f"Missing {MANIFEST_NAME}")
    data = apk.read(entry, MAX_MANIFEST_BYTES, MANIFEST_NAME)
    try:
        manifest = parse_manifest(data)
    except AxmlError as exc:
        raise ApkError(MALFORMED, f"{MANIFEST_NAME} is not valid binary XML: {exc}") from exc
    if not PACKAGE_NAME.match(manifest.package):
        raise ApkError(MALFORMED, f"invalid package name {manifest.package!r}")
    if manifest.version_code <= 0:
        raise ApkError(MALFORMED, "versionCode must be a positive number")
    abis = sorted({m[1] for e in apk.entries if (m := ABI_ENTRY.match(e.name))})
    return manifest, tuple(abis)


def read_manifest(path: Path) -> tuple[ManifestInfo, tuple[str, ...]]:
    """Manifest facts and native ABIs; ApkError("apk_malformed") for anything unreadable."""
    try:
        with ApkZip.open(path) as apk:
            return _manifest(apk)
    except ApkFormatError as exc:
        raise _malformed(exc) from exc
    except OSError as exc:
        raise ApkFormatError(f"cannot read the APK: {exc.strerror or exc}") from exc


def _report_beside(verifier: Verifier, verdict: Verdict) -> SignatureReport:
    """The per-scheme report next to apksigner's verdict; where a scheme apksigner does not
    look at cannot even be read, the report says what the verdict says."""
    from builder.portal.signature import SignatureReport

    try:
        return verifier.report()
    except ApkError:
        report = SignatureReport(verified_schemes=dict(verdict.schemes))
        report.present = {
            "v1": verifier.has_v1,
            "v2": verifier.scheme_value(2) is not None,
            "v3": verifier.scheme_value(3) is not None,
        }
        return report


def inspect_apk(path: Path) -> ApkInfo:
    """Parse and verify an APK; a returned ApkInfo has a verified signature. Raises ApkError
    (``apk_malformed``, ``apk_unsigned``, ``apk_signature_invalid``, ``apk_limit_exceeded``)
    and nothing else for bad input.

    The verdict is apksigner's: the signature must verify on every Android version from the
    manifest's minSdkVersion up, as ``apksigner verify`` checks by default. The portal, the
    build and ``depot check`` all use it; a store that accepted what a device of the APK's own
    minSdk would refuse would publish an app that cannot be installed there."""
    from builder.portal.signature import SignatureReport, SignerCert, Verifier

    try:
        with ApkZip.open(path) as apk:
            manifest, abis = _manifest(apk)
            verifier = Verifier(apk)
            if not (verifier.has_v1 or verifier.scheme_value(2) or verifier.scheme_value(3)):
                raise ApkError(UNSIGNED, "The APK is not signed (no JAR signature, no APK Signing Block).")
            min_sdk = manifest.signature_min_sdk
            verdict = verifier.verdict(min_sdk, manifest.signature_target_sdk, manifest.target_sandbox)
            errors = list(verdict.errors)
            if not errors:
                report = _report_beside(verifier, verdict)
                report.signers = [SignerCert.from_der(c) for c in verdict.signers]
            else:
                report = SignatureReport()
            report.verdict = verdict
    except ApkFormatError as exc:
        raise _malformed(exc) from exc
    except OSError as exc:
        raise ApkFormatError(f"cannot read the APK: {exc.strerror or exc}") from exc
    if errors:
        raise ApkError(SIGNATURE_INVALID, "The APK signature does not verify: " + "; ".join(errors))
    return ApkInfo(manifest, abis, report)


def apk_filename(package: str, version_code: int) -> str:
    return f"{package}-{version_code}.apk"


class ApkReader:
    name = "apk"

    def matches(self, relpath: str) -> bool:
        return relpath.startswith(FOLDER) and relpath.endswith(".apk")

    def sidecars(self, relpath: str) -> list[str]:
        return [relpath + SIDECAR_SUFFIX]

    def settings_key(self, settings: StoreSettings) -> str:
        return ""

    def read(self, source: Source) -> list[Record]:
        if "/" in source.relpath[len(FOLDER) :]:
            raise FormatError("APKs live directly in android/, not in sub-folders")
        sidecar = source.sidecar("apk")  # types, the status and the targets' forms: builder.settings
        if sidecar["status"] != "live":
            return []
        info = inspect_file(source.path)
        m = info.manifest
        if not info.signature.covers_min_sdk(m.min_sdk):
            raise FormatError(
                f"minSdkVersion {m.min_sdk} needs a v1 (JAR) signature, which the APK does not have"
            )
        size, sha256 = sha256_file(source.path)
        return [
            AndroidVersion(
                package=m.package,
                version_code=m.version_code,
                version_name=m.version_name,
                blob=Blob(source.relpath, size, sha256),
                min_sdk=m.min_sdk,
                countries=tuple(sorted(set(sidecar["countries"]))),
                vehicle_contexts=tuple(sorted(set(sidecar["vehicle_contexts"]))),
                target_sdk=m.target_sdk or 0,
                abis=info.abis,
                permissions=m.permissions,
                signer_sha256=info.signature.signers[0].sha256 if info.signature.signers else "",
                released=sidecar["released"],
            )
        ]


def inspect_file(path: Path) -> ApkInfo:
    """:func:`inspect_apk` as the build and ``depot check`` use it: a bug in the reader ends as
    a FormatError with a log entry, so one bad file never stops a build."""
    try:
        return inspect_apk(path)
    except ApkError:
        raise
    except Exception as exc:  # a bug, not the file's fault: say so, skip the file, keep building
        log.exception("the APK reader failed on %s", path)
        raise FormatError(f"the APK could not be read ({type(exc).__name__}: {exc})") from exc

"""Android APKs: ``repo/android/<package>-<versionCode>.apk`` plus ``<apk>.toml``.

The CI portal writes both when the store team releases a version; a maintainer may also drop an
APK in by hand. The sidecar holds what the APK does not carry: ``status`` (only ``live`` is
published; no sidecar counts as live), ``countries`` and ``vehicle_contexts`` (the release
targets) and ``released`` (a timestamp). The APK itself must parse and its signature must
verify; :func:`inspect_apk` is the one inspection shared with the portal's upload validation.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from builder.errors import FormatError
from builder.formats import Source
from builder.hashing import sha256_file
from builder.model import AndroidVersion, Blob, Record, StoreSettings
from builder.portal.manifest import AxmlError, ManifestInfo, parse_manifest
from builder.portal.signature import ApkFormatError, SignatureReport, verify_apk
from builder.settings import COUNTRY as COUNTRY  # re-exported: the release targets' forms
from builder.settings import VEHICLE_CONTEXT as VEHICLE_CONTEXT
from builder.sidecars import SIDECAR_SUFFIX

FOLDER = "android/"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
ABI_ENTRY = re.compile(r"^lib/([^/]+)/[^/]+\.so$")
PACKAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$")


class ApkError(ValueError):
    """An APK the store cannot take. ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ApkInfo:
    manifest: ManifestInfo
    abis: tuple[str, ...]
    signature: SignatureReport


def read_manifest(path: Path) -> tuple[ManifestInfo, tuple[str, ...]]:
    """Manifest facts and native ABIs; ApkError("apk_malformed") for anything unreadable."""
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo("AndroidManifest.xml")
            except KeyError:
                raise ApkError("apk_malformed", "Missing AndroidManifest.xml") from None
            if info.file_size > MAX_MANIFEST_BYTES:
                raise ApkError("apk_malformed", "AndroidManifest.xml is implausibly large")
            data = zf.read(info)
            abis = sorted({m[1] for n in zf.namelist() if (m := ABI_ENTRY.match(n))})
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise ApkError("apk_malformed", f"Malformed APK: not a ZIP archive ({exc})") from exc
    except (OSError, ValueError) as exc:
        if isinstance(exc, ApkError):
            raise
        raise ApkError("apk_malformed", f"Malformed APK: {exc}") from exc
    try:
        manifest = parse_manifest(data)
    except AxmlError as exc:
        raise ApkError("apk_malformed", f"AndroidManifest.xml is not valid binary XML: {exc}") from exc
    if not PACKAGE_NAME.match(manifest.package):
        raise ApkError("apk_malformed", f"invalid package name {manifest.package!r}")
    if manifest.version_code <= 0:
        raise ApkError("apk_malformed", "versionCode must be a positive number")
    return manifest, tuple(abis)


def inspect_apk(path: Path) -> ApkInfo:
    """Parse and verify an APK. Raises ApkError with ``apk_malformed``, ``apk_unsigned`` or
    ``apk_signature_invalid``; a returned ApkInfo has a verified signature."""
    try:
        signature = verify_apk(path)
    except ApkFormatError as exc:
        raise ApkError("apk_malformed", f"Malformed APK: {exc}") from exc
    except OSError as exc:
        raise ApkError("apk_malformed", f"cannot read the APK: {exc.strerror or exc}") from exc
    manifest, abis = read_manifest(path)
    if not signature.signed:
        raise ApkError("apk_unsigned", "The APK is not signed (no JAR signature, no APK Signing Block).")
    if not signature.verified:
        raise ApkError(
            "apk_signature_invalid", "The APK signature does not verify: " + "; ".join(signature.errors)
        )
    return ApkInfo(manifest, abis, signature)


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
        try:
            info = inspect_apk(source.path)
        except ApkError as exc:
            raise FormatError(str(exc)) from exc
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

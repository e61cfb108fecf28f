"""APK manifest parsing and signature verification.

Every case runs on APKs built by ``tests/support/apk_factory.py`` with the facts, schemes and
damage of the files in ../shared/fixtures/apk, and again, as an extra check, on the real files
when ../shared/fixtures is there. Expected facts and verdicts come from
../shared/fixtures/README.md (apksigner 31.0.2 output); the signers of the generated APKs are
keys made by the factory.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from builder.portal.apk import ApkError, inspect_apk, read_manifest
from builder.portal.manifest import AxmlError, parse_manifest
from builder.portal.signature import verify_apk
from tests.support.apk_factory import (
    V3_BLOCK_ID,
    build_apk,
    compile_manifest,
    fixture_like,
    fixture_like_signer,
    other_key,
    release_key,
    sign_v1,
)
from tests.support.paths import needs_shared_fixtures, shared_fixture
from tests.support.serving import depot_command

RSA_2048 = "fb5dbd3c669af9fc236c6991e6387b7f11ff0590997f22d0f5c74ff40e04fca8"
POLITE = "32a23624c201b949f085996ba5ed53d40f703aca4989476949cae891022e0ed6"
POLITE_DN = "CN=Hans-Christoph Steiner, OU=Unknown, O=Guardian Project, L=Brooklyn, ST=NY, C=US"
DEBUG = "d943650c7b7010ce6f229c98831e04bcb99c5b406ed4fb4419414e15c887c06b"
TINY = ("android.appsecurity.cts.tinyapp", 10, "1.0", 23)

# file → (package, versionCode, versionName, minSdk)
IDENTITY = {
    "golden-aligned-v1v2-out.apk": TINY,
    "golden-aligned-v1v2v3-out.apk": TINY,
    "v2-only-with-rsa-pkcs1-sha256-2048.apk": TINY,
    "Test-debug.apk": ("org.t0t0.androguard.test", 1, "1.0", 1),
    "golden-aligned-in.apk": TINY,
    "v2-only-with-rsa-pkcs1-sha256-2048-sig-does-not-verify.apk": TINY,
    "golden-aligned-v1v2-out-tampered.apk": TINY,
    "com.politedroid_3.apk": ("com.politedroid", 3, "1.2", 3),
    "com.politedroid_4.apk": ("com.politedroid", 4, "1.3", 3),
}

# file → ((v1, v2, v3) verified, covers the declared minSdk)
VERIFIED = {
    "golden-aligned-v1v2-out.apk": ((True, True, False), True),
    "golden-aligned-v1v2v3-out.apk": ((True, True, True), True),
    "v2-only-with-rsa-pkcs1-sha256-2048.apk": ((False, True, False), False),
    "Test-debug.apk": ((True, False, False), True),
    "com.politedroid_3.apk": ((True, False, False), True),
    "com.politedroid_4.apk": ((True, False, False), True),
}

# The real files' signers (subject DN, certificate SHA-256), from the README
REAL_SIGNERS = {
    "golden-aligned-v1v2-out.apk": ("CN=rsa-2048", RSA_2048),
    "golden-aligned-v1v2v3-out.apk": ("CN=rsa-2048", RSA_2048),
    "v2-only-with-rsa-pkcs1-sha256-2048.apk": ("CN=rsa-2048", RSA_2048),
    "Test-debug.apk": ("CN=Android Debug, O=Android, C=US", DEBUG),
    "com.politedroid_3.apk": (POLITE_DN, POLITE),
    "com.politedroid_4.apk": (POLITE_DN, POLITE),
}

# file → (ApkError code, a phrase of the message)
REFUSED = {
    "golden-aligned-in.apk": ("apk_unsigned", "not signed"),
    "v2-only-with-rsa-pkcs1-sha256-2048-sig-does-not-verify.apk": (
        "apk_signature_invalid",
        "signature over signed-data did not verify",
    ),
    "golden-aligned-v1v2-out-tampered.apk": ("apk_signature_invalid", "CHUNKED_SHA256 digest mismatch"),
    "empty-unsigned.apk": ("apk_malformed", "Missing AndroidManifest.xml"),
    "v2-only-truncated-cd.apk": ("apk_malformed", "Malformed APK"),
}

# Each test runs on the generated APKs; the "real" runs are the extra real-fixture checks.
KINDS = [pytest.param("generated"), pytest.param("real", marks=needs_shared_fixtures)]


def apk(kind: str, name: str, tmp_path: Path) -> Path:
    """The generated counterpart of ``name`` (written to ``tmp_path``) or the real fixture file."""
    if kind == "real":
        return shared_fixture("apk", name)
    path = tmp_path / name
    path.write_bytes(fixture_like(name))
    return path


def signer(kind: str, name: str) -> tuple[str, str]:
    if kind == "real":
        return REAL_SIGNERS[name]
    key = fixture_like_signer(name)
    assert key is not None
    subject = ", ".join(a.rfc4514_string() for a in reversed(key.cert.subject.rdns))
    return subject, key.cert_sha256


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(IDENTITY))
def test_manifest_facts_match_the_fixture_table(kind: str, name: str, tmp_path: Path) -> None:
    manifest, abis = read_manifest(apk(kind, name, tmp_path))
    assert (manifest.package, manifest.version_code, manifest.version_name, manifest.min_sdk) == IDENTITY[
        name
    ]
    assert manifest.debuggable is False
    if manifest.package == TINY[0]:
        assert manifest.target_sdk == 23
        assert abis == ("armeabi",) if "v2-only" not in name else abis == ()
    else:
        assert manifest.target_sdk is None


@pytest.mark.parametrize("kind", KINDS)
def test_politedroid_permissions(kind: str, tmp_path: Path) -> None:
    manifest, _ = read_manifest(apk(kind, "com.politedroid_4.apk", tmp_path))
    assert manifest.permissions == (
        "android.permission.READ_CALENDAR",
        "android.permission.RECEIVE_BOOT_COMPLETED",
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(VERIFIED))
def test_signatures_that_apksigner_verifies_verify(kind: str, name: str, tmp_path: Path) -> None:
    schemes, covers = VERIFIED[name]
    path = apk(kind, name, tmp_path)
    report = verify_apk(path)
    assert report.verified, report.errors
    assert tuple(report.verified_schemes[s] for s in ("v1", "v2", "v3")) == schemes
    assert [(s.subject, s.sha256) for s in report.signers] == [signer(kind, name)]
    manifest, _ = read_manifest(path)
    assert report.covers_min_sdk(manifest.min_sdk) is covers
    assert report.covers_min_sdk(24)  # apksigner --min-sdk-version 24 verifies every one of these


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsigned_broken_tampered_and_malformed_apks_are_refused(
    kind: str, name: str, tmp_path: Path
) -> None:
    code, phrase = REFUSED[name]
    with pytest.raises(ApkError) as caught:
        inspect_apk(apk(kind, name, tmp_path))
    assert caught.value.code == code
    assert phrase in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_apk_fails_both_v1_and_v2(kind: str, tmp_path: Path) -> None:
    report = verify_apk(apk(kind, "golden-aligned-v1v2-out-tampered.apk", tmp_path))
    assert report.present == {"v1": True, "v2": True, "v3": False}
    assert not report.verified
    assert report.verified_schemes == {"v1": False, "v2": False, "v3": False}
    assert any("lib/armeabi/fake.so" in e for e in report.errors)


@pytest.mark.parametrize("kind", KINDS)
def test_v2_signing_block_stripped_of_its_v2_entry_is_caught(kind: str, tmp_path: Path) -> None:
    """The JAR signature says "also signed with v2": removing the v2 block must not pass as v1-only."""
    data = bytearray(apk(kind, "golden-aligned-v1v2-out.apk", tmp_path).read_bytes())
    pos = data.find(b"APK Sig Block 42")
    assert pos > 0
    data[pos : pos + 16] = b"APK Sig Block 00"  # no longer recognised as a signing block
    path = tmp_path / "stripped.apk"
    path.write_bytes(bytes(data))
    with pytest.raises(ApkError) as caught:
        inspect_apk(path)
    assert caught.value.code == "apk_signature_invalid"
    assert "v2" in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
def test_v3_signature_stripped_from_a_v1_v2_v3_apk_is_caught(kind: str, tmp_path: Path) -> None:
    """The v2 signer carries the stripping-protection attribute: without the v3 block the v2
    signature must fail, not pass as a v1+v2 APK."""
    data = bytearray(apk(kind, "golden-aligned-v1v2v3-out.apk", tmp_path).read_bytes())
    magic = data.find(b"APK Sig Block 42")
    block_start = magic + 16 - 8 - int.from_bytes(data[magic - 8 : magic], "little")
    pos = data.find(V3_BLOCK_ID.to_bytes(4, "little"), block_start)
    assert block_start < pos < magic
    data[pos : pos + 4] = (0x5EEDF00D).to_bytes(4, "little")  # an unknown block entry now
    path = tmp_path / "no-v3.apk"
    path.write_bytes(bytes(data))
    with pytest.raises(ApkError) as caught:
        inspect_apk(path)
    assert caught.value.code == "apk_signature_invalid"
    assert "v3" in str(caught.value)


def test_built_apk_round_trips_through_parser_and_verifier(tmp_path: Path) -> None:
    path = tmp_path / "app.apk"
    build_apk(
        path,
        package="com.example.round",
        version_code=70000,
        version_name="7.0-beta",
        min_sdk=26,
        debuggable=True,
        permissions=("android.permission.CAMERA", "android.permission.INTERNET"),
        extra_files={"lib/arm64-v8a/libx.so": b"\x7fELF", "lib/x86_64/libx.so": b"\x7fELF"},
    )
    info = inspect_apk(path)
    m = info.manifest
    assert (m.package, m.version_code, m.version_name, m.min_sdk, m.debuggable) == (
        "com.example.round",
        70000,
        "7.0-beta",
        26,
        True,
    )
    assert m.permissions == ("android.permission.CAMERA", "android.permission.INTERNET")
    assert info.abis == ("arm64-v8a", "x86_64")
    assert info.signature.signers[0].sha256 == release_key().cert_sha256


def _rezip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _signed_files() -> dict[str, bytes]:
    return sign_v1(
        {"AndroidManifest.xml": compile_manifest("com.example.v1", 1), "classes.dex": b"dex"}, release_key()
    )


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda f: {**f, "classes.dex": b"evil"}, "classes.dex does not match"),
        (lambda f: {**f, "assets/extra.bin": b"added"}, "not protected by the JAR signature"),
        (lambda f: {k: v for k, v in f.items() if k != "classes.dex"}, "not in the APK"),
        (
            lambda f: {**f, "META-INF/CERT.EC": sign_v1({"a": b"b"}, other_key())["META-INF/CERT.EC"]},
            "does not match the .SF file",
        ),
        (
            lambda f: {**f, "META-INF/CERT.SF": f["META-INF/CERT.SF"].replace(b"Created-By", b"Created-Bx")},
            "digest",
        ),
        (lambda f: {**f, "META-INF/CERT.EC": b"\x30\x03\x02\x01"}, "malformed"),
    ],
    ids=["changed-entry", "added-entry", "removed-entry", "foreign-signature", "edited-sf", "garbage-block"],
)
def test_v1_verification_catches_each_kind_of_tampering(tmp_path: Path, change, phrase: str) -> None:
    path = tmp_path / "t.apk"
    path.write_bytes(_rezip(change(_signed_files())))
    with pytest.raises(ApkError) as caught:
        inspect_apk(path)
    assert caught.value.code == "apk_signature_invalid"
    assert phrase in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x03\x00\x08\x00", b"\x03\x00\x08\x00\xff\xff\x00\x00" + b"\x01\x00\x1c\x00\xff\xff\xff\x7f" * 4],
)
def test_damaged_binary_xml_raises_a_clear_error(data: bytes) -> None:
    with pytest.raises(AxmlError):
        parse_manifest(data)


def test_truncated_manifests_never_crash() -> None:
    good = compile_manifest("com.example.cut", 3, permissions=("android.permission.CAMERA",))
    for cut in range(0, len(good), 7):
        with contextlib.suppress(AxmlError):
            parse_manifest(good[:cut])


@pytest.mark.parametrize("kind", KINDS)
def test_depot_check_validates_apks(kind: str, tmp_path: Path) -> None:
    good = apk(kind, "com.politedroid_4.apk", tmp_path)
    ok = subprocess.run(depot_command("check", str(good)), capture_output=True)
    assert ok.returncode == 0, ok.stdout
    tampered = apk(kind, "golden-aligned-v1v2-out-tampered.apk", tmp_path)
    bad = subprocess.run(depot_command("check", str(tampered)), capture_output=True)
    assert bad.returncode == 1
    assert b"INVALID" in bad.stdout and b"digest mismatch" in bad.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_hand_dropped_apks_are_read_into_the_catalog(kind: str, tmp_path: Path) -> None:
    from builder.formats import Source
    from builder.model import StoreSettings
    from builder.portal.apk import ApkReader

    repo = tmp_path / "repo"
    (repo / "android").mkdir(parents=True)
    shutil.copy(apk(kind, "com.politedroid_3.apk", tmp_path), repo / "android" / "com.politedroid-3.apk")
    (repo / "android" / "com.politedroid-3.apk.toml").write_text('status = "live"\ncountries = ["DE"]\n')
    [record] = ApkReader().read(Source(repo, "android/com.politedroid-3.apk", StoreSettings()))
    assert (record.package, record.version_code, record.countries, record.signer_sha256) == (
        "com.politedroid",
        3,
        ("DE",),
        signer(kind, "com.politedroid_3.apk")[1],
    )
    (repo / "android" / "com.politedroid-3.apk.toml").write_text('countries = ["../x"]\n')
    from builder.errors import FormatError

    with pytest.raises(FormatError):
        ApkReader().read(Source(repo, "android/com.politedroid-3.apk", StoreSettings()))

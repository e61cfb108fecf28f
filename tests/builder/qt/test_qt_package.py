"""The Qt package validator: the digest vector, valid packages, and every rejection message."""

from __future__ import annotations

import hashlib
import hmac
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from builder.qt.digest import device_bound
from builder.qt.pack import (
    TINY_PNG,
    Entry,
    digest_of,
    pack_package,
    package_entries,
    tar_bytes,
    yaml_docs,
)
from builder.qt.package import PackageError, validate_package
from tests.support.binaries import SAMPLES
from tests.support.paths import PROJECT, needs_shared_fixtures, shared_fixture
from tests.support.qt_sources import SOURCES, PackageSource, pack_fixture_folder, pack_source, png_size

ELF_X86_64 = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00\x3e\x00" + bytes(44)
ELF_ARM64 = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00\xb7\x00" + bytes(44)
MACHO_ARM64 = b"\xcf\xfa\xed\xfe\x0c\x00\x00\x01" + bytes(24)


def validate(data: bytes):
    return validate_package(io.BytesIO(data))


def rejected(entries: list[Entry]) -> str:
    with pytest.raises(PackageError) as caught:
        validate(tar_bytes(entries))
    return str(caught.value)


def refooted(entries: list[Entry], version: int = 2, **fields) -> list[Entry]:
    """Replace the footer with one whose digest matches the (changed) entries."""
    body = [e for e in entries if not e[0].startswith("--PACKAGE-FOOTER--")]
    footer = {"digest": digest_of(body), **fields}
    doc = yaml_docs({"formatType": "am-package-footer", "formatVersion": version}, footer)
    return [*body, ("--PACKAGE-FOOTER--", doc)]


def with_header(entries: list[Entry], first: dict, second: dict) -> list[Entry]:
    return refooted(
        [("--PACKAGE-HEADER--", yaml_docs(first, second)), *entries[1:]], first.get("formatVersion", 2)
    )


def with_info(entries: list[Entry], first: dict, second: dict) -> list[Entry]:
    return refooted([entries[0], ("info.yaml", yaml_docs(first, second)), *entries[2:]])


HEADER_TYPE = {"formatType": "am-package-header", "formatVersion": 2}
INFO_TYPE = {"formatType": "am-package", "formatVersion": 1}
INFO = {"id": "com.example.app", "icon": "icon.png", "name": {"en": "Example"}, "applications": []}


# -- the digest -----------------------------------------------------------------------------------


def test_digest_test_vector() -> None:
    expected = "9b4881950bb545b9d5f33fd6284a4e6cf91246a722c09e7d00e64bf64dbed394"
    assert digest_of([("sub/", None), ("sub/a.txt", b"hello")]) == expected
    assert hashlib.sha256(b"D/0/sub" + b"hello" + b"F/5/sub/a.txt").hexdigest() == expected


def test_device_bound_digest_vector() -> None:
    raw = bytes.fromhex("9b4881950bb545b9d5f33fd6284a4e6cf91246a722c09e7d00e64bf64dbed394")
    bound = device_bound(raw, "00-11-22-33-44-55")
    assert bound.hex() == "3a197e28142df9375ae398ec373378374835535b1bff9925aab220c114146942"
    assert bound == hmac.new(b"00-11-22-33-44-55", raw, hashlib.sha256).digest()
    assert device_bound(raw, "") == raw  # no device: the raw digest, as Qt AM verifies it


def test_validator_digest_covers_directories_and_files() -> None:
    entries = package_entries("com.example.app", files=[("sub/", None), ("sub/a.txt", b"hello")])
    package = validate(tar_bytes(entries))
    assert package.digest == digest_of(entries)


# -- valid packages -----------------------------------------------------------------------------


def test_valid_qml_package() -> None:
    package = validate(
        pack_package("com.example.app", name={"de": "Beispiel", "en": "Example"}, version="1.10")
    )
    assert (package.id, package.name, package.version) == ("com.example.app", "Example", "1.10")
    assert package.architecture == "All"
    assert package.pkgformat == 2
    assert package.tags == [] and package.tags_hash == ""
    assert package.icon == TINY_PNG


def test_name_selection_order() -> None:
    assert validate(pack_package("a.b", name={"de": "B", "en_US": "US"})).name == "US"
    assert validate(pack_package("a.b", name={"de": "B", "fr": "F"})).name == "B"


def test_tags_and_conflicts_from_extra() -> None:
    package = validate(
        pack_package("com.example.tagged", tags=["qt:5.15", "Build_Target:desktop"], conflicts=["neptune"])
    )
    assert package.tags == ["build_target:desktop", "qt:5.15"]
    assert package.conflicts == ["neptune"]
    assert package.tags_hash == "build_target:desktop,qt:5.15neptune"


def test_extra_signed_tags_merge_with_extra() -> None:
    entries = package_entries("com.example.app")
    header = {"packageId": "com.example.app", "diskSpaceUsed": 5, "extra": {"tags": ["qt"]}}
    header["extraSigned"] = {"tags": ["neptune:1"], "conflicts": ["x"]}
    package = validate(tar_bytes(with_header(entries, HEADER_TYPE, header)))
    assert package.tags == ["neptune:1", "qt"] and package.conflicts == ["x"]


def test_native_package_architecture() -> None:
    files = [("lib/", None), ("lib/libfoo.so", ELF_X86_64), ("main.qml", b"Item {}")]
    assert (
        validate(pack_package("com.example.native", files=files)).architecture
        == "x86_64-little_endian-64-elf"
    )


def test_format_1_application_manifest() -> None:
    package = validate(pack_package("com.example.old", header_version=1))
    assert package.pkgformat == 1 and package.name == "com.example.old"


def test_uncompressed_tar_is_accepted() -> None:
    assert validate(tar_bytes(package_entries("com.example.app"), compress=False)).id == "com.example.app"


def test_missing_version_reads_as_the_default() -> None:
    entries = package_entries("com.example.app")
    assert (
        validate(tar_bytes(with_info(entries, INFO_TYPE, {**INFO, "id": "com.example.app"}))).version
        == "0.0.0"
    )


def _check_source(source: PackageSource, data: bytes) -> None:
    if source.rejected:
        with pytest.raises(PackageError) as caught:
            validate(data)
        assert str(caught.value) == source.rejected
        return
    package = validate(data)
    got = {k: getattr(package, k) for k in source.expected}
    assert got == source.expected
    assert package.architecture == "All" and package.tags == []


@pytest.mark.parametrize("folder", sorted(SOURCES))
def test_packages_from_qt_application_manager_sources(folder: str) -> None:
    """Package AM's test sources (written by tests/support/qt_sources.py) the way
    appman-packager lays them out."""
    source = SOURCES[folder]
    data = pack_source(source)
    _check_source(source, data)
    if not source.rejected:
        assert validate(data).icon == source.icon


def test_generated_icons_are_valid_pngs_of_the_source_sizes() -> None:
    assert png_size(SOURCES["hello-world.red"].icon) == (92, 92)
    assert png_size(SOURCES["com.pelagicore.test"].icon) == (32, 32)


@needs_shared_fixtures
@pytest.mark.parametrize("folder", sorted(SOURCES))
def test_packages_from_the_real_qt_application_manager_sources(folder: str) -> None:
    """The same check on the real files of ../shared/fixtures/qt-packages."""
    source = SOURCES[folder]
    _check_source(source, pack_fixture_folder(source, shared_fixture("qt-packages", folder)))


def _manifest_facts(info: bytes) -> tuple[object, dict[str, object]]:
    first, second = yaml.safe_load_all(info)
    facts = {k: second.get(k) for k in ("id", "icon", "name", "version", "code", "runtime")}
    facts["applications"] = [
        {k: app.get(k) for k in ("id", "code", "runtime")} for app in second.get("applications", [])
    ]
    return first, facts


@needs_shared_fixtures
@pytest.mark.parametrize("folder", sorted(SOURCES))
def test_generated_manifests_carry_the_fields_of_the_real_ones(folder: str) -> None:
    real = shared_fixture("qt-packages", folder)
    assert _manifest_facts(SOURCES[folder].info) == _manifest_facts((real / "info.yaml").read_bytes())
    if (real / "icon.png").exists():
        assert png_size(SOURCES[folder].icon) == png_size((real / "icon.png").read_bytes())


# -- every rejection message (reference section 3.7) ---------------------------------------------

BASE = package_entries("com.example.app")


def _tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _member(
    name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    if data is not None:
        info.size = len(data)
    return info, data


def test_symlinks_are_refused() -> None:
    link = _member("link", kind=tarfile.SYMTYPE)
    link[0].linkname = "/etc/passwd"
    data = _tar_with([_member(n, d) for n, d in BASE[:3]] + [link])
    with pytest.raises(PackageError, match=r"^only files and directories are allowed: link$"):
        validate(data)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/etc/passwd", "no absolute paths are allowed: /etc/passwd"),
        ("sub/../../x", "no non-canonical paths are allowed: sub/../../x"),
    ],
)
def test_unsafe_names(name: str, message: str) -> None:
    assert rejected([*BASE[:3], (name, b"x"), BASE[-1]]) == message


def test_reserved_directory() -> None:
    message = rejected([*BASE[:3], ("--PACKAGE-EXTRA--/", None), BASE[-1]])
    assert (
        message == "all reserved entries (starting with --PACKAGE-) need to be files, found --PACKAGE-EXTRA--"
    )


def test_header_not_first() -> None:
    assert (
        rejected([BASE[1], BASE[0], *BASE[2:]])
        == "the first file in the package is not --PACKAGE-HEADER--, but info.yaml"
    )
    assert (
        rejected([*BASE[:3], BASE[0], BASE[-1]])
        == "file --PACKAGE-HEADER-- found at index 4, but it needs to be the first file in the package"
    )


def test_header_yaml_problems() -> None:
    assert rejected([("--PACKAGE-HEADER--", b"a: [\n"), *BASE[1:]]).startswith(
        "Could not parse --PACKAGE-HEADER--: "
    )
    assert rejected([("--PACKAGE-HEADER--", yaml_docs(HEADER_TYPE)), *BASE[1:]]) == (
        "file --PACKAGE-HEADER-- does not consist of 2 YAML documents"
    )
    bad_type = {"formatType": "am-package-header", "formatVersion": 3}
    assert rejected([("--PACKAGE-HEADER--", yaml_docs(bad_type, {})), *BASE[1:]]) == (
        "file --PACKAGE-HEADER-- has an invalid document type"
    )


def test_files_after_the_footer() -> None:
    message = rejected([*BASE, ("late.txt", b"x")])
    assert message == "no normal files are allowed after the first --PACKAGE-FOOTER-- (found late.txt)"


def test_info_yaml_position_and_content() -> None:
    assert rejected([BASE[0], ("main.qml", b"x"), *BASE[1:]]) == (
        "package does not start with info.yaml and icon.png - found main.qml"
    )
    assert rejected([*BASE[:3], BASE[1], BASE[-1]]) == (
        "file info.yaml found at index 4, but it needs to be the second file of the package"
    )
    assert rejected([BASE[0], ("info.yaml", b"a: [\n"), *BASE[2:]]).startswith("Could not parse info.yaml: ")
    assert rejected([BASE[0], ("info.yaml", yaml_docs(INFO)), *BASE[2:]]) == (
        "file info.yaml does not consist of 2 YAML documents"
    )
    assert rejected(with_info(BASE, {"formatType": "am-other", "formatVersion": 1}, INFO)) == (
        "file info.yaml has an invalid document type"
    )


def test_header_v1_with_am_package_info() -> None:
    entries = package_entries("com.example.app", header_version=1, info_type="am-package")
    assert rejected(entries) == "inconsistent package version between --PACKAGE-HEADER-- and info.yaml files."


def test_icon_position() -> None:
    entries = package_entries("com.example.app")
    moved = refooted([entries[0], entries[1], ("main.qml", b"x"), entries[2]])
    assert (
        rejected(moved) == "file icon.png found at index 4, but it needs to be the third file in the package"
    )
    assert rejected([BASE[0], BASE[2], BASE[1], BASE[3], BASE[-1]]) == (
        "file icon.png found at index 2, but it needs to be the third file in the package"
    )


def test_other_icon_name_is_a_missing_icon() -> None:
    entries = refooted([BASE[0], BASE[1], ("icon.svg", b"<svg/>"), BASE[3]])
    assert rejected(entries) == "package metadata is missing the icon part"


def test_universal_binary() -> None:
    entries = refooted([*BASE[:3], ("bin/app", SAMPLES["macos-universal"].data)])
    assert rejected(entries) == "Universal binaries are not supported in packages"


@needs_shared_fixtures
def test_universal_binary_real_fixture() -> None:
    universal = shared_fixture("binaries", "macos-universal").read_bytes()
    entries = refooted([*BASE[:3], ("bin/app", universal)])
    assert rejected(entries) == "Universal binaries are not supported in packages"


def test_footer_problems() -> None:
    assert rejected(BASE[:-1]) == "file --PACKAGE-FOOTER-- does not consist of at least 2 YAML documents"
    wrong_type = yaml_docs(
        {"formatType": "am-package-header", "formatVersion": 2}, {"digest": digest_of(BASE[:-1])}
    )
    assert rejected([*BASE[:-1], ("--PACKAGE-FOOTER--", wrong_type)]) == (
        "file --PACKAGE-FOOTER-- has an invalid document type"
    )
    assert rejected(refooted(BASE, version=1)) == (
        "inconsistent package version between --PACKAGE-HEADER-- and --PACKAGE-FOOTER-- files."
    )


def test_footer_in_several_entries_is_merged() -> None:
    extra = ("--PACKAGE-FOOTER--", yaml_docs({"developerSignature": "abc"}))
    assert validate(tar_bytes([*BASE, extra])).footer["developerSignature"] == "abc"


def test_binaries_for_several_targets() -> None:
    two_os = refooted([*BASE[:3], ("a.so", ELF_X86_64), ("b.dylib", MACHO_ARM64)])
    assert rejected(two_os) == "Package can not contain binaries for more than one OS"
    two_archs = refooted([*BASE[:3], ("a.so", ELF_X86_64), ("b.so", ELF_ARM64)])
    assert rejected(two_archs) == "Multiple binary architectures detected in package"


def test_missing_fields() -> None:
    entries = with_header(BASE, HEADER_TYPE, {"packageId": "com.example.app"})
    assert rejected(entries) == "metadata diskSpaceUsed is missing in the header part"
    entries = with_header(
        BASE, {"formatType": "am-package-header", "formatVersion": 1}, {"packageId": "x", "diskSpaceUsed": 1}
    )
    entries = with_info(
        entries,
        {"formatType": "am-application", "formatVersion": 1},
        {"id": "x", "name": {"en": "x"}, "icon": "icon.png", "runtime": "qml", "code": "x.qml"},
    )
    entries = refooted(entries, version=1)
    assert rejected(entries) == "metadata applicationId is missing in the header part"
    no_apps = dict(INFO)
    del no_apps["applications"]
    assert (
        rejected(with_info(BASE, INFO_TYPE, no_apps)) == "metadata applications is missing in the info part"
    )
    footer = (
        "--PACKAGE-FOOTER--",
        yaml_docs({"formatType": "am-package-footer", "formatVersion": 2}, {"x": 1}),
    )
    assert rejected([*BASE[:-1], footer]) == "metadata digest is missing in the footer part"


def test_id_rules() -> None:
    different = with_header(BASE, HEADER_TYPE, {"packageId": "com.example.other", "diskSpaceUsed": 1})
    assert rejected(different) == (
        "the id fields in --PACKAGE-HEADER-- and info.yaml are different: "
        "com.example.other vs. com.example.app"
    )
    for bad, reason in (
        ("com/example", "must consist of printable ASCII characters only, except any of '<>:\"/\\|?*'"),
        ("   ", "must not consist of only white-space characters"),
        ("x" * 151, "the maximum length is 150 characters"),
        ("", "must not be empty"),
    ):
        assert rejected(package_entries(bad)) == f"invalid id: {reason}"


def test_disk_space_used() -> None:
    assert rejected(package_entries("com.example.app", disk_space_used=0)) == (
        "the diskSpaceUsed field in --PACKAGE-HEADER-- is not > 0, but 0"
    )


def test_names() -> None:
    assert (
        rejected(with_info(BASE, INFO_TYPE, {**INFO, "name": "Example"})) == "invalid name: not a dictionary"
    )
    assert rejected(with_info(BASE, INFO_TYPE, {**INFO, "name": {}})) == (
        "could not deduce a suitable package name from the info part"
    )


@pytest.mark.parametrize("tag", ["bad.tag", "qt:5:1", "", "фыва"])
def test_malformed_tags(tag: str) -> None:
    assert rejected(package_entries("com.example.app", tags=["qt", tag])) == "Malformed tag"


def test_malformed_conflict_tag() -> None:
    assert rejected(package_entries("com.example.app", conflicts=["a,b"])) == "Malformed tag"


def test_wrong_digest() -> None:
    wrong = "0" * 64
    message = rejected(package_entries("com.example.app", digest=wrong))
    assert message == f"digest does not match, is: {digest_of(BASE[:-1])}, but should be {wrong}"


def test_existing_store_signature() -> None:
    entries = package_entries("com.example.app", footer_fields={"storeSignature": "abc"})
    assert rejected(entries) == "cannot upload a package with an existing storeSignature field"


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.9])
def test_truncated_and_garbage_files(fraction: float) -> None:
    data = pack_package("com.example.app", files=[("blob.bin", bytes(range(256)) * 40)])
    with pytest.raises(PackageError):
        validate(data[: int(len(data) * fraction)])
    with pytest.raises(PackageError, match=r"^not a package archive"):
        validate(b"this is not a tar archive at all" * 20)


# -- depot check ------------------------------------------------------------------------------------


def test_depot_check_prints_each_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.appkg"
    good.write_bytes(pack_package("com.example.good"))
    bad = tmp_path / "bad.ampkg"
    bad.write_bytes(tar_bytes(package_entries("com.example.bad", footer_fields={"storeSignature": "x"})))
    icon = tmp_path / "icon4.appkg"
    icon.write_bytes(tar_bytes(refooted([BASE[0], BASE[1], ("main.qml", b"x"), BASE[2]])))
    run = lambda *files: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "runtime.cli", "check", *map(str, files)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
    )
    ok = run(good)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{good}: ok"
    mixed = run(good, bad, icon)
    assert mixed.returncode == 1
    lines = mixed.stdout.strip().splitlines()
    assert lines[1] == f"{bad}: INVALID: cannot upload a package with an existing storeSignature field"
    assert lines[2] == (
        f"{icon}: INVALID: file icon.png found at index 4, but it needs to be the third file in the package"
    )

"""Architecture strings: package binaries (real fixture files) and client ABI strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.qt.arch import ArchError, detect, normalize_client_arch

BINARIES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "binaries"
pytestmark = pytest.mark.skipif(not BINARIES.is_dir(), reason="../shared/fixtures is not there")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hardlink-amd64", "x86_64-little_endian-64-elf"),
        ("hardlink-i386", "i386-little_endian-32-elf"),
        ("android-elf.so", "arm-little_endian-32-elf"),
        ("libsymlink-arm64-v8a.so", "arm64-little_endian-64-elf"),
        ("macos-macho", "arm64-little_endian-64-mach_o"),
        ("windows-pe.exe", "x86_64-little_endian-64-pe32"),
    ],
)
def test_fixture_binaries(name: str, expected: str) -> None:
    info = detect((BINARIES / name).read_bytes())
    assert info is not None and info.architecture == expected


def test_universal_binary_is_rejected() -> None:
    with pytest.raises(ArchError, match=r"^Universal binaries are not supported in packages$"):
        detect((BINARIES / "macos-universal").read_bytes())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world\n",
        b"\x89PNG\r\n\x1a\n" + bytes(40),
        b"\x7fELF",  # truncated header
        b"MZ" + bytes(100),  # DOS stub without a PE header
        b"\xca\xfe\xba\xbe\x00\x00\x00\x34",  # a Java class file (major version 52), not universal
    ],
)
def test_non_binaries_are_not_detected(data: bytes) -> None:
    assert detect(data) is None


def test_big_endian_elf() -> None:
    header = b"\x7fELF\x01\x02\x01" + bytes(9) + b"\x00\x02\x00\x08"  # 32-bit MSB, MIPS
    info = detect(header)
    assert info is not None and info.architecture == "mips-big_endian-32-elf"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("x86_64-little_endian-lp64-linux", "x86_64-little_endian-64-elf"),
        ("arm-little_endian-ilp32-eabi-hardfloat-linux", "arm-little_endian-32-elf"),
        ("arm64-little_endian-lp64-linux", "arm64-little_endian-64-elf"),
        ("x86_64-little_endian-llp64-winnt", "x86_64-little_endian-64-pe32"),
        ("x86_64-little_endian-lp64-darwin", "x86_64-little_endian-64-mach_o"),
        ("i386-little_endian-ilp32-linux", "i386-little_endian-32-elf"),
        ("x86_64-little_endian-lp64-qnx", "x86_64-little_endian-64-qnx"),
        ("x86_64", ""),
    ],
)
def test_client_architecture(given: str, expected: str) -> None:
    assert normalize_client_arch(given) == expected

"""Which CPU, byte order, word size and binary format a file was built for, from its header.

The Qt deployment server asks libmagic and maps its prose to strings such as
``x86_64-little_endian-64-elf``; Neptune's client sends ``QSysInfo::buildAbi()`` plus the kernel
type, which :func:`normalize_client_arch` turns into the same form. Here the ELF, Mach-O and PE
headers are read directly (no libmagic), and CPUs are named with QSysInfo's tokens so that both
sides produce identical strings.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

UNIVERSAL = "Universal binaries are not supported in packages"


class ArchError(ValueError):
    """A binary Depot refuses in a package (a macOS universal binary)."""


@dataclass(frozen=True)
class BinaryInfo:
    os: str  # "Linux", "macOS", "Windows"
    arch: str
    endianness: str  # "little_endian" | "big_endian"
    bits: str  # "32" | "64"
    fmt: str  # "elf" | "mach_o" | "pe32"

    @property
    def architecture(self) -> str:
        return "-".join([self.arch.replace("-", "_"), self.endianness, self.bits, self.fmt])


# ELF e_machine → QSysInfo::buildCpuArchitecture() (32-bit name, 64-bit name)
ELF_MACHINES: dict[int, tuple[str, str]] = {
    2: ("sparc", "sparcv9"),
    3: ("i386", "i386"),
    8: ("mips", "mips64"),
    20: ("power", "power"),
    21: ("power64", "power64"),
    22: ("s390", "s390x"),
    40: ("arm", "arm"),
    43: ("sparcv9", "sparcv9"),
    50: ("ia64", "ia64"),
    62: ("x86_64", "x86_64"),
    183: ("arm64", "arm64"),
    243: ("riscv32", "riscv64"),
    258: ("loongarch32", "loongarch64"),
}

# Mach-O cputype (without the 64-bit ABI flag) → token
MACHO_CPUS = {7: "i386", 12: "arm", 18: "power"}
MACHO_64 = {7: "x86_64", 12: "arm64", 18: "power64"}
CPU_ARCH_ABI64 = 0x01000000

# PE machine → token
PE_MACHINES = {0x14C: "i386", 0x8664: "x86_64", 0x1C0: "arm", 0x1C4: "arm", 0xAA64: "arm64", 0x200: "ia64"}


def _elf(data: bytes) -> BinaryInfo | None:
    if len(data) < 20 or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    bits = "32" if data[4] == 1 else "64"
    order = "<" if data[5] == 1 else ">"
    machine = struct.unpack_from(order + "H", data, 18)[0]
    names = ELF_MACHINES.get(machine)
    arch = (names[0] if bits == "32" else names[1]) if names else f"elf_machine_{machine}"
    endian = "little_endian" if data[5] == 1 else "big_endian"
    return BinaryInfo("Linux", arch, endian, bits, "elf")


def _macho(data: bytes) -> BinaryInfo | None:
    magic = data[:4]
    if magic in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf") and len(data) >= 8:
        # The fat magic is shared with Java class files, whose next word is a class-file
        # version (45 and up); a universal binary has a handful of architectures there.
        count = struct.unpack_from(">I", data, 4)[0]
        if 0 < count < 45:
            raise ArchError(UNIVERSAL)
        return None
    layouts = {
        b"\xfe\xed\xfa\xce": (">", "32"),
        b"\xce\xfa\xed\xfe": ("<", "32"),
        b"\xfe\xed\xfa\xcf": (">", "64"),
        b"\xcf\xfa\xed\xfe": ("<", "64"),
    }
    if magic not in layouts or len(data) < 8:
        return None
    order, bits = layouts[magic]
    cputype = struct.unpack_from(order + "I", data, 4)[0]
    base = cputype & ~CPU_ARCH_ABI64
    table = MACHO_64 if cputype & CPU_ARCH_ABI64 else MACHO_CPUS
    arch = table.get(base, f"macho_cpu_{base}")
    # The reference treats every Mach-O file as little-endian (as libmagic's wording led it to).
    return BinaryInfo("macOS", arch, "little_endian", bits, "mach_o")


def _pe(data: bytes) -> BinaryInfo | None:
    if len(data) < 0x40:
        return None
    offset = struct.unpack_from("<I", data, 0x3C)[0]
    if offset + 26 > len(data) or data[offset : offset + 4] != b"PE\0\0":
        return None
    machine = struct.unpack_from("<H", data, offset + 4)[0]
    optional_magic = struct.unpack_from("<H", data, offset + 24)[0]
    arch = PE_MACHINES.get(machine, f"pe_machine_{machine:x}")
    bits = "64" if optional_magic == 0x20B else "32"
    return BinaryInfo("Windows", arch, "little_endian", bits, "pe32")


def detect(data: bytes) -> BinaryInfo | None:
    """The binary's target, None when ``data`` is not an ELF, Mach-O or PE binary; ArchError
    for a universal Mach-O."""
    if data[:4] == b"\x7fELF":
        return _elf(data)
    if data[:2] == b"MZ":
        return _pe(data)
    return _macho(data)


def normalize_client_arch(value: str) -> str:
    """``x86_64-little_endian-lp64-linux`` → ``x86_64-little_endian-64-elf``; '' when it cannot
    be understood (the reference's ``normalizeArch``)."""
    parts = value.split("-")
    if len(parts) < 4:
        return ""
    parts[2] = re.sub(r"\D", "", parts[2])
    kernel = parts[-1]
    if "darwin" in kernel:
        parts[3] = "mach_o"
    elif "linux" in kernel or "freebsd" in kernel:
        parts[3] = "elf"
    elif "win" in kernel:
        parts[3] = "pe32"
    # any other kernel leaves parts[3] as the client sent it, as the reference does: for
    # "x86_64-little_endian-lp64-elf-qnx" that is "elf", so the client sees its native packages
    return "-".join(parts[:4])

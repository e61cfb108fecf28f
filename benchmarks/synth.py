#!/usr/bin/env python3
"""Synthetic stores for the builder benchmarks.

``generate(out, count, seed)`` writes a repo/ with ``count`` device modules and a handful of
firmware images, plus its ``depot.toml``. Everything is a pure function of ``(count, seed)``:
the same arguments give byte-identical files (only their mtimes differ).

What the store looks like, so the figures mean something:

* Modules are spread over four platforms (``pi64`` 40 %, ``opi64`` 25 %, ``rk3588`` 20 %,
  ``amd64`` 15 %). Each module name has 1 to 6 versions on its platform (about 3 on average),
  with the version forms the device spec uses (``2.6.4`` and ``1.1.6-opi64``).
* A module is a real gzip tarball made with :func:`builder.device.module.pack_module`:
  a binary, often a shared library, a README, a config file, a VERSION file, sometimes a few
  data files, and (for 80 % of them) a ``module.toml`` manifest. Its compressed size is
  spread log-uniformly between about 4 and 64 KiB (binary parts are incompressible, text
  parts compress the way prose does). About 10 % carry a ``.toml`` sidecar.
* Firmware: ``max(2, count // 250)`` opaque images of 128 KiB to 1 MiB over the same
  platforms, a quarter with a sidecar.
* Qt Application Manager packages (``apps/*.appkg``): ``max(2, count * 50 // 1000)``, each a
  unique app id, made with :func:`builder.qt.pack.pack_package` (header, ``info.yaml``, a PNG
  icon, QML, a payload of 8 to 512 KiB, the footer digest); 15 % carry an x86-64 ELF library
  (a native architecture), 10 % carry tags. Every one has a sidecar with a category and a vendor
  that ``depot.toml`` declares (six categories, four vendors).
* OTA builds (``builds/<codename>/*.zip``): ``max(2, count * 40 // 1000)`` over
  ``max(2, count * 5 // 1000)`` devices (so about 8 per device), named to the default
  ``[ota] filename_pattern`` (``Bliss-v14-<codename>-OFFICIAL-<variant>-<YYYYMMDD>.zip``),
  weekly dates per device, four variants; made with :func:`builder.shipper.ota.pack_ota_zip`,
  128 KiB to 1 MiB, each with its ``.sha256`` sidecar. The devices and variants are declared.
* APKs (``android/<package>-<versionCode>.apk``): ``max(2, count * 50 // 1000)``, 1 to 4
  versions per package, signed with :mod:`tests.support.apk_factory` by one of three RSA keys
  per package: v1 only (minSdk 16 to 23, targetSdk 29), v1 + v2, v1 + v2 + v3, or v2 + v3 only (minSdk 26).
  A native library of 16 KiB to 1 MiB (stored), a small ``classes.dex``, sometimes permissions;
  80 % with a live release sidecar.

``kinds`` limits a store to some of ``modules`` (modules and firmware), ``qt``, ``ota`` and
``apk``; the counts above stay functions of ``count``.

The RSA keys are derived from the seed (primes from a seeded generator, fixed certificate
serials and dates) and RSA PKCS#1 v1.5 signatures are deterministic, so APKs are byte-identical
too; the v1 signature is the SHA-1 JAR form without signed attributes (no signing time).

Generation is fast because the bytes are sliced from two shared pools (random bytes and
pseudo-prose) rather than drawn per file; 10,000 modules take a few seconds.

    python benchmarks/synth.py --count 1000 --out /tmp/depot-bench/repo [--seed 0] [--jobs 2]
        [--kinds modules,qt,ota,apk]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import math
import random
import struct
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.device.module import pack_module
from builder.portal.apk import apk_filename
from builder.qt.pack import pack_package
from builder.shipper.ota import checksum_line, pack_ota_zip

PLATFORMS: tuple[tuple[str, str, float], ...] = (
    ("pi64", "Raspberry Pi class boards, 64-bit", 0.40),
    ("opi64", "Orange Pi class boards, 64-bit", 0.25),
    ("rk3588", "Rockchip RK3588 boards", 0.20),
    ("amd64", "x86-64 robot computers", 0.15),
)
_STEMS = (
    "ax", "iot", "nav", "lidar", "cam", "motor", "imu", "gps", "voice", "map", "slam", "arm",
    "dock", "battery", "bumper", "led", "audio", "vision", "wifi", "lte", "ble", "can", "ros",
    "py_axbot", "sensor", "lift", "door", "charger", "odom", "planner",
)  # fmt: skip
_ROLES = (
    "driver", "ctl", "svc", "bridge", "agent", "kit", "daemon", "sdk", "tools", "fw_loader",
    "monitor", "proxy", "cli", "ui", "calib",
)  # fmt: skip
_FIRMWARE = ("bottom-sensor", "mainboard", "motor-ctl", "bms", "lidar-fw", "cam-isp", "power")
_WORDS = (
    "the", "robot", "module", "drives", "sensor", "motion", "control", "data", "stream", "frame",
    "map", "route", "door", "lift", "battery", "charge", "dock", "status", "error", "retry",
    "timeout", "calibrate", "offset", "value", "update", "install", "service", "config", "path",
    "device", "platform", "version", "release", "build", "signal", "queue", "task", "log",
)  # fmt: skip

KINDS = ("modules", "qt", "ota", "apk")
# Per 1,000 modules (at least 2 of each): Qt packages, OTA builds, OTA devices, APKs.
QT_PER_1000, OTA_PER_1000, OTA_DEVICES_PER_1000, APK_PER_1000 = 50, 40, 5, 50
QT_CATEGORIES = ("Entertainment", "Tools", "Navigation", "Media", "Productivity", "Games")
QT_VENDORS = (("qt", "Qt"), ("synth", "Synth Labs"), ("fleet", "Fleet Team"), ("acme", "ACME Robotics"))
OTA_VARIANTS = (
    ("gapps", "GApps"), ("vanilla", "Vanilla (no GApps)"), ("foss", "FOSS"), ("goapps", "goapps"),
)  # fmt: skip
_OTA_DEVICES = (
    ("bullhead", "Nexus 5X", "LG"), ("angler", "Nexus 6P", "Huawei"),
    ("dream2lte", "Galaxy S8+", "Samsung"), ("sailfish", "Pixel", "Google"),
    ("walleye", "Pixel 2", "Google"),
)  # fmt: skip
_PERMISSIONS = (
    "android.permission.INTERNET", "android.permission.CAMERA", "android.permission.ACCESS_FINE_LOCATION",
    "android.permission.RECORD_AUDIO", "android.permission.BLUETOOTH_CONNECT",
    "android.permission.RECEIVE_BOOT_COMPLETED",
)  # fmt: skip
APK_KEYS = 3
_APK_SCHEMES = ((("v1",), 0.25), (("v1", "v2"), 0.35), (("v1", "v2", "v3"), 0.25), (("v2", "v3"), 0.15))

RANDOM_POOL_SIZE = 4 << 20
TEXT_POOL_SIZE = 512 << 10
MIN_COMPRESSED = 4 << 10
MAX_COMPRESSED = 64 << 10


@dataclass(frozen=True)
class ModuleSpec:
    """One module file to write; ``seed`` drives everything about its contents."""

    name: str
    version: str
    platform: str
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.version}.{self.platform}.tar.gz"


@dataclass(frozen=True)
class FirmwareSpec:
    name: str
    version: str
    platform: str
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.version}.{self.platform}.bin"


@dataclass(frozen=True)
class QtSpec:
    app_id: str
    version: str
    category: str
    vendor: str
    native: bool
    tagged: bool
    seed: int

    @property
    def filename(self) -> str:
        return f"{self.app_id}.appkg"


@dataclass(frozen=True)
class OtaSpec:
    codename: str
    version: str
    variant: str
    date: str  # YYYYMMDD
    seed: int

    @property
    def filename(self) -> str:
        return f"Bliss-{self.version}-{self.codename}-OFFICIAL-{self.variant}-{self.date}.zip"


@dataclass(frozen=True)
class ApkSpec:
    package: str
    version_code: int
    version_name: str
    min_sdk: int
    schemes: tuple[str, ...]
    key: int  # index into apk_keys()
    seed: int

    @property
    def filename(self) -> str:
        return apk_filename(self.package, self.version_code)


Spec = ModuleSpec | FirmwareSpec | QtSpec | OtaSpec | ApkSpec
KIND_OF = {ModuleSpec: "modules", FirmwareSpec: "firmware", QtSpec: "qt", OtaSpec: "ota", ApkSpec: "apk"}
FOLDER_OF = {"modules": "modules", "firmware": "firmware", "qt": "apps", "ota": "builds", "apk": "android"}


@dataclass
class SynthStats:
    modules: int = 0
    firmware: int = 0
    qt: int = 0
    ota: int = 0
    apk: int = 0
    sidecars: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def packages(self) -> int:
        return self.modules + self.firmware + self.qt + self.ota + self.apk

    def counts(self) -> dict[str, int]:
        """Packages per kind (sidecars not counted)."""
        return {k: getattr(self, k) for k in ("modules", "firmware", "qt", "ota", "apk")}


# -- byte pools (per process, built once) -------------------------------------------------------

_POOLS: dict[int, tuple[bytes, bytes]] = {}


def pools(seed: int) -> tuple[bytes, bytes]:
    """(incompressible bytes, compressible prose) shared by every file of a store."""
    if seed not in _POOLS:
        rng = random.Random(f"pool:{seed}")
        noise = rng.randbytes(RANDOM_POOL_SIZE)
        words: list[str] = []
        size = 0
        while size < TEXT_POOL_SIZE:
            line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14)))
            words.append(line.capitalize() + ".\n")
            size += len(words[-1])
        _POOLS[seed] = (noise, "".join(words).encode()[:TEXT_POOL_SIZE])
    return _POOLS[seed]


def _slice(pool: bytes, rng: random.Random, size: int) -> bytes:
    size = min(size, len(pool))
    start = rng.randrange(0, len(pool) - size + 1)
    return pool[start : start + size]


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


# -- planning: which files, decided from the seed alone -----------------------------------------


def _weighted_platform(rng: random.Random) -> str:
    return rng.choices([p[0] for p in PLATFORMS], weights=[p[2] for p in PLATFORMS])[0]


def _versions(rng: random.Random, count: int, platform: str) -> list[str]:
    major, minor, patch = rng.randint(0, 3), rng.randint(0, 9), rng.randint(0, 9)
    tagged = rng.random() < 0.25  # the spec's "1.1.6-opi64" form
    out = []
    for _ in range(count):
        step = rng.random()
        if step < 0.6:
            patch += 1
        elif step < 0.9:
            minor, patch = minor + 1, 0
        else:
            major, minor, patch = major + 1, 0, 0
        out.append(f"{major}.{minor}.{patch}" + (f"-{platform}" if tagged else ""))
    return out


def plan_modules(count: int, seed: int = 0) -> list[ModuleSpec]:
    rng = random.Random(f"modules:{seed}")
    specs: list[ModuleSpec] = []
    used: dict[str, int] = {}
    while len(specs) < count:
        base = f"{rng.choice(_STEMS)}_{rng.choice(_ROLES)}"
        used[base] = used.get(base, 0) + 1
        name = base if used[base] == 1 else f"{base}{used[base]}"
        platform = _weighted_platform(rng)
        n_versions = min(rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 6)), count - len(specs))
        for version in _versions(rng, n_versions, platform):
            specs.append(ModuleSpec(name, version, platform, rng.getrandbits(63)))
    return specs


def plan_firmware(count: int, seed: int = 0) -> list[FirmwareSpec]:
    rng = random.Random(f"firmware:{seed}")
    specs: list[FirmwareSpec] = []
    while len(specs) < count:
        name = rng.choice(_FIRMWARE)
        platform = _weighted_platform(rng)
        for version in _versions(rng, min(rng.randint(1, 3), count - len(specs)), platform):
            if any(s.filename == f"{name}.{version}.{platform}.bin" for s in specs):
                continue
            specs.append(FirmwareSpec(name, version, platform, rng.getrandbits(63)))
    return specs


def _unique_names(rng: random.Random, prefix: str, used: dict[str, int]) -> str:
    base = f"{prefix}.{rng.choice(_STEMS).replace('_', '')}.{rng.choice(_ROLES).replace('_', '')}"
    used[base] = used.get(base, 0) + 1
    return base if used[base] == 1 else f"{base}{used[base]}"


def qt_count(count: int) -> int:
    return max(2, count * QT_PER_1000 // 1000)


def ota_count(count: int) -> int:
    return max(2, count * OTA_PER_1000 // 1000)


def apk_count(count: int) -> int:
    return max(2, count * APK_PER_1000 // 1000)


def ota_devices(count: int) -> list[tuple[str, str, str]]:
    """(codename, name, manufacturer) of the store's OTA devices: real ones first, then dev<n>."""
    n = max(2, count * OTA_DEVICES_PER_1000 // 1000)
    extra = [(f"synth{i}", f"Synthetic device {i}", "Synth Labs") for i in range(n - len(_OTA_DEVICES))]
    return [*_OTA_DEVICES, *extra][:n]


def plan_qt(count: int, seed: int = 0) -> list[QtSpec]:
    rng = random.Random(f"qt:{seed}")
    used: dict[str, int] = {}
    specs = []
    for _ in range(count):
        specs.append(
            QtSpec(
                app_id=_unique_names(rng, "com.synth", used),
                version=f"{rng.randint(0, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
                category=rng.choice(QT_CATEGORIES),
                vendor=rng.choice(QT_VENDORS)[rng.randint(0, 1)],  # by id or by name: both resolve
                native=rng.random() < 0.15,
                tagged=rng.random() < 0.10,
                seed=rng.getrandbits(63),
            )
        )
    return specs


def plan_ota(count: int, devices: list[tuple[str, str, str]], seed: int = 0) -> list[OtaSpec]:
    """Builds spread over the devices at random; each device's builds a week apart."""
    rng = random.Random(f"ota:{seed}")
    start = dt.date(2024, 1, 1)
    per_device: dict[str, int] = {}
    specs = []
    for _ in range(count):
        codename = rng.choice(devices)[0]
        n = per_device[codename] = per_device.get(codename, -1) + 1
        day = start + dt.timedelta(days=7 * n + rng.randint(0, 6))
        specs.append(
            OtaSpec(
                codename=codename,
                version="v14" if n < 26 else "v15",
                variant=rng.choice(OTA_VARIANTS)[0],
                date=day.strftime("%Y%m%d"),
                seed=rng.getrandbits(63),
            )
        )
    return specs


def plan_apk(count: int, seed: int = 0) -> list[ApkSpec]:
    rng = random.Random(f"apk:{seed}")
    used: dict[str, int] = {}
    specs: list[ApkSpec] = []
    while len(specs) < count:
        package = _unique_names(rng, "com.synth", used)
        schemes = rng.choices([s for s, _w in _APK_SCHEMES], weights=[w for _s, w in _APK_SCHEMES])[0]
        if "v1" not in schemes:
            min_sdk = 26  # v2 and v3 cover API 24 and up only
        elif schemes == ("v1",):
            min_sdk = rng.randint(16, 23)
        else:
            min_sdk = rng.choice((21, 23, 24, 26))
        key = rng.randrange(APK_KEYS)  # one signer per package: a new key would be a signer change
        code = rng.randint(1, 50)
        for _ in range(min(rng.choice((1, 1, 2, 2, 3, 4)), count - len(specs))):
            code += rng.randint(1, 5)
            name = f"{code // 10}.{code % 10}"
            specs.append(ApkSpec(package, code, name, min_sdk, schemes, key, rng.getrandbits(63)))
    return specs


# -- deterministic signing keys -----------------------------------------------------------------

_KEYS: dict[tuple[int, int], object] = {}


def apk_key(index: int, seed: int = 0):
    """An RSA 2048 signing key and self-signed certificate made from (index, seed) alone."""
    if (index, seed) not in _KEYS:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        from tests.support.apk_factory import SigningKey
        from tests.support.apk_mutants import seeded_rsa_key

        rng = random.Random(f"apk-key:{seed}:{index}")  # the certificate's serial number
        key = seeded_rsa_key(f"apk-key:{seed}:{index}", 2048)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Synth Labs"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Synthetic release key {index}"),
            ]
        )
        start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(rng.getrandbits(62) + 1)
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=365 * 30))
            .sign(key, hashes.SHA256())  # PKCS#1 v1.5: deterministic
        )
        _KEYS[(index, seed)] = SigningKey(key, cert)
    return _KEYS[(index, seed)]


# -- writing ------------------------------------------------------------------------------------


def write_module(modules_dir: Path, spec: ModuleSpec, pool_seed: int = 0) -> tuple[int, bool]:
    """Write one module (and maybe its sidecar); returns (bytes written, has sidecar)."""
    noise, text = pools(pool_seed)
    rng = random.Random(spec.seed)
    # Incompressible bytes dominate the compressed size; aim log-uniformly at 4..64 KiB.
    target = int(math.exp(rng.uniform(math.log(MIN_COMPRESSED), math.log(MAX_COMPRESSED))))
    binary = max(2048, target - 2048)
    n = spec.name
    files: dict[str, bytes] = {}
    if rng.random() < 0.5:
        lib = binary // rng.randint(2, 4)
        files[f"lib/lib{n}.so.{spec.version.split('.')[0]}"] = _slice(noise, rng, lib)
        binary -= lib
    files[f"bin/{n}"] = b"\x7fELF\x02\x01\x01\0" + _slice(noise, rng, binary)
    files[f"share/{n}/README.md"] = f"# {n} {spec.version}\n\n".encode() + _slice(
        text, rng, rng.randint(512, 6144)
    )
    files[f"etc/{n}/{n}.conf"] = _slice(text, rng, rng.randint(100, 800))
    files[f"share/{n}/VERSION"] = f"{n} {spec.version} {spec.platform}\n".encode()
    for j in range(rng.choice((0, 0, 1, 2, 3))):
        files[f"share/{n}/data-{j}.json"] = b'{"rows": "' + _slice(text, rng, rng.randint(256, 4096)) + b'"}'
    manifest = None
    if rng.random() < 0.8:
        manifest = {"name": n, "version": spec.version, "platform": spec.platform}
        manifest["description"] = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 9))).capitalize()
        manifest["optional"] = rng.random() < 0.1
    dest = modules_dir / spec.filename
    pack_module(dest, files, manifest)
    size = dest.stat().st_size
    sidecar = rng.random() < 0.1
    if sidecar:
        side = dest.with_name(dest.name + ".toml")
        side.write_text(f'description = "{n} for {spec.platform}, maintained by the fleet team"\n')
        size += side.stat().st_size
    return size, sidecar


def write_firmware(firmware_dir: Path, spec: FirmwareSpec, pool_seed: int = 0) -> tuple[int, bool]:
    noise, _text = pools(pool_seed)
    rng = random.Random(spec.seed)
    header = f"DEPOT-SYNTH-FIRMWARE {spec.name} {spec.version} {spec.platform}\n".encode()
    body = _slice(noise, rng, rng.randint(128 << 10, 1 << 20))
    dest = firmware_dir / spec.filename
    dest.write_bytes(header + body)
    size = len(header) + len(body)
    sidecar = rng.random() < 0.25
    if sidecar:
        side = dest.with_name(dest.name + ".toml")
        side.write_text(f'description = "{spec.name} image for {spec.platform} boards"\n')
        size += side.stat().st_size
    return size, sidecar


_ICONS: dict[int, bytes] = {}


def _icon(index: int) -> bytes:
    """One of eight 48x48 PNG discs (drawn once per process; packages share them)."""
    if index not in _ICONS:
        from tests.support.qt_sources import _disc, png

        rgb = ((index * 97) % 256, (index * 57 + 80) % 256, (index * 31 + 160) % 256)
        _ICONS[index] = png(48, 48, _disc(48, rgb))
    return _ICONS[index]


_QML = 'import QtQuick 2.0\n\nRectangle {{\n    color: "{colour}"\n    Text {{ text: "{name}" }}\n}}\n'


def write_qt(apps_dir: Path, spec: QtSpec, pool_seed: int = 0) -> tuple[int, bool]:
    noise, text = pools(pool_seed)
    rng = random.Random(spec.seed)
    title = spec.app_id.split(".", 2)[2].replace(".", " ").title()
    files: list[tuple[str, bytes | None]] = [
        ("main.qml", _QML.format(colour=rng.choice(("red", "green", "blue", "orange")), name=title).encode()),
        ("README.txt", _slice(text, rng, rng.randint(256, 4096))),
        ("data/", None),
        ("data/assets.bin", _slice(noise, rng, _log_uniform(rng, 8 << 10, 512 << 10))),
    ]
    if spec.native:  # an x86-64 ELF shared object makes the package architecture-specific
        ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
        header = ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, 0, 0, 64, 0, 0, 64, 0, 0)
        library = f"lib/lib{title.split()[-1].lower()}.so"
        files += [("lib/", None), (library, header + _slice(noise, rng, 8192))]
    extra: dict[str, object] = {}
    if spec.tagged:
        extra = {"tags": ["qt:5.15", rng.choice(("build_target:desktop", "build_target:neptune"))]}
    data = pack_package(
        spec.app_id,
        name={"en": title, "de": title + " (DE)"},
        version=spec.version,
        icon=_icon(rng.randrange(8)),
        files=files,
        **extra,
    )
    dest = apps_dir / spec.filename
    dest.write_bytes(data)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 10)))
    sidecar = (
        f'category = "{spec.category}"\nvendor = "{spec.vendor}"\n'
        f'brief_description = "{words.capitalize()}."\n'
        f'description = "<p>{title}: {words}.</p>"\nupdated = "2026-{month:02d}-{day:02d}"\n'
    )
    side = dest.with_name(dest.name + ".toml")
    side.write_text(sidecar)
    return len(data) + side.stat().st_size, True


def write_ota(builds_dir: Path, spec: OtaSpec, pool_seed: int = 0) -> tuple[int, bool]:
    noise, _text = pools(pool_seed)
    rng = random.Random(spec.seed)
    stamp = int(dt.datetime.strptime(spec.date, "%Y%m%d").replace(tzinfo=dt.UTC).timestamp())
    payload = _slice(noise, rng, _log_uniform(rng, 128 << 10, 1 << 20))
    dest = builds_dir / spec.codename / spec.filename
    dest.parent.mkdir(exist_ok=True)
    pack_ota_zip(
        dest,
        {
            "ota-type": "AB",
            "post-build": f"synth/{spec.codename}/{spec.codename}:10/QQ3A/{stamp}:user/release-keys",
            "post-timestamp": str(stamp),
            "pre-device": spec.codename,
        },
        payload,
    )
    data = dest.read_bytes()
    side = dest.with_name(dest.name + ".sha256")
    side.write_bytes(checksum_line(hashlib.sha256(data).hexdigest(), dest.name))
    return len(data) + side.stat().st_size, True


def write_apk(android_dir: Path, spec: ApkSpec, pool_seed: int = 0) -> tuple[int, bool]:
    from tests.support.apk_factory import compile_manifest, sign_block, sign_v1, zip_apk

    noise, text = pools(pool_seed)
    rng = random.Random(spec.seed)
    key = apk_key(spec.key, pool_seed)
    permissions = tuple(sorted(rng.sample(_PERMISSIONS, rng.randint(0, 3))))
    lib = _log_uniform(rng, 16 << 10, 1 << 20)
    files = {
        "AndroidManifest.xml": compile_manifest(
            spec.package,
            spec.version_code,
            spec.version_name,
            spec.min_sdk,
            permissions=permissions,
            target_sdk=34 if "v2" in spec.schemes else 29,  # API 30 and up need a v2 signature
        ),
        "classes.dex": b"dex\n035\0" + _slice(noise, rng, rng.randint(2 << 10, 32 << 10)),
        "res/raw/notes.txt": _slice(text, rng, rng.randint(256, 4096)),
        "lib/arm64-v8a/libsynth.so": b"\x7fELF\x02\x01\x01\0" + _slice(noise, rng, lib),  # stored
    }
    if "v1" in spec.schemes:  # the SHA-1 JAR form: no signing time, so the bytes are reproducible
        files = sign_v1(files, key, also_signed=[s for s in spec.schemes if s != "v1"], legacy=True)
    data = zip_apk(files)
    block = [s for s in spec.schemes if s in ("v2", "v3")]
    if block:
        data = sign_block(data, key, block)
    dest = android_dir / spec.filename
    dest.write_bytes(data)
    size, sidecar = len(data), rng.random() < 0.8
    if sidecar:
        countries = sorted(rng.sample(("AT", "CH", "DE", "FR", "IT", "NL"), rng.randint(0, 3)))
        side = dest.with_name(dest.name + ".toml")
        quoted = ", ".join(f'"{c}"' for c in countries)
        side.write_text(
            f'status = "live"\ncountries = [{quoted}]\n'
            f'released = "2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00Z"\n'
        )
        size += side.stat().st_size
    return size, sidecar


WRITERS = {
    ModuleSpec: write_module,
    FirmwareSpec: write_firmware,
    QtSpec: write_qt,
    OtaSpec: write_ota,
    ApkSpec: write_apk,
}


def depot_toml(count: int, seed: int, kinds: Iterable[str] = KINDS) -> str:
    kinds = set(kinds)
    lines = [
        "# A synthetic store made by benchmarks/synth.py; do not edit by hand.",
        "",
        "[store]",
        f'name = "Synthetic store ({count} modules, seed {seed})"',
        'description = "Generated for the builder benchmarks."',
        'base_url = "http://127.0.0.1:8000"  # OTA feeds need absolute download URLs',
        "",
        "[device]",
        "platforms = [",
        *(f'  {{ name = "{name}", description = "{desc}" }},' for name, desc, _w in PLATFORMS),
        "]",
        "",
    ]
    if "qt" in kinds:
        lines += [
            "[qt]",
            "categories = [",
            *(f'  {{ name = "{name}" }},' for name in QT_CATEGORIES),
            "]",
            "vendors = [",
            *(f'  {{ id = "{vid}", name = "{name}" }},' for vid, name in QT_VENDORS),
            "]",
            "",
        ]
    if "ota" in kinds:
        lines += [
            "[ota]",
            "devices = [",
            *(
                f'  {{ codename = "{c}", name = "{n}", manufacturer = "{m}", maintained = true }},'
                for c, n, m in ota_devices(count)
            ),
            "]",
            "variants = [",
            *(f'  {{ codename = "{c}", description = "{d}" }},' for c, d in OTA_VARIANTS),
            "]",
            'allowed_versions = ["*"]',
            "",
        ]
    return "\n".join(lines)


def plan(count: int, seed: int = 0, firmware: int | None = None, kinds: Iterable[str] = KINDS) -> list[Spec]:
    """Every file of the store, in a fixed order."""
    kinds = set(kinds)
    specs: list[Spec] = []
    if "modules" in kinds:
        specs += plan_modules(count, seed)
        specs += plan_firmware(max(2, count // 250) if firmware is None else firmware, seed)
    if "qt" in kinds:
        specs += plan_qt(qt_count(count), seed)
    if "ota" in kinds:
        specs += plan_ota(ota_count(count), ota_devices(count), seed)
    if "apk" in kinds:
        specs += plan_apk(apk_count(count), seed)
    return specs


def _write_chunk(args: tuple[str, list[Spec], int]) -> tuple[dict[str, int], int, int]:
    out, specs, pool_seed = args
    counts: dict[str, int] = {}
    total = sidecars = 0
    for spec in specs:
        kind = KIND_OF[type(spec)]
        size, side = WRITERS[type(spec)](Path(out) / FOLDER_OF[kind], spec, pool_seed)  # type: ignore[operator]
        counts[kind] = counts.get(kind, 0) + 1
        total += size
        sidecars += side
    return counts, total, sidecars


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown kinds {unknown}: choose from {','.join(KINDS)}")
    return kinds


def generate(
    out: Path,
    count: int,
    seed: int = 0,
    firmware: int | None = None,
    jobs: int = 1,
    kinds: Iterable[str] = KINDS,
) -> SynthStats:
    """Write a synthetic repo/ into ``out`` (created; must be empty or missing)."""
    t0 = time.perf_counter()
    kinds = tuple(kinds)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    stats = SynthStats()
    (out / "depot.toml").write_text(depot_toml(count, seed, kinds))
    specs = plan(count, seed, firmware, kinds)
    for folder in sorted({FOLDER_OF[KIND_OF[type(s)]] for s in specs}):
        (out / folder).mkdir()
    if "modules" in kinds:
        (out / "firmware").mkdir(exist_ok=True)

    results = []
    if jobs > 1 and len(specs) >= 200:
        chunks = [(str(out), specs[i::jobs], seed) for i in range(jobs)]
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_write_chunk, chunks))
    else:
        results = [_write_chunk((str(out), specs, seed))]
    for counts, size, sidecars in results:
        for kind, n in counts.items():
            setattr(stats, kind, getattr(stats, kind) + n)
        stats.bytes += size
        stats.sidecars += sidecars
    stats.seconds = time.perf_counter() - t0
    return stats


def add_module(repo: Path, serial: int, seed: int = 0) -> Path:
    """Drop one new module into an existing synthetic repo (a new version of a new name).

    ``serial`` makes it unique; the same (serial, seed) always gives the same bytes."""
    spec = ModuleSpec(
        name=f"bench_added_{serial}",
        version=f"1.0.{serial}",
        platform=PLATFORMS[serial % len(PLATFORMS)][0],
        seed=random.Random(f"added:{seed}:{serial}").getrandbits(63),
    )
    write_module(repo / "modules", spec, seed)
    return repo / "modules" / spec.filename


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="number of device modules")
    parser.add_argument("--out", type=Path, required=True, help="repo folder to create (empty or missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--firmware", type=int, default=None, help="firmware images (default count/250)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (output is the same)")
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="comma-separated kinds to generate, of modules (with firmware), qt, ota, apk (default: all)",
    )
    args = parser.parse_args(argv)
    try:
        kinds = parse_kinds(args.kinds)
    except ValueError as exc:
        parser.error(str(exc))
    stats = generate(args.out, args.count, args.seed, args.firmware, args.jobs, kinds)
    print(
        f"{args.out}: {stats.modules} modules, {stats.firmware} firmware, {stats.qt} Qt packages, "
        f"{stats.ota} OTA builds, {stats.apk} APKs, {stats.sidecars} sidecars, "
        f"{stats.bytes / 2**20:.1f} MiB in {stats.seconds:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

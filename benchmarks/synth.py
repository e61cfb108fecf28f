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

OTA builds, Qt packages and APKs are not generated: the builder does not read them yet.

Generation is fast because the bytes are sliced from two shared pools (random bytes and
pseudo-prose) rather than drawn per file; 10,000 modules take a few seconds.

    python benchmarks/synth.py --count 1000 --out /tmp/depot-bench/repo [--seed 0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.device.module import pack_module

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


@dataclass
class SynthStats:
    modules: int = 0
    firmware: int = 0
    sidecars: int = 0
    bytes: int = 0
    seconds: float = 0.0


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


def depot_toml(count: int, seed: int) -> str:
    lines = [
        "# A synthetic store made by benchmarks/synth.py; do not edit by hand.",
        "",
        "[store]",
        f'name = "Synthetic store ({count} modules, seed {seed})"',
        'description = "Generated for the builder benchmarks."',
        "",
        "[device]",
        "platforms = [",
        *(f'  {{ name = "{name}", description = "{desc}" }},' for name, desc, _w in PLATFORMS),
        "]",
        "",
    ]
    return "\n".join(lines)


def _write_chunk(args: tuple[str, list[ModuleSpec], int]) -> tuple[int, int]:
    folder, specs, pool_seed = args
    total = sidecars = 0
    for spec in specs:
        size, side = write_module(Path(folder), spec, pool_seed)
        total += size
        sidecars += side
    return total, sidecars


def generate(
    out: Path,
    count: int,
    seed: int = 0,
    firmware: int | None = None,
    jobs: int = 1,
) -> SynthStats:
    """Write a synthetic repo/ into ``out`` (created; must be empty or missing)."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    stats = SynthStats()
    (out / "depot.toml").write_text(depot_toml(count, seed))
    modules_dir, firmware_dir = out / "modules", out / "firmware"
    modules_dir.mkdir()
    firmware_dir.mkdir()

    specs = plan_modules(count, seed)
    if jobs > 1 and len(specs) >= 200:
        chunks = [(str(modules_dir), specs[i::jobs], seed) for i in range(jobs)]
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for size, sidecars in pool.map(_write_chunk, chunks):
                stats.bytes += size
                stats.sidecars += sidecars
    else:
        stats.bytes, stats.sidecars = _write_chunk((str(modules_dir), specs, seed))
    stats.modules = len(specs)

    for spec in plan_firmware(max(2, count // 250) if firmware is None else firmware, seed):
        size, side = write_firmware(firmware_dir, spec, seed)
        stats.firmware += 1
        stats.bytes += size
        stats.sidecars += side
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
    args = parser.parse_args(argv)
    stats = generate(args.out, args.count, args.seed, args.firmware, args.jobs)
    print(
        f"{args.out}: {stats.modules} modules, {stats.firmware} firmware, {stats.sidecars} sidecars, "
        f"{stats.bytes / 2**20:.1f} MiB in {stats.seconds:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Module and firmware readers: every malformed input is skipped with its reason, the rest publishes.

Malformed archives are crafted byte by byte with tarfile and gzip; good ones come from
``pack_module``. Each case runs the real `depot build` and checks what a maintainer and a
device would see: exit status 0, a warning naming the file and the reason, and a site that is
byte for byte the site without the bad file (nothing of it published, not even its blob).
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.build import build
from builder.check import check_file
from builder.device.module import pack_module
from builder.errors import FormatError
from builder.tarsafe import inspect_tarball
from tests.support.repos import (
    DEMO,
    add_module,
    assert_same_tree,
    copy_demo,
    device_entries,
    run_depot,
    sha256,
    site_tree,
)

# -- crafting archives --------------------------------------------------------------------------


def member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o644
    return info, data


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def tar_gz(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    return gzip.compress(tar_bytes(*members), mtime=0)


README = member("README", b"hello\n")


def good_module_bytes(name: str = "bad", version: str = "1.0", platform: str = "pi64") -> bytes:
    """A valid module's bytes (its manifest agrees with the name ``bad.1.0.pi64.tar.gz``)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = pack_module(
            Path(scratch) / f"{name}.{version}.{platform}.tar.gz",
            {"bin/tool": b"#!/bin/sh\necho tool\n" * 40, "README": b"a module\n"},
            {"name": name, "version": version, "platform": platform},
        )
        return path.read_bytes()


GOOD = good_module_bytes()
GOOD_LEN = len(GOOD)
# A gzip stream ends with CRC-32 (4 bytes) then the uncompressed length (4 bytes).
TRUNCATIONS = {
    "truncated-in-header": 5,
    "truncated-early": 40,
    "truncated-halfway": GOOD_LEN // 2,
    "truncated-before-trailer": GOOD_LEN - 8,
    "truncated-inside-crc": GOOD_LEN - 6,
    "truncated-inside-length": GOOD_LEN - 2,
    "truncated-last-byte": GOOD_LEN - 1,
}


# -- the cases ----------------------------------------------------------------------------------


@dataclass
class Bad:
    """A file to drop into the demo repo: where, how to make it, what the warning must say."""

    relpath: str
    make: Callable[[Path], None]
    reason: str
    blob: bytes | None = None  # bytes that must not appear anywhere under site/files


def put(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def module_with_sidecar(sidecar: bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(GOOD)
        Path(str(path) + ".toml").write_bytes(sidecar)

    return make


def symlink_to_outside_module(path: Path) -> None:
    outside = path.parent.parent.parent / "elsewhere" / path.name
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(GOOD)
    path.symlink_to(outside)


def manifest_says(**fields: str) -> bytes:
    text = "".join(
        f'{k} = "{v}"\n' for k, v in ({"name": "bad", "version": "1.0", "platform": "pi64"} | fields).items()
    )
    return tar_gz(member("module.toml", text.encode()), README)


M = "modules/bad.1.0.pi64.tar.gz"
CASES: dict[str, Bad] = {
    **{
        case: Bad(M, put(GOOD[:cut]), "truncated or malformed archive", GOOD[:cut])
        for case, cut in TRUNCATIONS.items()
    },
    "not-gzip": Bad(M, put(b"PK\x03\x04 this is a zip, not a gzip\n" * 20), "truncated or malformed archive"),
    "zero-bytes": Bad(M, put(b""), "truncated or malformed archive"),
    "gzip-of-nothing": Bad(M, put(gzip.compress(b"")), "truncated or malformed archive"),
    "tar-cut-inside-a-member": Bad(
        M, put(gzip.compress(tar_bytes(member("big", b"x" * 5000))[:2048])), "truncated or malformed archive"
    ),
    "garbage-after-the-gzip-stream": Bad(M, put(GOOD + b"garbage"), "truncated or malformed archive"),
    "empty-archive": Bad(M, put(tar_gz()), "empty archive"),
    "absolute-path": Bad(M, put(tar_gz(README, member("/etc/cron.d/evil", b"x"))), "absolute path"),
    "dot-dot": Bad(M, put(tar_gz(README, member("../evil", b"x"))), "contains '..'"),
    "dot-dot-inside": Bad(M, put(tar_gz(README, member("lib/../../evil", b"x"))), "contains '..'"),
    "symlink-absolute": Bad(
        M,
        put(tar_gz(README, member("lib/passwd", kind=tarfile.SYMTYPE, link="/etc/passwd"))),
        "outside the archive",
    ),
    "symlink-relative-escape": Bad(
        M,
        put(tar_gz(README, member("lib/up", kind=tarfile.SYMTYPE, link="../../etc"))),
        "outside the archive",
    ),
    "symlink-escape-after-descending": Bad(
        M,
        put(tar_gz(README, member("a/b/link", kind=tarfile.SYMTYPE, link="../c/../../../x"))),
        "outside the archive",
    ),
    "hardlink-outside": Bad(
        M,
        put(tar_gz(README, member("lib/h", kind=tarfile.LNKTYPE, link="../outside"))),
        "outside the archive",
    ),
    "hardlink-absolute": Bad(
        M,
        put(tar_gz(README, member("lib/h", kind=tarfile.LNKTYPE, link="/etc/shadow"))),
        "outside the archive",
    ),
    "char-device": Bad(M, put(tar_gz(README, member("dev/null", kind=tarfile.CHRTYPE))), "device or FIFO"),
    "block-device": Bad(M, put(tar_gz(README, member("dev/sda", kind=tarfile.BLKTYPE))), "device or FIFO"),
    "fifo": Bad(M, put(tar_gz(README, member("run/pipe", kind=tarfile.FIFOTYPE))), "device or FIFO"),
    "manifest-name-mismatch": Bad(
        M, put(manifest_says(name="other")), "module.toml says name 'other' but the file name says 'bad'"
    ),
    "manifest-version-mismatch": Bad(
        M, put(manifest_says(version="2.0")), "module.toml says version '2.0' but the file name says '1.0'"
    ),
    "manifest-platform-mismatch": Bad(
        M, put(manifest_says(platform="x86")), "module.toml says platform 'x86' but the file name says 'pi64'"
    ),
    "manifest-invalid-toml": Bad(M, put(tar_gz(member("module.toml", b"name = \n"), README)), "module.toml:"),
    "manifest-not-utf8": Bad(
        M, put(tar_gz(member("module.toml", b'name = "\xff"\n'), README)), "module.toml:"
    ),
    "sidecar-invalid-toml": Bad(
        M, module_with_sidecar(b'description = "unterminated\n'), "sidecar bad.1.0.pi64.tar.gz.toml:", GOOD
    ),
    "name-without-version": Bad(
        "modules/bad.pi64.tar.gz", put(GOOD), "is not <name>.<version>.<platform>.tar.gz", GOOD
    ),
    "name-with-dashes-only": Bad(
        "modules/bad-1.0-pi64.tar.gz", put(GOOD), "is not <name>.<version>.<platform>.tar.gz", GOOD
    ),
    "not-a-tarball-name": Bad(
        "modules/notes.txt", put(b"notes\n"), "is not <name>.<version>.<platform>.tar.gz"
    ),
    "in-a-sub-folder": Bad("modules/extra/bad.1.0.pi64.tar.gz", put(GOOD), "not in sub-folders", GOOD),
    "symlink-in-repo": Bad(M, symlink_to_outside_module, "symbolic links are not followed", GOOD),
    "empty-firmware": Bad("firmware/boot.1.0.pi64.bin", put(b""), "empty firmware image"),
    "firmware-bad-name": Bad("firmware/boot.bin", put(b"FW" * 100), "is not <name>.<version>.<platform>.bin"),
    "firmware-in-a-sub-folder": Bad(
        "firmware/old/boot.1.0.pi64.bin", put(b"FW" * 100), "not in sub-folders", b"FW" * 100
    ),
    "firmware-sidecar-invalid": Bad(
        "firmware/boot.1.0.pi64.bin",
        lambda p: (p.write_bytes(b"FW" * 100), Path(str(p) + ".toml").write_text("description = [")),
        "sidecar boot.1.0.pi64.bin.toml:",
        b"FW" * 100,
    ),
    "orphan-sidecar": Bad("modules/gone.1.0.pi64.tar.gz.toml", put(b'description = "x"\n'), "not a package"),
}


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The demo store built without any bad file: what every case must publish, byte for byte."""
    root = tmp_path_factory.mktemp("demo")
    build(copy_demo(root / "repo"), root / "site")
    return site_tree(root / "site")


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_file_is_skipped_with_its_reason_and_the_rest_publishes(
    case: str, tmp_path: Path, demo_site: dict[str, bytes]
) -> None:
    bad = CASES[case]
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    target = repo / bad.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    bad.make(target)

    done = run_depot("build", "--repo", str(repo), "--site", str(site))

    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith(f"warning: skipped {bad.relpath}: ")
    assert bad.reason in warnings[0]
    assert "1 skipped" in done.stdout
    # The good modules are all there, the bad file left no trace: not in an index, no blob.
    assert device_entries(site) == {
        "pi64": {"ax": ["2.6.4", "2.6.3"], "iot": ["1.0.5"], "firmware:bottom-sensor": ["1.4.3"]},
        "opi64": {"py_axbot": ["1.1.6-opi64"]},
    }
    published = site_tree(site)
    assert_same_tree(published, demo_site)
    if bad.blob:
        assert sha256(bad.blob) not in {sha256(b) for b in published.values()}
    assert not any(Path(p).name == target.name for p in published)


def test_several_bad_files_are_each_reported_and_the_next_build_remembers_them(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    chosen = ["not-gzip", "dot-dot", "fifo", "empty-firmware"]
    for i, case in enumerate(chosen):
        bad = CASES[case]
        target = repo / bad.relpath.replace("bad.1.0", f"bad{i}.1.0").replace("boot.1.0", f"boot{i}.1.0")
        target.parent.mkdir(parents=True, exist_ok=True)
        bad.make(target)
    first = run_depot("build", "--repo", str(repo), "--site", str(site))
    again = run_depot("build", "--repo", str(repo), "--site", str(site), "--report")
    for done in (first, again):
        assert done.returncode == 0
        skipped = sorted(
            line.split(":")[1].strip().removeprefix("skipped ") for line in done.stderr.splitlines()
        )
        assert skipped == [
            "firmware/boot3.1.0.pi64.bin",
            "modules/bad0.1.0.pi64.tar.gz",
            "modules/bad1.1.0.pi64.tar.gz",
            "modules/bad2.1.0.pi64.tar.gz",
        ]
    assert '"inputs_read": 0' in again.stdout  # a known-bad file is not re-read, yet still reported


def test_every_truncation_of_a_module_is_refused(tmp_path: Path) -> None:
    """Cut a real module at every byte: no prefix is ever accepted."""
    path = tmp_path / "bad.1.0.pi64.tar.gz"
    for cut in range(GOOD_LEN):
        path.write_bytes(GOOD[:cut])
        with pytest.raises(FormatError, match="truncated or malformed archive"):
            inspect_tarball(path)
    path.write_bytes(GOOD)
    summary = inspect_tarball(path)
    assert (summary.size, summary.sha256, summary.file_count) == (GOOD_LEN, sha256(GOOD), 3)


def test_links_that_stay_inside_the_module_are_allowed(tmp_path: Path) -> None:
    repo, site = tmp_path / "repo", tmp_path / "site"
    (repo / "modules").mkdir(parents=True)
    (repo / "modules" / "libs.1.0.pi64.tar.gz").write_bytes(
        tar_gz(
            member("lib/libx.so.1", b"\x7fELF..."),
            member("lib/libx.so", kind=tarfile.SYMTYPE, link="libx.so.1"),
            member("lib/sub/up", kind=tarfile.SYMTYPE, link="../libx.so.1"),
            member("lib/copy", kind=tarfile.LNKTYPE, link="lib/libx.so.1"),
        )
    )
    result = build(repo, site)
    assert result.skipped == {}
    assert device_entries(site) == {"pi64": {"libs": ["1.0"]}}


def test_a_fixed_file_is_published_on_the_next_build(tmp_path: Path) -> None:
    repo, site = copy_demo(tmp_path / "repo"), tmp_path / "site"
    bad = repo / M
    bad.write_bytes(GOOD[:100])
    assert M in build(repo, site).skipped
    bad.write_bytes(GOOD)
    result = build(repo, site)
    assert result.skipped == {}
    assert device_entries(site)["pi64"]["bad"] == ["1.0"]


def test_a_broken_sidecar_fixed_publishes_its_module(tmp_path: Path) -> None:
    repo, site = tmp_path / "repo", tmp_path / "site"
    path = add_module(repo, "ax", "1.0", "pi64")
    sidecar = Path(str(path) + ".toml")
    sidecar.write_text("description = \n")
    assert "sidecar" in build(repo, site).skipped["modules/ax.1.0.pi64.tar.gz"]
    sidecar.write_text('description = "fixed"\n')
    assert build(repo, site).skipped == {}
    assert device_entries(site) == {"pi64": {"ax": ["1.0"]}}


# -- depot check --------------------------------------------------------------------------------


def test_depot_check_accepts_good_files(tmp_path: Path) -> None:
    module = tmp_path / "ax.2.6.4.pi64.tar.gz"
    shutil.copy(DEMO / "modules" / module.name, module)
    firmware = tmp_path / "boot.1.0.pi64.bin"
    firmware.write_bytes(b"FW" * 10)
    done = run_depot("check", str(module), str(firmware))
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"{module}: ok", f"{firmware}: ok"]


@pytest.mark.parametrize(
    ("case", "filename"),
    [
        ("truncated-inside-crc", "bad.1.0.pi64.tar.gz"),
        ("dot-dot", "bad.1.0.pi64.tar.gz"),
        ("symlink-absolute", "bad.1.0.pi64.tar.gz"),
        ("manifest-version-mismatch", "bad.1.0.pi64.tar.gz"),
        ("empty-firmware", "boot.1.0.pi64.bin"),
        ("name-without-version", "bad.pi64.tar.gz"),
    ],
)
def test_depot_check_explains_a_bad_file(case: str, filename: str, tmp_path: Path) -> None:
    bad = CASES[case]
    path = tmp_path / filename
    bad.make(path)
    done = run_depot("check", str(path))
    assert done.returncode == 1
    assert done.stdout.startswith(f"{path}: INVALID: ")
    assert bad.reason in done.stdout
    assert check_file(path) is not None and bad.reason in check_file(path)


def test_depot_check_with_good_and_bad_files_fails_and_reports_each(tmp_path: Path) -> None:
    good = tmp_path / "ok.1.0.pi64.tar.gz"
    pack_module(good, {"a": b"a"})
    missing = tmp_path / "missing.1.0.pi64.tar.gz"
    other = tmp_path / "photo.jpg"
    other.write_bytes(b"\xff\xd8")
    done = run_depot("check", str(good), str(missing), str(other))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"{good}: ok", f"{missing}: INVALID: no such file"]
    assert lines[2].startswith(f"{other}: INVALID: not a package type Depot reads (")
    assert ".tar.gz" in lines[2] and ".bin" in lines[2]

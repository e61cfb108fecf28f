"""Malicious module archives: each is refused with a reason, nothing lands outside staging.

The builder already refuses such modules, so the end-to-end cases are served by a small store of
our own (plain http.server, with a hand-written device index whose checksums are right): the
download verifies, and only the agent's own unpacking checks stand between the archive and the
device.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile
from pathlib import Path

import pytest

from runtime.agent.unpack import UnsafeArchiveError, safe_unpack
from tests.support.agent import (
    agent_process,
    device_index,
    installed_tree,
    plain_http_server,
    write_device_index,
)


def member(name: str, data: bytes = b"x", **attrs) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data) if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def tarball(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return gzip.compress(buffer.getvalue(), mtime=0)


def bomb() -> bytes:
    """One member of 64 MiB of zeros: about 64 KiB compressed."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("data/zeros")
        info.size = 64 * 1024 * 1024

        class Zeros(io.RawIOBase):
            def readinto(self, b):  # type: ignore[override]
                b[:] = bytes(len(b))
                return len(b)

        tar.addfile(info, Zeros())
    return gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0)


MALICIOUS = {
    "absolute": ([member("/tmp/agent-test-absolute")], "absolute path"),
    "dotdot": ([member("ok.txt"), member("../../outside.txt")], "contains '..'"),
    "symlink_out": ([member("link", type=tarfile.SYMTYPE, linkname="../../..")], "outside the archive"),
    "symlink_abs": ([member("etc", type=tarfile.SYMTYPE, linkname="/etc")], "outside the archive"),
    "hardlink_out": (
        [member("pw", type=tarfile.LNKTYPE, linkname="../../etc/passwd")],
        "outside the archive",
    ),
    "device": ([member("dev/sda", type=tarfile.BLKTYPE, devmajor=8, devminor=0)], "device or FIFO"),
    "chardev": ([member("null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)], "device or FIFO"),
    "fifo": ([member("pipe", type=tarfile.FIFOTYPE)], "device or FIFO"),
    "unicode_dotdot": ([member("../évasion-日本.txt")], "contains '..'"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_safe_unpack_refuses(case: str, tmp_path: Path) -> None:
    members, reason = MALICIOUS[case]
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(tarball(members))
    dest = tmp_path / "a" / "b" / "staging"
    with pytest.raises(UnsafeArchiveError, match=re.escape(reason)):
        safe_unpack(archive, dest, max_bytes=1 << 20)
    outside = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if dest not in (p, *p.parents)}
    assert outside == {"evil.tar.gz", "a", "a/b"}
    assert not Path("/tmp/agent-test-absolute").exists()


def test_size_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(bomb())
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(UnsafeArchiveError, match="expands past the limit of 1048576 bytes"):
        safe_unpack(archive, tmp_path / "staging", max_bytes=1 << 20)
    assert sum(p.stat().st_size for p in (tmp_path / "staging").rglob("*") if p.is_file()) <= 1 << 20


def test_links_inside_the_archive_are_kept(tmp_path: Path) -> None:
    archive = tmp_path / "ok.tar.gz"
    archive.write_bytes(
        tarball(
            [
                member("lib/libx.so.1", b"ELF"),
                member("lib/libx.so", type=tarfile.SYMTYPE, linkname="libx.so.1"),
                member("bin/tool", b"#!/bin/sh\n", mode=0o4755),
                member("bin/tool2", type=tarfile.LNKTYPE, linkname="bin/tool"),
            ]
        )
    )
    dest = tmp_path / "staging"
    result = safe_unpack(archive, dest, max_bytes=1 << 20)
    assert result.files == 4
    assert os.readlink(dest / "lib/libx.so") == "libx.so.1"
    assert (dest / "bin/tool2").read_bytes() == b"#!/bin/sh\n"
    assert (dest / "bin/tool").stat().st_mode & 0o7777 == 0o755  # set-uid dropped


def test_a_link_cannot_be_followed_out_by_a_later_member(tmp_path: Path) -> None:
    archive = tmp_path / "chain.tar.gz"
    archive.write_bytes(
        tarball(
            [
                member("d", type=tarfile.DIRTYPE),
                member("up", type=tarfile.SYMTYPE, linkname="d/.."),  # resolves to the root: allowed
                member("up/x", b"fine"),
                member("dup", b"1"),
                member("dup", b"2"),
            ]
        )
    )
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        safe_unpack(archive, tmp_path / "staging", max_bytes=1 << 20)
    assert (tmp_path / "staging/x").read_bytes() == b"fine"
    assert sorted(os.listdir(tmp_path)) == ["chain.tar.gz", "staging"]


def served_store(folder: Path, modules: dict[str, bytes]) -> None:
    """A store of our own: device/index.json → its shards → files/<name>."""
    (folder / "files").mkdir(parents=True)
    for name, data in modules.items():
        (folder / "files" / f"{name}.1.0.pi64.tar.gz").write_bytes(data)
    write_device_index(folder, *device_index(modules, unpacked_size=100))


def test_malicious_modules_fail_their_install_task(tmp_path: Path) -> None:
    modules = {name.replace("_", "-"): tarball(members) for name, (members, _reason) in MALICIOUS.items()}
    modules["bomb"] = bomb()
    modules["good"] = tarball([member("bin/good", b"#!/bin/sh\n", mode=0o755)])
    served_store(tmp_path / "store", modules)
    root = tmp_path / "device" / "root"
    reasons = {name.replace("_", "-"): reason for name, (_m, reason) in MALICIOUS.items()}
    reasons["bomb"] = "expands past the limit of 100 bytes"  # the index's unpacked_size is the limit
    with plain_http_server(tmp_path / "store") as url, agent_process(tmp_path, url, root) as agent:
        names = sorted(modules)
        answer = agent.post("/services/download_packages", {"packages": names})
        assert answer.status_code == 201, answer.text
        for name, task in answer.json().items():
            assert agent.wait_task("download", task["task_id"])["status"] == "succeeded", name
        answer = agent.post("/services/install_packages", {"packages": names})
        assert answer.status_code == 201
        for name, task in answer.json().items():
            final = agent.wait_task("install", task["task_id"])
            if name == "good":
                assert final["status"] == "succeeded"
                continue
            assert final["status"] == "failed", name
            package = agent.package(name)
            assert package["status"] == "install_failed" and package["current_version"] == ""
            assert reasons[name] in package["install_failed_reason"], (name, package)
            assert reasons[name] in agent.log_text("install", task["task_id"])
            assert not (root / "modules" / name).exists()
        assert set(installed_tree(root, "good")) == {"bin/good"}
        assert os.listdir(root / "staging") == []
        assert sorted(os.listdir(root / "modules")) == ["good"]
        outside = {p.name for p in tmp_path.rglob("*") if "root" not in p.parts}
        assert not {"outside.txt", "évasion-日本.txt", "agent-test-absolute"} & outside
        assert not Path("/tmp/agent-test-absolute").exists()

"""Incremental equals clean: random histories of a repo, built incrementally after every step,
always give exactly the site a clean build of the same repo gives, whether the build walks
repo/ or is told the paths the operation touched (the change feed).

Hypothesis draws a list of operations (add, replace, remove and rename modules and firmware,
edit or break sidecars, drop in bad files, touch files, change depot.toml). After each one the
same site/ is rebuilt incrementally and compared, file by file and folder by folder, with a
clean build into a fresh folder. A failure shrinks to the shortest history that shows it.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from builder.build import build
from builder.device.module import pack_module
from tests.support.repos import (
    add_firmware,
    add_module,
    assert_same_tree,
    bump_mtime,
    site_tree,
    write_settings,
)

NAMES = ["ax", "iot", "nav"]
VERSIONS = ["1.0", "1.1", "2.0-rc1", "2.0", "master"]
PLATFORMS = ["pi64", "opi64", "riscv"]

seeds = st.integers(0, 2**16)
picks = st.integers(0, 50)

OPERATIONS = st.one_of(
    st.tuples(
        st.just("add_module"),
        st.sampled_from(NAMES),
        st.sampled_from(VERSIONS),
        st.sampled_from(PLATFORMS),
        st.booleans(),
        seeds,
    ),
    st.tuples(st.just("add_firmware"), st.sampled_from(VERSIONS[:2]), st.sampled_from(PLATFORMS), seeds),
    st.tuples(st.just("replace"), picks, seeds),
    st.tuples(st.just("remove"), picks),
    st.tuples(
        st.just("rename"),
        picks,
        st.sampled_from(NAMES),
        st.sampled_from(VERSIONS),
        st.sampled_from(PLATFORMS),
        st.booleans(),
    ),
    st.tuples(
        st.just("sidecar"),
        picks,
        st.sampled_from(["describe", "redescribe", "optional", "invalid", "delete"]),
    ),
    st.tuples(
        st.just("bad"),
        st.sampled_from(
            ["truncated", "not-gzip", "empty-firmware", "sub-folder", "bad-name", "orphan-sidecar"]
        ),
        seeds,
    ),
    st.tuples(st.just("touch"), picks),
    st.tuples(
        st.just("settings"), st.lists(st.sampled_from(PLATFORMS), unique=True, max_size=3), st.booleans()
    ),
)


def packages(repo: Path) -> list[Path]:
    """Package files in repo (good or bad), in a stable order, for operations that pick one."""
    return sorted(
        p
        for folder in ("modules", "firmware")
        for p in (repo / folder).rglob("*")
        if p.is_file() and not p.name.endswith(".toml")
    )


def apply(repo: Path, op: tuple) -> list[str]:
    """Do ``op`` to ``repo``; returns the paths it touched (relative to repo/), what a change
    feed (``build(changed=...)``) would name."""
    kind = op[0]
    files = packages(repo)
    target = files[op[1] % len(files)] if files and isinstance(op[1], int) and kind != "add_module" else None
    touched = [target] if target is not None else []
    if kind == "add_module":
        _, name, version, platform, manifest, seed = op
        path = add_module(
            repo, name, version, platform, random.Random(seed).randbytes(300), manifest=manifest
        )
        bump_mtime(path)
        touched = [path]
    elif kind == "add_firmware":
        _, version, platform, seed = op
        path = add_firmware(repo, "boot", version, platform, random.Random(seed).randbytes(500))
        bump_mtime(path)
        touched = [path]
    elif target is None:
        return []
    elif kind == "replace":
        rng = random.Random(op[2])
        if target.name.endswith(".tar.gz") and rng.random() < 0.8:  # a new build of the module
            pack_module(target, {"bin/tool": rng.randbytes(300), "README": b"rebuilt\n"})
        else:  # new bytes of the very same size: only the mtime tells the scan
            target.write_bytes(rng.randbytes(max(target.stat().st_size, 1)))
        bump_mtime(target)
    elif kind == "remove":
        target.unlink()
    elif kind == "rename":
        _, _, name, version, platform, with_sidecar = op
        suffix = ".tar.gz" if target.name.endswith(".tar.gz") else ".bin"
        new = target.with_name(f"{name}.{version}.{platform}{suffix}")
        if new.exists():
            return []
        target.rename(new)
        touched.append(new)
        sidecar = Path(str(target) + ".toml")
        if with_sidecar and sidecar.exists():
            sidecar.rename(Path(str(new) + ".toml"))
            touched += [sidecar, Path(str(new) + ".toml")]
    elif kind == "sidecar":
        sidecar = Path(str(target) + ".toml")
        text = {
            "describe": 'description = "first words"\n',
            "redescribe": 'description = "other words"\n',
            "optional": "optional = true\n",
            "invalid": 'description = "unterminated\n',
        }.get(op[2])
        if text is None:
            sidecar.unlink(missing_ok=True)
        else:
            sidecar.write_text(text)
            bump_mtime(sidecar)
        touched = [sidecar]
    elif kind == "touch":
        bump_mtime(target)
    return [p.relative_to(repo).as_posix() for p in touched]


def apply_bad(repo: Path, op: tuple) -> list[str]:
    _, kind, seed = op
    rng = random.Random(seed)
    n = rng.randrange(3)
    if kind == "truncated":
        path = add_module(repo, f"cut{n}", "1.0", "pi64", rng.randbytes(200))
        path.write_bytes(path.read_bytes()[: rng.randrange(1, path.stat().st_size)])
    elif kind == "not-gzip":
        path = repo / "modules" / f"junk{n}.1.0.pi64.tar.gz"
        path.write_bytes(b"not a gzip file " * 4)
    elif kind == "empty-firmware":
        path = repo / "firmware" / f"blank{n}.1.0.pi64.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    elif kind == "sub-folder":
        (repo / "modules" / "sub").mkdir(parents=True, exist_ok=True)
        path = add_module(repo, "deep", "1.0", "pi64").rename(
            repo / "modules" / "sub" / "deep.1.0.pi64.tar.gz"
        )
    elif kind == "bad-name":
        path = repo / "modules" / f"noversion{n}.tar.gz"
        path.write_bytes(b"x")
    else:
        path = repo / "modules" / f"ghost{n}.1.0.pi64.tar.gz.toml"
        path.write_text('description = "nobody"\n')
    bump_mtime(path)
    return [path.relative_to(repo).as_posix(), "modules/sub"]  # a folder: all it holds


def initial_repo(repo: Path) -> None:
    write_settings(repo, ["pi64"], name="Property Store")
    add_module(repo, "ax", "1.0", "pi64", b"ax one\n")
    add_module(repo, "ax", "1.1", "pi64", b"ax two\n", manifest=False)
    add_module(repo, "iot", "1.0", "opi64", b"iot\n")
    add_firmware(repo, "boot", "1.0", "pi64")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(OPERATIONS, min_size=1, max_size=8))
def test_incremental_builds_equal_clean_builds(history: list[tuple], scratch: Path) -> None:
    root = scratch / "case"
    shutil.rmtree(root, ignore_errors=True)
    repo, site, fed, clean = root / "repo", root / "site", root / "fed", root / "clean"
    initial_repo(repo)
    build(repo, site)
    build(repo, fed)
    for step, op in enumerate(history, start=1):
        note(f"step {step}: {op}")
        if op[0] == "bad":
            touched = apply_bad(repo, op)
        elif op[0] == "settings":
            write_settings(repo, op[1], name="Property Store" if op[2] else "Renamed Store")
            bump_mtime(repo / "depot.toml")
            touched = ["depot.toml"]
        else:
            touched = apply(repo, op)
        incremental = build(repo, site)  # walks repo/
        told = build(repo, fed, changed=touched)  # stats only what the operation touched
        shutil.rmtree(clean, ignore_errors=True)
        reference = build(repo, clean)
        assert incremental.skipped == reference.skipped == told.skipped
        assert_same_tree(site_tree(site), site_tree(clean))
        assert_same_tree(site_tree(fed), site_tree(clean))
    shutil.rmtree(root, ignore_errors=True)

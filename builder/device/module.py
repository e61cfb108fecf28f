"""Device modules: ``repo/modules/<name>.<version>.<platform>.tar.gz``.

A module is a gzip tarball of the files to install. It may carry a ``module.toml`` at its root::

    name = "ax"            # must equal the name in the file name
    version = "2.6.4"      # must equal the version in the file name
    platform = "pi64"      # must equal the platform in the file name
    description = "Motion control"
    optional = false

Without a manifest the file name alone says what the module is. Names and platforms are
``[A-Za-z0-9_-]+`` (no dots, so the file name splits without ambiguity); a version is anything
between them that contains no ``/``.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import tomllib
from pathlib import Path
from typing import Any

from builder.errors import FormatError
from builder.formats import Source
from builder.model import Blob, Module, Record, Rollout, StoreSettings
from builder.names import MANIFEST, parse_module_filename
from builder.sidecars import SIDECAR_SUFFIX
from builder.tarsafe import inspect_tarball


class ModuleReader:
    name = "module"

    def matches(self, relpath: str) -> bool:
        return relpath.startswith("modules/") and not relpath.endswith(SIDECAR_SUFFIX)

    def sidecars(self, relpath: str) -> list[str]:
        return [relpath + SIDECAR_SUFFIX]

    def settings_key(self, settings: StoreSettings) -> str:
        return ""

    def read(self, source: Source) -> list[Record]:
        if "/" in source.relpath[len("modules/") :]:
            raise FormatError("modules live directly in modules/, not in sub-folders")
        name, version, platform = parse_module_filename(source.filename)
        summary = inspect_tarball(source.path, wanted=frozenset({MANIFEST}))
        manifest: dict = {}
        if MANIFEST in summary.files:
            try:
                manifest = tomllib.loads(summary.files[MANIFEST].decode("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise FormatError(f"{MANIFEST}: {exc}") from exc
            for key, expected in (("name", name), ("version", version), ("platform", platform)):
                if key in manifest and str(manifest[key]) != expected:
                    raise FormatError(
                        f"{MANIFEST} says {key} {manifest[key]!r} but the file name says {expected!r}"
                    )
        sidecar = source.sidecar("module", defaults=False)
        extra = {**manifest, **sidecar}
        return [
            Module(
                name=name,
                version=version,
                platform=platform,
                blob=Blob(source.relpath, summary.size, summary.sha256),
                description=str(extra.get("description", "")),
                optional=_optional(extra),
                unpacked_size=summary.unpacked_size,
                file_count=summary.file_count,
                rollout=Rollout.from_sidecar(sidecar),
            )
        ]


def _optional(extra: dict[str, Any]) -> bool:
    value = extra.get("optional", False)
    if not isinstance(value, bool):
        raise FormatError(f"optional must be true or false, not {value!r}")
    return value


def pack_module(dest: Path, files: dict[str, bytes], manifest: dict[str, Any] | None = None) -> Path:
    """Write a module tarball reproducibly (sorted entries, zero times and owners).

    Used by the demo store, the tests and the benchmarks; a maintainer may use it too."""
    entries = dict(files)
    if manifest is not None:
        lines = [f"{k} = {_toml_value(v)}" for k, v in manifest.items()]
        entries[MANIFEST] = ("\n".join(lines) + "\n").encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            info = tarfile.TarInfo(name)
            info.size = len(entries[name])
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(entries[name]))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    return dest


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

"""Write Qt Application Manager packages reproducibly (the demo store, tests, benchmarks).

:func:`package_entries` lays out a valid package's entries in the required order with a correct
footer digest; :func:`tar_bytes` turns any list of entries (valid or deliberately broken) into a
gzip-compressed USTAR archive with fixed times and owners, so the same input gives the same bytes.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from typing import Any

import yaml

from builder.qt.digest import RESERVED_PREFIX, PackageDigest

# A directory entry is written as (name ending in "/", None).
Entry = tuple[str, bytes | None]

# A 1x1 transparent PNG: the smallest valid icon.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def yaml_docs(*docs: dict[str, Any]) -> bytes:
    return yaml.safe_dump_all(docs, explicit_start=True, sort_keys=False, allow_unicode=True).encode()


def digest_of(entries: list[Entry]) -> str:
    digest = PackageDigest()
    for name, data in entries:
        if name.startswith(RESERVED_PREFIX):
            continue
        if data is None:
            digest.add_directory(name)
        else:
            digest.add_file(name, data)
    return digest.hexdigest()


def package_entries(
    app_id: str,
    *,
    name: str | dict[str, str] = "",
    version: str = "1.0",
    icon: bytes = TINY_PNG,
    files: list[Entry] | None = None,
    header_version: int = 2,
    info_type: str | None = None,
    tags: list[str] | None = None,
    conflicts: list[str] | None = None,
    disk_space_used: int = 1000,
    footer_fields: dict[str, Any] | None = None,
    digest: str | None = None,
) -> list[Entry]:
    """The entries of a valid package (unless an argument says otherwise)."""
    files = files if files is not None else [("main.qml", b"import QtQuick 2.0\nItem {}\n")]
    info_type = info_type or ("am-package" if header_version == 2 else "am-application")
    header: dict[str, Any] = {
        "packageId" if header_version == 2 else "applicationId": app_id,
        "diskSpaceUsed": disk_space_used,
    }
    extra: dict[str, Any] = {}
    if tags:
        extra["tags"] = tags
    if conflicts:
        extra["conflicts"] = conflicts
    if extra:
        header["extra"] = extra
    names = name if isinstance(name, dict) else {"en": name or app_id}
    info: dict[str, Any] = {"id": app_id, "icon": "icon.png", "name": names, "version": version}
    code = next((n for n, d in files if d is not None and n.endswith(".qml")), "main.qml")
    if info_type == "am-package":
        info["applications"] = [{"id": app_id, "code": code, "runtime": "qml"}]
    else:
        info.update(code=code, runtime="qml")
    entries: list[Entry] = [
        (
            "--PACKAGE-HEADER--",
            yaml_docs({"formatType": "am-package-header", "formatVersion": header_version}, header),
        ),
        ("info.yaml", yaml_docs({"formatType": info_type, "formatVersion": 1}, info)),
        ("icon.png", icon),
        *files,
    ]
    footer = {"digest": digest or digest_of(entries), **(footer_fields or {})}
    entries.append(
        (
            "--PACKAGE-FOOTER--",
            yaml_docs({"formatType": "am-package-footer", "formatVersion": header_version}, footer),
        )
    )
    return entries


def tar_bytes(entries: list[Entry], compress: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT, encoding="utf-8") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o755 if data[:4] == b"\x7fELF" else 0o644
                tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    if not compress:
        return raw
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw)
    return out.getvalue()


def pack_package(app_id: str, **kwargs: Any) -> bytes:
    """A valid package's bytes; see :func:`package_entries` for the options."""
    return tar_bytes(package_entries(app_id, **kwargs))

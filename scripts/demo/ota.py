#!/usr/bin/env python3
"""Regenerate the demo store's OTA builds in repo/builds/ reproducibly (byte-identical on every
run), with their ``.sha256`` sidecars. The files are committed; run this only to change them."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

from builder.shipper.ota import checksum_line, pack_ota_zip  # noqa: E402

REPO = PROJECT / "repo"

# (codename, file name, Android version, build timestamp)
BUILDS = [
    ("bullhead", "Bliss-v14-bullhead-OFFICIAL-gapps-20200601.zip", "10", 1590969600),
    ("bullhead", "Bliss-v14-bullhead-OFFICIAL-gapps-20200608.zip", "10", 1591574400),
    ("angler", "Bliss-v14-angler-OFFICIAL-vanilla-20200608.zip", "10", 1591574400),
]


def main(repo: Path = REPO) -> None:
    for codename, filename, android, stamp in BUILDS:
        seed = hashlib.sha256(filename.encode()).digest()
        payload = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(256))
        dest = pack_ota_zip(
            repo / "builds" / codename / filename,
            {
                "ota-type": "AB",
                "post-build": f"google/{codename}/{codename}:{android}/QQ3A/{stamp}:user/release-keys",
                "post-timestamp": str(stamp),
                "pre-device": codename,
            },
            payload,
        )
        digest = hashlib.sha256(dest.read_bytes()).hexdigest()
        dest.with_name(dest.name + ".sha256").write_bytes(checksum_line(digest, dest.name))
        print(f"{dest}  {dest.stat().st_size} bytes  {digest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO)

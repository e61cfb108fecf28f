"""The package digest Qt Application Manager and the deployment server agree on.

SHA-256 over every archive entry whose name does not start with ``--PACKAGE-``, in archive order:
a file adds its contents then ``F/<size>/<path>``, a directory adds ``D/0/<path>`` (no trailing
slash). Signatures sign the raw 32 bytes; the footer stores the hex form.
"""

from __future__ import annotations

import hashlib
import hmac

RESERVED_PREFIX = "--PACKAGE-"


class PackageDigest:
    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def add_directory(self, path: str) -> None:
        self._sha.update(f"D/0/{path.rstrip('/')}".encode())

    def add_file_contents(self, chunk: bytes) -> None:
        """Feed a file's bytes (in as many chunks as convenient), then call :meth:`end_file`."""
        self._sha.update(chunk)

    def end_file(self, path: str, size: int) -> None:
        self._sha.update(f"F/{size}/{path}".encode())

    def add_file(self, path: str, contents: bytes) -> None:
        self.add_file_contents(contents)
        self.end_file(path, len(contents))

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def digest(self) -> bytes:
        return self._sha.digest()


def device_bound(raw_digest: bytes, device_id: str) -> bytes:
    """What a device-bound store signature signs: HMAC-SHA256(key=device id, message=digest).
    Without a device id the raw digest itself is signed, as Qt Application Manager expects."""
    if not device_id:
        return raw_digest
    return hmac.new(device_id.encode(), raw_digest, hashlib.sha256).digest()

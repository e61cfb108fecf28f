"""Store signing of downloads, as Qt Application Manager verifies it (off unless configured).

With ``[qt] store_signing_pkcs12`` set (a PKCS#12 file with the store's key and certificate, a
path absolute or relative to the data folder; its password in ``DEPOT_QT_STORE_SIGNING_PASSWORD``
or ``[qt] store_signing_password``), every download gets one more footer entry,
``--PACKAGE-FOOTER--store-signature``, holding ``storeSignature``: a detached PKCS#7 signature in
DER, base64, over the base64 text of HMAC-SHA256(key = device id, message = the package digest),
or of the digest itself when the purchase bound no device id (Qt AM's ``Signature`` signs
``toBase64()`` of what it is given). The signed copy is cached in the data folder.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from builder.atomic import atomic_open
from builder.qt.digest import device_bound
from builder.qt.pack import yaml_docs
from builder.qt.package import validate_package

CACHE_FOLDER = "qt-signed"
CACHE_MAX_AGE = 24 * 3600
SIGNATURE_ENTRY = "--PACKAGE-FOOTER--store-signature"


class StoreSigner:
    def __init__(self, p12: bytes, password: str) -> None:
        key, cert, extra = pkcs12.load_key_and_certificates(p12, password.encode() or None)
        if key is None or cert is None:
            raise ValueError("the PKCS#12 file holds no key and certificate")
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("the PKCS#12 key must be RSA or EC (what CMS signatures support)")
        self.key, self.cert, self.chain = key, cert, list(extra or [])
        self.fingerprint = cert.fingerprint(hashes.SHA256()).hex()

    def sign(self, message: bytes) -> bytes:
        builder = (
            pkcs7.PKCS7SignatureBuilder().set_data(message).add_signer(self.cert, self.key, hashes.SHA256())
        )
        for ca in self.chain:
            builder = builder.add_certificate(ca)
        options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
        return builder.sign(serialization.Encoding.DER, options)


def store_signature(signer: StoreSigner, raw_digest: bytes, device_id: str) -> str:
    """The ``storeSignature`` value: base64 of a detached PKCS#7 signature whose content is the
    base64 *text* of the (device-bound) digest. Qt Application Manager's ``Signature`` class
    signs and verifies ``hash.toBase64()``, not the raw bytes, on every branch from 5.12 to 6.8;
    a signature over the raw bytes is answered "invalid store signature" on the device."""
    content = base64.b64encode(device_bound(raw_digest, device_id))
    return base64.b64encode(signer.sign(content)).decode()


def add_signature(source: Path, out: Any, pkgformat: int, signature: str) -> None:
    """Copy every entry of ``source`` into a gzip tar on ``out``, then the signature footer."""
    footer = yaml_docs(
        {"formatVersion": pkgformat, "formatType": "am-package-footer"}, {"storeSignature": signature}
    )
    with (
        tarfile.open(source, mode="r:*") as src,
        tarfile.open(fileobj=out, mode="w:gz", format=tarfile.USTAR_FORMAT) as dst,
    ):
        for entry in src:
            dst.addfile(entry, src.extractfile(entry) if entry.isfile() else None)
        info = tarfile.TarInfo(SIGNATURE_ENTRY)
        info.size, info.mode, info.uid, info.gid, info.uname, info.gname = len(footer), 0o400, 0, 0, "", ""
        info.mtime = int(time.time())
        dst.addfile(info, io.BytesIO(footer))


class SignerCache:
    """The store signer of the configured PKCS#12 file, loaded again only when the file, its
    mtime or the password changes (parsing a PKCS#12 file costs milliseconds per download)."""

    def __init__(self) -> None:
        self._cached: tuple[tuple[str, int, str], StoreSigner] | None = None
        self._lock = threading.Lock()

    def get(self, path: Path, password: str) -> StoreSigner:
        stamp = (str(path), path.stat().st_mtime_ns, password)
        with self._lock:
            if self._cached is None or self._cached[0] != stamp:
                self._cached = (stamp, StoreSigner(path.read_bytes(), password))
            return self._cached[1]


def signed_package(
    signer: StoreSigner, folder: Path, package: Path, variant: dict[str, Any], device_id: str
) -> Path:
    """The path of a store-signed copy of ``package``, cached in ``folder`` by content, device
    and signer."""
    name = hashlib.sha256(f"{variant['sha256']}\0{device_id}\0{signer.fingerprint}".encode()).hexdigest()
    target = folder / f"{name}.appkg"
    if target.exists():
        return target
    checked = validate_package(package)  # the digest of the bytes on disk now, not of the last build
    signature = store_signature(signer, checked.raw_digest, device_id)
    with atomic_open(target) as out:
        add_signature(package, out, checked.pkgformat, signature)
    _prune(folder, keep=target)
    return target


def _prune(folder: Path, keep: Path) -> None:
    cutoff = time.time() - CACHE_MAX_AGE
    for old in folder.glob("*.appkg"):
        with contextlib.suppress(FileNotFoundError):
            if old != keep and old.stat().st_mtime < cutoff:
                old.unlink()

"""Store signing: downloads carry a storeSignature that verifies against the store certificate
as Qt Application Manager checks it.

The message is computed here from Qt AM's documented rule, not with Depot's helper:
``installationtask.cpp`` verifies against the raw package digest, or HMAC-SHA256(key = hardware
id, message = digest) for a device-bound signature, and ``Signature(hash)`` in its crypto library
signs and verifies ``hash.toBase64()`` (``signature.cpp``: ``d->hash = hash.toBase64();``) as
detached PKCS#7 in S/MIME text mode (``PKCS7_sign(..., PKCS7_DETACHED)``, ``PKCS7_verify`` with
``PKCS7_NOCHAIN``). ``openssl cms -verify`` without ``-binary`` checks it the same way."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from builder.qt.package import validate_package
from tests.support.qt import DEVICE, USER, USER_PASSWORD, qt_store
from tests.support.serving import ServedStore

PASSWORD = "store-pass"


def make_store_identity() -> tuple[bytes, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Depot test store")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    p12 = pkcs12.serialize_key_and_certificates(
        b"store", key, cert, None, serialization.BestAvailableEncryption(PASSWORD.encode())
    )
    return p12, cert


def der_items(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, content, whole encoding) of each DER element in ``data``."""
    items, i = [], 0
    while i < len(data):
        tag, length, j = data[i], data[i + 1], i + 2
        if length & 0x80:
            count = length & 0x7F
            length, j = int.from_bytes(data[j : j + count], "big"), j + count
        items.append((tag, data[j : j + length], data[i : j + length]))
        i = j + length
    return items


def verify_pkcs7(signature: bytes, message: bytes, cert: x509.Certificate) -> None:
    """Check a detached PKCS#7 SignedData (RSA, SHA-256, signed attributes) with cryptography."""
    ((_, content_info, _),) = der_items(signature)
    _oid, (_, explicit, _) = der_items(content_info)
    ((_, signed_data, _),) = der_items(explicit)
    signer_infos = [c for t, c, _ in der_items(signed_data) if t == 0x31][-1]
    ((_, signer_info, _),) = der_items(signer_infos)
    parts = der_items(signer_info)
    attrs = next(c for t, c, _ in parts if t == 0xA0)
    encrypted_digest = parts[-1][1]
    attrs_der = next(w for t, _, w in parts if t == 0xA0)
    signed_bytes = b"\x31" + attrs_der[1:]  # signed over as a SET, not the [0] IMPLICIT tag
    cert.public_key().verify(encrypted_digest, signed_bytes, padding.PKCS1v15(), hashes.SHA256())
    assert hashlib.sha256(message).digest() in attrs  # the messageDigest attribute


@pytest.fixture(scope="module")
def signed_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServedStore, x509.Certificate]:
    tmp = tmp_path_factory.mktemp("qt-signing")
    p12, cert = make_store_identity()
    settings = f'store_signing_pkcs12 = "store.p12"\nstore_signing_password = "{PASSWORD}"'
    with qt_store(tmp, qt_settings=settings) as served:
        (served.data / "store.p12").write_bytes(p12)
        yield served, cert


def footer_entries(data: bytes) -> tuple[list[str], dict]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        names = [m.name for m in tar]
        member = tar.getmember("--PACKAGE-FOOTER--store-signature")
        assert member.mode == 0o400 and member.uid == 0 and member.uname == ""
        docs = list(yaml.safe_load_all(tar.extractfile(member).read()))
    return names, docs


@pytest.mark.parametrize("device", [DEVICE, ""])
def test_downloads_carry_a_verifiable_store_signature(
    signed_store: tuple[ServedStore, x509.Certificate], device: str, tmp_path: Path
) -> None:
    store, cert = signed_store
    if not device:  # a store that does not bind purchases to a device id
        toml = store.repo / "depot.toml"
        toml.write_text(
            toml.read_text().replace(
                "purchase_requires_device_id = true", "purchase_requires_device_id = false"
            )
        )
    with httpx.Client(base_url=store.url) as c:
        c.get("/login", params={"username": USER, "password": USER_PASSWORD})
        url = c.get("/app/purchase", params={"id": "com.example.plain", "device_id": DEVICE}).json()["url"]
    signed = httpx.get(url)
    assert signed.status_code == 200
    original = store.repo / "apps" / "com.example.plain.appkg"
    package = validate_package(original)
    names, docs = footer_entries(signed.content)
    assert names[-1] == "--PACKAGE-FOOTER--store-signature"
    with tarfile.open(original) as tar:
        assert names[:-1] == [m.name for m in tar]
    assert docs[0] == {"formatVersion": 2, "formatType": "am-package-footer"}
    signature = base64.b64decode(docs[1]["storeSignature"])
    # what Qt Application Manager checks: base64 text of HMAC-SHA256(device id, digest), or of
    # the digest itself
    digest = package.raw_digest  # checked against the reference's test vector in test_qt_package
    bound = hmac.new(device.encode(), digest, hashlib.sha256).digest() if device else digest
    message = base64.b64encode(bound)
    verify_pkcs7(signature, message, cert)
    other_device = base64.b64encode(hmac.new(b"66-66-66-66-66-66", digest, hashlib.sha256).digest())
    for wrong in (other_device, bound):  # another device, and the raw bytes Qt AM never signs
        with pytest.raises(AssertionError):
            verify_pkcs7(signature, wrong, cert)
    # and OpenSSL, which Qt AM's verifier is built on, in the same text mode
    (tmp_path / "sig.der").write_bytes(signature)
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for content, verifies in ((message, True), (other_device, False), (bound, False)):
        (tmp_path / "msg.txt").write_bytes(content)
        done = subprocess.run(
            ["openssl", "cms", "-verify", "-inform", "DER", "-in", "sig.der", "-content", "msg.txt",
             "-CAfile", "cert.pem", "-purpose", "any", "-out", "/dev/null"],
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert (done.returncode == 0) == verifies, (content, done.stderr)
    if not device:
        toml.write_text(
            toml.read_text().replace(
                "purchase_requires_device_id = false", "purchase_requires_device_id = true"
            )
        )


def test_broken_store_key_is_a_server_error_not_a_crash(
    signed_store: tuple[ServedStore, x509.Certificate],
) -> None:
    store, _ = signed_store
    p12 = store.data / "store.p12"
    good = p12.read_bytes()
    p12.write_bytes(b"not a pkcs12 file")
    try:
        with httpx.Client(base_url=store.url) as c:
            c.get("/login", params={"username": USER, "password": USER_PASSWORD})
            url = c.get("/app/purchase", params={"id": "com.example.plain", "device_id": "aa-bb"}).json()[
                "url"
            ]
        response = httpx.get(url)
        assert response.status_code == 503
        assert response.json() == {"status": "failed", "error": "store signing is not available"}
    finally:
        p12.write_bytes(good)

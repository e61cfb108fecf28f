"""The debug-certificate finding compares the subject's name attributes as a multiset, so the
order a certificate encodes them in does not hide it (CN first instead of C, O, CN)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from builder.portal.signature import SignerCert
from runtime.portal.validation import Policy, compute_findings
from tests.support.apk_factory import SigningKey, build_apk, key_with_name
from tests.support.portal_client import add_user, make_token, portal_store, upload, wait_validation
from tests.support.serving import ServedStore

CN = x509.NameAttribute(NameOID.COMMON_NAME, "Android Debug")
O = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Android")  # noqa: E741
C = x509.NameAttribute(NameOID.COUNTRY_NAME, "US")


def key_with_subject(*attributes: x509.NameAttribute) -> SigningKey:
    return key_with_name(x509.Name(list(attributes)))


def facts_of(key: SigningKey) -> dict[str, object]:
    signer = SignerCert.from_der(key.cert.public_bytes(serialization.Encoding.DER))
    return {
        "signer_subject": signer.subject,
        "signer_subject_attributes": [list(a) for a in signer.subject_attributes],
    }


def findings(facts: dict[str, object]) -> list[str]:
    row = {"facts": json.dumps(facts), "pinned_signer": None, "signer_sha256": "x", "package": "p", "size": 1}
    return [code for code, _, _ in compute_findings(row, Policy())]


@pytest.mark.parametrize(
    "order",
    [(C, O, CN), (CN, O, C), (O, CN, C)],
    ids=["sdk-order", "cn-first", "o-first"],
)
def test_every_order_of_the_debug_subject_is_flagged(order: tuple[x509.NameAttribute, ...]) -> None:
    facts = facts_of(key_with_subject(*order))
    assert "debug_certificate" in findings(facts)
    # versions recorded before the attributes were: the subject string is parsed back
    assert "debug_certificate" in findings({"signer_subject": facts["signer_subject"]})


@pytest.mark.parametrize(
    "attributes",
    [
        (C, O, x509.NameAttribute(NameOID.COMMON_NAME, "Android Release")),
        (C, O, CN, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Cars")),
        (O, CN),
        (C, O, CN, CN),
    ],
    ids=["other-cn", "extra-ou", "no-country", "cn-twice"],
)
def test_other_subjects_are_not_the_debug_certificate(attributes: tuple[x509.NameAttribute, ...]) -> None:
    assert "debug_certificate" not in findings(facts_of(key_with_subject(*attributes)))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedStore]:
    with portal_store(tmp_path_factory.mktemp("portal-debug"), "") as served:
        yield served


def test_an_upload_signed_with_a_cn_first_debug_certificate_fails_validation(store: ServedStore) -> None:
    token = make_token(store.data, add_user(store.data, "dora"))
    apk = build_apk(package="com.example.cnfirst", version_code=1, key=key_with_subject(CN, O, C))
    with store.client() as client:
        response = upload(client, token, apk)
        assert response.status_code == 201, response.text
        run = wait_validation(client, token, response.json()["version"]["id"])
    assert run["status"] == "failed"
    [finding] = [f for f in run["findings"] if f["code"] == "debug_certificate"]
    assert finding["severity"] == "blocking"

"""pyhanko-certvalidator as an independent RFC 5755 validator of our ACs and AA CRL."""

import asyncio
from datetime import timedelta

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from ca_pki import ATTRS, GATEWAY, NOW, Pki
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca.attribute_cert import AttributeCertificateIssuer, parse_attribute_certificate
from ca.revocation import RevokedEntry, build_crl

pytest.importorskip("pyhanko_certvalidator", reason="pyhanko-certvalidator not installed")
from pyhanko_certvalidator.context import ACTargetDescription, ValidationContext
from pyhanko_certvalidator.errors import (
    InvalidAttrCertificateError,
    PathValidationError,
)
from pyhanko_certvalidator.validate import async_validate_ac

pytestmark = pytest.mark.slow
CRL_URL = "http://ca.example/aa.crl"


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _validate(pki: Pki, ac_der: bytes, crls: list[bytes]) -> object:
    context = ValidationContext(
        trust_roots=[_asn1(pki.root)],
        other_certs=[_asn1(pki.aa)],
        crls=crls,
        moment=NOW,
        revocation_mode="soft-fail",
        acceptable_ac_targets=ACTargetDescription(
            validator_names=[
                asn1_x509.GeneralName(
                    name="uniform_resource_identifier", value=f"certgate:gateway:{GATEWAY}"
                )
            ]
        ),
    )
    attr_cert = cms.AttributeCertificateV2.load(ac_der)
    return asyncio.run(async_validate_ac(attr_cert, context, holder_cert=_asn1(pki.identity)))


def _aa_crl(pki: Pki, serials: list[int]) -> bytes:
    entries = [
        RevokedEntry(s, NOW - timedelta(minutes=5), x509.ReasonFlags.privilege_withdrawn)
        for s in serials
    ]
    crl = build_crl(
        pki.aa,
        pki.aa_key,
        entries,
        crl_number=1,
        this_update=NOW - timedelta(minutes=1),
        next_update=NOW + timedelta(days=1),
        attribute_certificates=True,
    )
    return crl.public_bytes(Encoding.DER)


def test_pyhanko_accepts_our_ac(any_pki: Pki) -> None:
    result = _validate(any_pki, any_pki.issue_ac(no_rev_avail=True), [])
    approved = result.approved_attributes  # type: ignore[attr-defined]
    assert set(approved) >= {"role", "group"}


def test_pyhanko_accepts_and_then_revokes_via_our_aa_crl(pki: Pki) -> None:
    issuer = AttributeCertificateIssuer(pki.aa, pki.aa_key, gateway_name=GATEWAY, crl_url=CRL_URL)
    der = issuer.issue(
        pki.identity, ATTRS, not_before=NOW - timedelta(hours=1), not_after=NOW + timedelta(hours=8)
    )
    serial = parse_attribute_certificate(der).serial
    _validate(pki, der, [_aa_crl(pki, [serial + 1])])
    with pytest.raises(PathValidationError, match="revoked"):
        _validate(pki, der, [_aa_crl(pki, [serial])])


def test_pyhanko_refuses_an_ac_for_another_gateway(pki: Pki) -> None:
    other = AttributeCertificateIssuer(pki.aa, pki.aa_key, gateway_name="elsewhere")
    der = other.issue(
        pki.identity,
        ATTRS,
        not_before=NOW - timedelta(hours=1),
        not_after=NOW + timedelta(hours=8),
        no_rev_avail=True,
    )
    with pytest.raises(InvalidAttrCertificateError, match="targeting"):
        _validate(pki, der, [])

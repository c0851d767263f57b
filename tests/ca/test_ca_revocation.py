from datetime import timedelta

import pytest
from ca_pki import NOW, Pki
from cryptography import x509

from ca.errors import Expired, MalformedInputError, SignatureInvalid, WrongIssuer
from ca.revocation import (
    REVOCATION_REASONS,
    RevokedEntry,
    build_crl,
    parse_reason,
    revoked_serials_from_crl,
)


def _crl(
    pki: Pki, *, attribute: bool = False, entries: tuple[RevokedEntry, ...] = ()
) -> x509.CertificateRevocationList:
    cert, key = (pki.aa, pki.aa_key) if attribute else (pki.root, pki.root_key)
    return build_crl(
        cert,
        key,
        entries,
        crl_number=7,
        this_update=NOW - timedelta(hours=1),
        next_update=NOW + timedelta(days=1),
        attribute_certificates=attribute,
    )


def test_reason_names_follow_rfc5280() -> None:
    assert parse_reason("keyCompromise") is x509.ReasonFlags.key_compromise
    assert parse_reason("privilegewithdrawn") is x509.ReasonFlags.privilege_withdrawn
    assert len(REVOCATION_REASONS) == 9
    with pytest.raises(MalformedInputError, match="choose one of unspecified, keyCompromise"):
        parse_reason("lost")


def test_identity_crl_lists_serials_with_reasons(any_pki: Pki) -> None:
    entries = (
        RevokedEntry(0x4F0C, NOW - timedelta(hours=2), x509.ReasonFlags.key_compromise),
        RevokedEntry(0x99, NOW - timedelta(hours=2), x509.ReasonFlags.unspecified),
    )
    crl = _crl(any_pki, entries=entries)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    keyed = crl.get_revoked_certificate_by_serial_number(0x4F0C)
    assert keyed is not None
    assert (
        keyed.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )
    plain = crl.get_revoked_certificate_by_serial_number(0x99)
    assert plain is not None and len(plain.extensions) == 0
    assert revoked_serials_from_crl(crl, any_pki.root, at=NOW) == {0x4F0C, 0x99}


def test_attribute_crl_is_marked_and_signed_by_the_aa(pki: Pki) -> None:
    crl = _crl(
        pki, attribute=True, entries=(RevokedEntry(5, NOW, x509.ReasonFlags.privilege_withdrawn),)
    )
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.only_contains_attribute_certs
    assert crl.issuer == pki.aa.subject
    assert revoked_serials_from_crl(crl, pki.aa, at=NOW) == {5}


def test_crl_from_wrong_issuer_or_with_bad_signature_or_stale_is_refused(
    pki: Pki, other_pki: Pki
) -> None:
    crl = _crl(pki)
    with pytest.raises(WrongIssuer):
        revoked_serials_from_crl(crl, pki.aa, at=NOW)
    with pytest.raises(SignatureInvalid):
        revoked_serials_from_crl(crl, other_pki.root, at=NOW)  # same name, other key
    with pytest.raises(Expired, match="publish a new one"):
        revoked_serials_from_crl(crl, pki.root, at=NOW + timedelta(days=2))

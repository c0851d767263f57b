from datetime import timedelta

import pytest
from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from ca_pki import ATTRS, GATEWAY, NOW, Pki, resign_ac
from cryptography import x509

from ca.attribute_cert import (
    AttributeCertificate,
    AttributeCertificateIssuer,
    parse_attribute_certificate,
)
from ca.attributes import AttributeSet
from ca.authority import (
    build_attribute_authority_certificate,
    build_host_certificate,
    build_root_certificate,
)
from ca.errors import (
    Expired,
    HolderMismatch,
    NotAnAttributeAuthority,
    NotAnIdentityCertificate,
    NotYetValid,
    Revoked,
    SignatureInvalid,
    UnknownCriticalExtension,
    WrongIssuer,
    WrongTarget,
)
from ca.keys import generate_private_key
from ca.timeutil import format_time
from ca.verify import verify_attribute_certificate, verify_identity_certificate


def check(pki: Pki, ac: AttributeCertificate | bytes, **kwargs: object) -> AttributeSet:
    params: dict[str, object] = {
        "aa_cert": pki.aa,
        "root_cert": pki.root,
        "holder_cert": pki.identity,
        "at": NOW,
        "gateway_name": GATEWAY,
    }
    params.update(kwargs)
    parsed = parse_attribute_certificate(ac) if isinstance(ac, bytes) else ac
    return verify_attribute_certificate(parsed, **params)  # type: ignore[arg-type]


# identity certificates


def test_identity_certificate_is_accepted(any_pki: Pki) -> None:
    # Returns nothing and raises a specific VerificationError on any failure.
    assert verify_identity_certificate(any_pki.identity, any_pki.root, at=NOW) is None


def test_identity_expired_and_not_yet_valid(pki: Pki) -> None:
    end = format_time(pki.identity.not_valid_after_utc)
    with pytest.raises(Expired, match=rf"identity certificate [0-9a-f]+ expired at {end}"):
        verify_identity_certificate(pki.identity, pki.root, at=NOW + timedelta(days=366))
    with pytest.raises(NotYetValid):
        verify_identity_certificate(pki.identity, pki.root, at=NOW - timedelta(days=2))


def test_identity_from_another_root_is_refused(pki: Pki) -> None:
    other_key = generate_private_key()
    other_root = build_root_certificate(other_key, "another root")
    with pytest.raises(WrongIssuer, match="not by the root"):
        verify_identity_certificate(pki.identity, other_root, at=NOW)


def test_identity_from_a_same_named_root_fails_the_signature(pki: Pki, other_pki: Pki) -> None:
    with pytest.raises(SignatureInvalid, match="does not verify with the root key"):
        verify_identity_certificate(other_pki.identity, pki.root, at=NOW)


def test_tampered_identity_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(SignatureInvalid):
        verify_identity_certificate(_tampered_cert(pki.identity), pki.root, at=NOW)


def _tampered_cert(cert: x509.Certificate) -> x509.Certificate:
    from cryptography.hazmat.primitives.serialization import Encoding

    der = bytearray(cert.public_bytes(Encoding.DER))
    der[-10] ^= 0x01  # inside the signature
    return x509.load_der_x509_certificate(bytes(der))


def test_revoked_identity_is_refused(pki: Pki) -> None:
    with pytest.raises(Revoked, match="is revoked"):
        verify_identity_certificate(
            pki.identity, pki.root, at=NOW, revoked_serials={pki.identity.serial_number}
        )


def test_non_client_certificates_cannot_identify_users(pki: Pki) -> None:
    host = build_host_certificate(
        pki.root, pki.root_key, generate_private_key().public_key(), "gw.example"
    )
    with pytest.raises(NotAnIdentityCertificate, match="clientAuth"):
        verify_identity_certificate(
            host, pki.root, at=host.not_valid_before_utc + timedelta(days=1)
        )


# attribute certificates


def test_good_ac_yields_its_attributes(any_pki: Pki) -> None:
    assert check(any_pki, any_pki.issue_ac()) == ATTRS


def test_ac_expired_and_not_yet_valid(pki: Pki) -> None:
    der = pki.issue_ac(serial=0x4F0C)
    with pytest.raises(
        Expired,
        match=f"attribute certificate 4f0c expired at {format_time(NOW + timedelta(hours=8))}",
    ):
        check(pki, der, at=NOW + timedelta(hours=9))
    future = pki.issue_ac(not_before=NOW + timedelta(hours=1), serial=0x4F0D)
    start = format_time(NOW + timedelta(hours=1))
    with pytest.raises(NotYetValid, match=f"4f0d is not valid before {start}"):
        check(pki, future)


def test_ac_signed_by_another_aa_is_refused(pki: Pki) -> None:
    other_key = generate_private_key()
    other_aa = build_attribute_authority_certificate(
        pki.root, pki.root_key, other_key.public_key(), "rogue AA"
    )
    rogue = AttributeCertificateIssuer(other_aa, other_key, gateway_name=GATEWAY)
    der = rogue.issue(pki.identity, ATTRS, not_before=NOW, not_after=NOW + timedelta(hours=1))
    with pytest.raises(WrongIssuer, match="not by the attribute authority"):
        check(pki, der)


def test_ac_signed_by_same_named_aa_of_another_pki_fails_signature(
    pki: Pki, other_pki: Pki
) -> None:
    der = other_pki.issuer.issue(
        pki.identity, ATTRS, not_before=NOW, not_after=NOW + timedelta(hours=1)
    )
    with pytest.raises(SignatureInvalid):
        check(pki, der)


def test_aa_from_another_root_is_not_an_attribute_authority(pki: Pki, other_pki: Pki) -> None:
    with pytest.raises(NotAnAttributeAuthority):
        check(pki, other_pki.issue_ac(holder=pki.identity), aa_cert=other_pki.aa)


def test_ac_signed_by_the_ca_is_refused(pki: Pki) -> None:
    ca_issuer = AttributeCertificateIssuer(pki.root, pki.root_key, gateway_name=GATEWAY)
    der = ca_issuer.issue(pki.identity, ATTRS, not_before=NOW, not_after=NOW + timedelta(hours=1))
    with pytest.raises(NotAnAttributeAuthority, match="is a CA certificate"):
        check(pki, der, aa_cert=pki.root)


@pytest.mark.parametrize("where", ["signature", "tbs"])
def test_tampered_ac_fails_the_signature_check(any_pki: Pki, where: str) -> None:
    der = bytearray(any_pki.issue_ac())
    ac = parse_attribute_certificate(bytes(der))
    if where == "signature":
        der[-5] ^= 0x01
    else:
        offset = bytes(der).index(b"urn:certgate:role:operator")
        der[offset + len("urn:certgate:role:")] = ord("O")
    tampered = parse_attribute_certificate(bytes(der))
    assert tampered.tbs_der != ac.tbs_der or tampered.signature != ac.signature
    with pytest.raises(SignatureInvalid, match="signature does not verify"):
        check(any_pki, tampered)


def test_ac_for_another_holder_is_refused(pki: Pki) -> None:
    bob = pki.issue_identity("bob")
    with pytest.raises(HolderMismatch, match="not to the presented certificate"):
        check(pki, pki.issue_ac(), holder_cert=bob)


def test_targeting_names_gateway_and_vms(pki: Pki) -> None:
    der = pki.issue_ac(targets=["vm1"])
    assert check(pki, der, vm="vm1") == ATTRS
    assert check(pki, der) == ATTRS  # gateway-level question
    with pytest.raises(WrongTarget, match="limited to VM"):
        check(pki, der, vm="vm2")
    with pytest.raises(WrongTarget, match="not at gateway gw2"):
        check(pki, der, gateway_name="gw2")
    assert check(pki, pki.issue_ac(), vm="any-vm") == ATTRS


def test_revoked_ac_and_revoked_holder_are_refused(pki: Pki) -> None:
    der = pki.issue_ac()
    serial = parse_attribute_certificate(der).serial
    with pytest.raises(Revoked, match="is revoked"):
        check(pki, der, revoked_serials={serial})
    with pytest.raises(Revoked, match=r"identity certificate .* is revoked"):
        check(pki, der, holder_revoked=True)


def test_unknown_critical_extension_is_refused(pki: Pki) -> None:
    def add_extension(info: cms.AttributeCertificateInfoV2) -> None:
        info["extensions"].append(
            asn1_x509.Extension(
                {
                    "extn_id": "1.3.6.1.4.1.99999.7",
                    "critical": True,
                    "extn_value": core.Null().dump(),
                }
            )
        )

    der = resign_ac(pki.issue_ac(), pki.aa_key, add_extension)
    with pytest.raises(UnknownCriticalExtension, match=r"1\.3\.6\.1\.4\.1\.99999\.7"):
        check(pki, der)


def test_ac_without_targeting_is_valid_anywhere(pki: Pki) -> None:
    def drop_targeting(info: cms.AttributeCertificateInfoV2) -> None:
        kept = [e for e in info["extensions"] if e["extn_id"].dotted != "2.5.29.55"]
        info["extensions"] = asn1_x509.Extensions(kept)

    der = resign_ac(pki.issue_ac(), pki.aa_key, drop_targeting)
    assert not parse_attribute_certificate(der).has_targeting
    assert check(pki, der, gateway_name="elsewhere", vm="vm9") == ATTRS

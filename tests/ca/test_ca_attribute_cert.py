from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from ca_pki import ATTRS, GATEWAY, NOW, Pki, resign_ac

from ca.attribute_cert import (
    AttributeCertificateIssuer,
    attribute_certificate_pem,
    parse_attribute_certificate,
)
from ca.attributes import OID_CLEARANCE_RFC3281, AttributeSet, ClearanceLevel
from ca.errors import MalformedInputError


def test_issued_ac_parses_back_with_everything_we_put_in(any_pki: Pki) -> None:
    der = any_pki.issue_ac(targets=["vm1", "vm2"], serial=0x4F0C)
    ac = parse_attribute_certificate(der)
    assert ac.serial == 0x4F0C
    assert ac.holder_issuer == any_pki.identity.issuer
    assert ac.holder_serial == any_pki.identity.serial_number
    assert ac.issuer == any_pki.aa.subject
    assert ac.not_before == NOW - timedelta(hours=1)
    assert ac.not_after == NOW + timedelta(hours=8)
    assert ac.attributes == ATTRS
    assert (ac.target_gateways, ac.target_vms, ac.has_targeting) == (
        (GATEWAY,),
        ("vm1", "vm2"),
        True,
    )
    assert not ac.no_rev_avail and ac.crl_urls == ()
    assert ac.unknown_critical_extensions == ()
    assert ac.der == der


def test_validity_is_whole_seconds_generalized_time(pki: Pki) -> None:
    start = datetime(2026, 11, 28, 10, 0, 0, 999999, tzinfo=UTC)
    der = pki.issue_ac(not_before=start, not_after=start + timedelta(hours=1))
    assert b"20261128100000Z" in der and b"20261128100000." not in der
    assert parse_attribute_certificate(der).not_before == start.replace(microsecond=0)


def test_crl_distribution_point_or_no_rev_avail(pki: Pki) -> None:
    with_crl = AttributeCertificateIssuer(
        pki.aa, pki.aa_key, gateway_name=GATEWAY, crl_url="http://ca.example/aa.crl"
    )
    ac = parse_attribute_certificate(
        with_crl.issue(pki.identity, ATTRS, not_before=NOW, not_after=NOW + timedelta(days=7))
    )
    assert ac.crl_urls == ("http://ca.example/aa.crl",) and not ac.no_rev_avail
    short = parse_attribute_certificate(pki.issue_ac(no_rev_avail=True))
    assert short.no_rev_avail and short.crl_urls == ()
    with pytest.raises(MalformedInputError, match="exclude each other"):
        with_crl.issue(
            pki.identity,
            ATTRS,
            not_before=NOW,
            not_after=NOW + timedelta(hours=1),
            no_rev_avail=True,
        )


def test_pem_round_trip_and_wrong_label(pki: Pki) -> None:
    der = pki.issue_ac()
    pem = attribute_certificate_pem(der)
    assert pem.startswith(b"-----BEGIN ATTRIBUTE CERTIFICATE-----")
    assert parse_attribute_certificate(pem).der == der
    with pytest.raises(MalformedInputError, match="ATTRIBUTE CERTIFICATE"):
        parse_attribute_certificate(pem.replace(b"ATTRIBUTE CERTIFICATE", b"CERTIFICATE"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30\x00",
        b"garbage",
        b"\x30\x82\xff\xff\x00",
        b"-----BEGIN ATTRIBUTE CERTIFICATE-----\n!!\n",
    ],
)
def test_malformed_input_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(MalformedInputError):
        parse_attribute_certificate(data)


def test_truncated_and_trailing_bytes_are_refused(pki: Pki) -> None:
    der = pki.issue_ac()
    with pytest.raises(MalformedInputError):
        parse_attribute_certificate(der[:-3])
    with pytest.raises(MalformedInputError):
        parse_attribute_certificate(der + b"\x00")


def test_identity_certificate_is_not_an_ac(pki: Pki) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    with pytest.raises(MalformedInputError):
        parse_attribute_certificate(pki.identity.public_bytes(Encoding.DER))


def test_issuer_refuses_empty_attributes_bad_targets_and_a_foreign_key(
    pki: Pki, other_pki: Pki
) -> None:
    with pytest.raises(MalformedInputError, match="at least one attribute"):
        pki.issue_ac(attributes=AttributeSet())
    with pytest.raises(MalformedInputError, match="invalid VM name"):
        pki.issue_ac(targets=["vm 1"])
    with pytest.raises(MalformedInputError, match="does not match"):
        AttributeCertificateIssuer(pki.aa, other_pki.aa_key, gateway_name=GATEWAY)


@pytest.mark.parametrize("level", list(ClearanceLevel))
def test_every_clearance_level_round_trips(pki: Pki, level: ClearanceLevel) -> None:
    der = pki.issue_ac(attributes=AttributeSet(clearance=level))
    assert parse_attribute_certificate(der).attributes.clearance is level


def test_clearance_is_accepted_under_the_rfc3281_oid(pki: Pki) -> None:
    def rename_clearance(info: cms.AttributeCertificateInfoV2) -> None:
        for attribute in info["attributes"]:
            if attribute["type"].dotted == "2.5.4.55":
                values = attribute["values"].dump()
                attribute["type"] = cms.AttCertAttributeType(OID_CLEARANCE_RFC3281)
                attribute["values"] = cms.SetOfAny.load(values)

    der = resign_ac(pki.issue_ac(), pki.aa_key, rename_clearance)
    assert b"\x06\x04\x55\x01\x05\x37" in der  # OID 2.5.1.5.55
    assert parse_attribute_certificate(der).attributes.clearance is ClearanceLevel.SECRET


def test_unknown_critical_extension_is_reported(pki: Pki) -> None:
    def add_extension(info: cms.AttributeCertificateInfoV2) -> None:
        info["extensions"].append(
            asn1_x509.Extension(
                {
                    "extn_id": "1.3.6.1.4.1.99999.1",
                    "critical": True,
                    "extn_value": core.Null().dump(),
                }
            )
        )

    der = resign_ac(pki.issue_ac(), pki.aa_key, add_extension)
    assert parse_attribute_certificate(der).unknown_critical_extensions == ("1.3.6.1.4.1.99999.1",)


def test_foreign_role_forms_are_read_as_strings(pki: Pki) -> None:
    def dns_role(info: cms.AttributeCertificateInfoV2) -> None:
        role = cms.RoleSyntax(
            {"role_name": asn1_x509.GeneralName(name="dns_name", value="admins.example")}
        )
        info["attributes"].append(cms.AttCertAttribute({"type": "role", "values": [role]}))

    der = resign_ac(pki.issue_ac(), pki.aa_key, dns_role)
    assert parse_attribute_certificate(der).attributes.roles == ("operator", "admins.example")


def test_issuing_reuses_encodings_but_each_ac_differs(pki: Pki) -> None:
    first, second = pki.issue_ac(), pki.issue_ac()
    assert first != second
    assert parse_attribute_certificate(first).serial != parse_attribute_certificate(second).serial

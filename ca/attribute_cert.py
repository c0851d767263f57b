"""RFC 5755 attribute certificates: the parsed form and a strict parser.

Parsing is eager: every part certgate relies on is decoded here, so a
malformed AC fails with MalformedInputError at the door instead of raising a
raw asn1crypto error later on the login path. Issuing lives in
``ca.attribute_issuer`` and is re-exported here.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import cms, pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from ca.asn1_specs import SequenceOfTargets
from ca.attribute_codec import decode_attributes
from ca.attribute_issuer import (
    GATEWAY_TARGET_PREFIX,
    KNOWN_EXTENSIONS,
    OID_CRL_DISTRIBUTION_POINTS,
    OID_NO_REV_AVAIL,
    OID_TARGETING,
    VM_TARGET_PREFIX,
    AttributeCertificateIssuer,
)
from ca.attributes import AttributeSet
from ca.errors import CAError, MalformedInputError
from ca.name_codec import single_directory_name
from ca.pem import check_size, decode_pem, looks_like_pem

__all__ = [
    "PEM_LABEL",
    "AttributeCertificate",
    "AttributeCertificateIssuer",
    "attribute_certificate_pem",
    "parse_attribute_certificate",
]

PEM_LABEL = "ATTRIBUTE CERTIFICATE"


@dataclass(frozen=True)
class AttributeCertificate:
    """What certgate reads from an AC; ``tbs_der``/``signature`` allow verification."""

    der: bytes
    serial: int
    holder_issuer: x509.Name
    holder_serial: int
    issuer: x509.Name
    not_before: datetime
    not_after: datetime
    attributes: AttributeSet
    target_gateways: tuple[str, ...]
    target_vms: tuple[str, ...]
    has_targeting: bool
    no_rev_avail: bool
    crl_urls: tuple[str, ...]
    unknown_critical_extensions: tuple[str, ...]
    signature_algorithm_oid: str
    tbs_der: bytes
    signature: bytes


def attribute_certificate_pem(der: bytes) -> bytes:
    """PEM armour with the ``ATTRIBUTE CERTIFICATE`` label."""
    return bytes(pem.armor(PEM_LABEL, der))


def _der_from(data: bytes) -> bytes:
    check_size(data, "attribute certificate")
    if not looks_like_pem(data):
        return data
    return decode_pem(data, (PEM_LABEL,), "attribute certificate")[1]


def _utc(value: object, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise MalformedInputError(f"attribute certificate {what} is not a UTC time")
    return value.astimezone(UTC)


def _targets(value: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Gateways and VMs named by targetName URIs; other target forms name neither."""
    gateways: list[str] = []
    vms: list[str] = []
    for targets in SequenceOfTargets.load(value):
        for target in targets:
            if target.name != "target_name":
                continue
            general_name = target.chosen
            if general_name.name != "uniform_resource_identifier":
                continue
            uri = str(general_name.native)
            if uri.startswith(GATEWAY_TARGET_PREFIX):
                gateways.append(uri[len(GATEWAY_TARGET_PREFIX) :])
            elif uri.startswith(VM_TARGET_PREFIX):
                vms.append(uri[len(VM_TARGET_PREFIX) :])
    return tuple(gateways), tuple(vms)


def _crl_urls(value: bytes) -> tuple[str, ...]:
    urls: list[str] = []
    for point in asn1_x509.CRLDistributionPoints.load(value):
        name = point["distribution_point"]
        if name.name != "full_name":
            continue
        for general_name in name.chosen:
            if general_name.name == "uniform_resource_identifier":
                urls.append(str(general_name.native))
    return tuple(urls)


def _parse(der: bytes) -> AttributeCertificate:
    ac = cms.AttributeCertificateV2.load(der, strict=True)
    info = ac["ac_info"]
    if info["version"].native != "v2":
        raise MalformedInputError("attribute certificate is not version 2 (RFC 5755)")
    base_id = info["holder"]["base_certificate_id"]
    if not base_id:
        raise MalformedInputError(
            "attribute certificate holder has no baseCertificateID (the only holder form "
            "certgate supports)"
        )
    if info["issuer"].name != "v2_form":
        raise MalformedInputError("attribute certificate issuer must use v2Form (RFC 5755)")
    v2_form = info["issuer"].chosen
    if not v2_form["issuer_name"]:
        raise MalformedInputError("attribute certificate v2Form has no issuerName")
    outer_algorithm = ac["signature_algorithm"]
    if outer_algorithm.dump() != info["signature"].dump():
        raise MalformedInputError(
            "attribute certificate signature algorithm differs inside and outside the signed part"
        )

    has_targeting = no_rev_avail = False
    gateways: tuple[str, ...] = ()
    vms: tuple[str, ...] = ()
    crl_urls: tuple[str, ...] = ()
    unknown_critical: list[str] = []
    seen: set[str] = set()
    for extension in info["extensions"] or []:
        oid = extension["extn_id"].dotted
        if oid in seen:
            raise MalformedInputError(f"attribute certificate repeats extension {oid}")
        seen.add(oid)
        value = bytes(extension["extn_value"].contents)
        if oid == OID_TARGETING:
            has_targeting = True
            gateways, vms = _targets(value)
        elif oid == OID_NO_REV_AVAIL:
            no_rev_avail = True
        elif oid == OID_CRL_DISTRIBUTION_POINTS:
            crl_urls = _crl_urls(value)
        elif oid not in KNOWN_EXTENSIONS and extension["critical"].native:
            unknown_critical.append(oid)

    validity = info["att_cert_validity_period"]
    signature = ac["signature"]
    return AttributeCertificate(
        der=der,
        serial=int(info["serial_number"].native),
        holder_issuer=single_directory_name(base_id["issuer"], "holder issuer"),
        holder_serial=int(base_id["serial"].native),
        issuer=single_directory_name(v2_form["issuer_name"], "attribute certificate issuer"),
        not_before=_utc(validity["not_before_time"].native, "notBefore"),
        not_after=_utc(validity["not_after_time"].native, "notAfter"),
        attributes=decode_attributes(info["attributes"]),
        target_gateways=gateways,
        target_vms=vms,
        has_targeting=has_targeting,
        no_rev_avail=no_rev_avail,
        crl_urls=crl_urls,
        unknown_critical_extensions=tuple(unknown_critical),
        signature_algorithm_oid=outer_algorithm["algorithm"].dotted,
        tbs_der=info.dump(),
        signature=bytes(signature.native),
    )


def parse_attribute_certificate(data: bytes) -> AttributeCertificate:
    """Parse a DER or PEM attribute certificate; MalformedInputError on any defect."""
    der = _der_from(data)
    try:
        return _parse(der)
    except CAError:
        raise
    except Exception as exc:  # asn1crypto raises many types for bad input
        raise MalformedInputError(f"not a valid attribute certificate: {exc}") from None

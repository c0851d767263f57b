"""Conversions between asn1crypto and cryptography distinguished names.

cryptography has no public loader for a bare Name, so names read from
attribute certificates are rebuilt attribute by attribute. Equality in
cryptography compares OIDs and values, which is what holder/issuer matching needs.
"""

from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from ca.errors import MalformedInputError


def to_asn1_name(name: x509.Name) -> asn1_x509.Name:
    """cryptography Name -> asn1crypto Name, byte-for-byte."""
    return asn1_x509.Name.load(name.public_bytes())


def directory_general_names(name: x509.Name) -> bytes:
    """DER of GeneralNames holding one directoryName."""
    names = asn1_x509.GeneralNames(
        [asn1_x509.GeneralName(name="directory_name", value=to_asn1_name(name))]
    )
    return bytes(names.dump())


def to_crypto_name(name: asn1_x509.Name, what: str) -> x509.Name:
    """asn1crypto Name -> cryptography Name; MalformedInputError if a value is not text."""
    rdns: list[x509.RelativeDistinguishedName] = []
    for rdn in name.chosen:
        attributes: list[x509.NameAttribute[str]] = []
        for ava in rdn:
            value = ava["value"]
            if isinstance(value, core.Choice):
                value = value.chosen
            text = value.native
            if not isinstance(text, str):
                oid = ava["type"].dotted
                raise MalformedInputError(f"{what}: name attribute {oid} is not text")
            try:
                attributes.append(x509.NameAttribute(ObjectIdentifier(ava["type"].dotted), text))
            except ValueError as exc:
                raise MalformedInputError(f"{what}: bad name attribute: {exc}") from None
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns)


def single_directory_name(names: asn1_x509.GeneralNames, what: str) -> x509.Name:
    """The one directoryName RFC 5755 requires in issuer and holder GeneralNames."""
    if len(names) != 1 or names[0].name != "directory_name":
        raise MalformedInputError(f"{what} must be exactly one directoryName")
    return to_crypto_name(names[0].chosen, what)

"""Issuing RFC 5755 attribute certificates, fast.

Issuing splices pre-encoded DER parts: the AA issuer name, signature
algorithm, AKI and revocation extension are encoded once per issuer, holder
issuer names and targeting extensions are cached, and only serial, validity and
holder serial are encoded per certificate. Rebuilding asn1crypto objects per AC
is ~50x slower (see docs/ca.md).
"""

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.asn1_specs import SequenceOfTargets, Target, Targets
from ca.attribute_codec import encode_attributes
from ca.attributes import AttributeSet, check_attribute_value
from ca.der import sequence, tlv
from ca.errors import MalformedInputError
from ca.keys import PrivateKey, check_private_key
from ca.name_codec import directory_general_names
from ca.names import check_target_name
from ca.serials import new_serial
from ca.signing import algorithm_identifier_der, sign
from ca.timeutil import check_window

OID_TARGETING = "2.5.29.55"
OID_NO_REV_AVAIL = "2.5.29.56"
OID_AUTHORITY_KEY_IDENTIFIER = "2.5.29.35"
OID_CRL_DISTRIBUTION_POINTS = "2.5.29.31"
KNOWN_EXTENSIONS = frozenset(
    {OID_TARGETING, OID_NO_REV_AVAIL, OID_AUTHORITY_KEY_IDENTIFIER, OID_CRL_DISTRIBUTION_POINTS}
)
GATEWAY_TARGET_PREFIX = "certgate:gateway:"
VM_TARGET_PREFIX = "certgate:vm:"

_VERSION_V2 = bytes.fromhex("020101")


def _integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


def _generalized_time(value: datetime) -> bytes:
    return tlv(0x18, value.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


@lru_cache(maxsize=256)
def _validity(start: datetime, end: datetime) -> bytes:
    """Bulk grants share one validity window: encoded once."""
    return sequence(_generalized_time(start), _generalized_time(end))


def _extension(oid: str, critical: bool, value: bytes) -> bytes:
    flag = b"\x01\x01\xff" if critical else b""
    return sequence(core.ObjectIdentifier(oid).dump(), flag, tlv(0x04, value))


@lru_cache(maxsize=1024)
def _targeting_extension(gateway_name: str, vms: tuple[str, ...]) -> bytes:
    uris = [GATEWAY_TARGET_PREFIX + gateway_name] + [VM_TARGET_PREFIX + vm for vm in vms]
    targets = Targets(
        [
            Target(
                name="target_name",
                value=asn1_x509.GeneralName(name="uniform_resource_identifier", value=uri),
            )
            for uri in uris
        ]
    )
    return _extension(OID_TARGETING, True, SequenceOfTargets([targets]).dump())


@lru_cache(maxsize=4096)
def _encoded_attributes(attributes: AttributeSet) -> bytes:
    if attributes.is_empty():
        raise MalformedInputError("an attribute certificate needs at least one attribute")
    for kind, values in (("role", attributes.roles), ("group", attributes.groups)):
        for value in values:
            check_attribute_value(kind, value)
    for value in attributes.grants:
        check_attribute_value("grant", value)
    return encode_attributes(attributes)


class AttributeCertificateIssuer:
    """Signs attribute certificates for one Attribute Authority and one gateway."""

    def __init__(
        self,
        aa_cert: x509.Certificate,
        aa_key: PrivateKey,
        *,
        gateway_name: str,
        crl_url: str | None = None,
    ) -> None:
        check_private_key(aa_key, "attribute authority key")
        own = serialization.PublicFormat.SubjectPublicKeyInfo
        if aa_key.public_key().public_bytes(
            serialization.Encoding.DER, own
        ) != aa_cert.public_key().public_bytes(serialization.Encoding.DER, own):
            raise MalformedInputError(
                "attribute authority key does not match the attribute authority certificate"
            )
        self._key = aa_key
        self._gateway_name = check_target_name(gateway_name, "gateway")
        self._crl_url = crl_url
        self._issuer = tlv(0xA0, directory_general_names(aa_cert.subject))
        self._algorithm = algorithm_identifier_der(aa_key)
        try:
            ski = aa_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(aa_key.public_key())
        self._aki = _extension(OID_AUTHORITY_KEY_IDENTIFIER, False, aki.public_bytes())
        self._crl_dp = b""
        if crl_url is not None:
            dp = x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(crl_url)], None, None, None
                    )
                ]
            )
            self._crl_dp = _extension(OID_CRL_DISTRIBUTION_POINTS, False, dp.public_bytes())
        self._no_rev_avail = _extension(OID_NO_REV_AVAIL, False, b"\x05\x00")
        self._holder_issuers: dict[bytes, bytes] = {}
        self._holders: dict[x509.Certificate, bytes] = {}

    @property
    def gateway_name(self) -> str:
        """The gateway every AC from this issuer is targeted at."""
        return self._gateway_name

    def _holder(self, holder: x509.Certificate) -> bytes:
        # Bulk grants name the same holders again and again; encoding the issuer name was a
        # sixth of an AC's cost. Certificates hash and compare by their DER.
        encoded = self._holders.get(holder)
        if encoded is not None:
            return encoded
        issuer_der = holder.issuer.public_bytes()
        names = self._holder_issuers.get(issuer_der)
        if names is None:
            names = directory_general_names(holder.issuer)
            if len(self._holder_issuers) < 256:
                self._holder_issuers[issuer_der] = names
        encoded = sequence(tlv(0xA0, names + _integer(holder.serial_number)))
        if len(self._holders) >= 4096:
            self._holders.clear()
        self._holders[holder] = encoded
        return encoded

    def issue(
        self,
        holder: x509.Certificate,
        attributes: AttributeSet,
        *,
        not_before: datetime,
        not_after: datetime,
        targets: Sequence[str] = (),
        serial: int | None = None,
        no_rev_avail: bool = False,
    ) -> bytes:
        """Sign an AC for ``holder``'s identity certificate and return its DER.

        ``no_rev_avail`` marks a short-lived AC that will never appear on a CRL;
        it excludes the CRL distribution point.
        """
        start, end = check_window(not_before, not_after)
        if no_rev_avail and self._crl_url is not None:
            raise MalformedInputError(
                "noRevAvail and a CRL distribution point exclude each other: "
                "use an issuer without crl_url for short-lived ACs"
            )
        vms = tuple(check_target_name(vm, "VM") for vm in targets)
        serial_number = new_serial() if serial is None else serial
        if serial_number <= 0:
            raise MalformedInputError(f"AC serial number must be positive (got {serial_number})")
        extensions = _targeting_extension(self._gateway_name, vms) + self._aki
        extensions += self._no_rev_avail if no_rev_avail else self._crl_dp
        tbs = sequence(
            _VERSION_V2,
            self._holder(holder),
            self._issuer,
            self._algorithm,
            _integer(serial_number),
            _validity(start, end),
            _encoded_attributes(attributes),
            sequence(extensions),
        )
        signature = sign(self._key, tbs)
        return sequence(tbs, self._algorithm, tlv(0x03, b"\x00" + signature))

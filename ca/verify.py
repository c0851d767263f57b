"""Verification of identity certificates and attribute certificates.

Pure functions of their inputs (certificates, a time, revoked serials); each
failure raises the specific VerificationError subclass so the gateway can log
why a login was refused. Checks run in a fixed order and stop at the first
failure: authority, issuer, signature, holder, validity, extensions, target,
revocation.
"""

from collections.abc import Container
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from ca.attribute_cert import AttributeCertificate
from ca.attributes import AttributeSet
from ca.errors import (
    Expired,
    HolderMismatch,
    MalformedInputError,
    NotAnAttributeAuthority,
    NotAnIdentityCertificate,
    NotYetValid,
    Revoked,
    SignatureInvalid,
    UnknownCriticalExtension,
    WrongIssuer,
    WrongTarget,
)
from ca.keys import check_public_key
from ca.serials import format_serial
from ca.signing import verify_signature
from ca.timeutil import format_time, utc_seconds


def _window(what: str, not_before: datetime, not_after: datetime, when: datetime) -> None:
    if when < not_before:
        raise NotYetValid(f"{what} is not valid before {format_time(not_before)}")
    if when > not_after:
        raise Expired(f"{what} expired at {format_time(not_after)}")


def _issued_by_root(cert: x509.Certificate, root_cert: x509.Certificate, what: str) -> None:
    if cert.issuer != root_cert.subject:
        raise WrongIssuer(
            f"{what} is issued by {cert.issuer.rfc4514_string()}, "
            f"not by the root {root_cert.subject.rfc4514_string()}"
        )
    try:
        cert.verify_directly_issued_by(root_cert)
    except InvalidSignature:
        raise SignatureInvalid(f"{what}: signature does not verify with the root key") from None
    except (ValueError, TypeError) as exc:
        raise SignatureInvalid(f"{what}: cannot verify signature: {exc}") from None


def _unknown_critical(cert: x509.Certificate, what: str) -> None:
    for extension in cert.extensions:
        if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            raise UnknownCriticalExtension(
                f"{what} has unknown critical extension {extension.oid.dotted_string}"
            )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def verify_identity_certificate(
    cert: x509.Certificate,
    root_cert: x509.Certificate,
    *,
    at: datetime,
    revoked_serials: Container[int] = frozenset(),
) -> None:
    """Accept ``cert`` as a user's identity at ``at`` or raise why not."""
    when = utc_seconds(at, "at")
    what = f"identity certificate {format_serial(cert.serial_number)}"
    _issued_by_root(cert, root_cert, what)
    _window(what, cert.not_valid_before_utc, cert.not_valid_after_utc, when)
    _unknown_critical(cert, what)
    if _is_ca(cert):
        raise NotAnIdentityCertificate(f"{what} is a CA certificate, not a user's")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise NotAnIdentityCertificate(f"{what} lacks the clientAuth extended key usage")
    if cert.serial_number in revoked_serials:
        raise Revoked(f"{what} is revoked")


def _check_attribute_authority(
    aa_cert: x509.Certificate, root_cert: x509.Certificate, when: datetime
) -> None:
    what = f"attribute authority certificate {aa_cert.subject.rfc4514_string()}"
    try:
        _issued_by_root(aa_cert, root_cert, what)
    except (WrongIssuer, SignatureInvalid) as exc:
        raise NotAnAttributeAuthority(str(exc)) from None
    if _is_ca(aa_cert):
        raise NotAnAttributeAuthority(
            f"{what} is a CA certificate; ACs must be signed by a non-CA attribute authority"
        )
    try:
        usage = aa_cert.extensions.get_extension_for_class(x509.KeyUsage).value
        signs = usage.digital_signature
    except x509.ExtensionNotFound:
        signs = False
    if not signs:
        raise NotAnAttributeAuthority(f"{what} lacks the digitalSignature key usage")
    _window(what, aa_cert.not_valid_before_utc, aa_cert.not_valid_after_utc, when)
    _unknown_critical(aa_cert, what)


def verify_attribute_certificate(
    ac: AttributeCertificate,
    *,
    aa_cert: x509.Certificate,
    root_cert: x509.Certificate,
    holder_cert: x509.Certificate,
    at: datetime,
    gateway_name: str,
    vm: str | None = None,
    revoked_serials: Container[int] = frozenset(),
    holder_revoked: bool = False,
) -> AttributeSet:
    """Return the attributes ``ac`` grants ``holder_cert`` at ``gateway_name`` (and ``vm``).

    With ``vm=None`` only gateway-level validity is checked: an AC restricted
    to some VMs is still valid at the gateway.
    """
    when = utc_seconds(at, "at")
    what = f"attribute certificate {format_serial(ac.serial)}"
    _check_attribute_authority(aa_cert, root_cert, when)
    if ac.issuer != aa_cert.subject:
        raise WrongIssuer(
            f"{what} is issued by {ac.issuer.rfc4514_string()}, "
            f"not by the attribute authority {aa_cert.subject.rfc4514_string()}"
        )
    try:
        aa_key = check_public_key(aa_cert.public_key(), "attribute authority key")
    except MalformedInputError as exc:
        raise NotAnAttributeAuthority(str(exc)) from None
    verify_signature(aa_key, ac.signature_algorithm_oid, ac.signature, ac.tbs_der, what)
    if ac.holder_issuer != holder_cert.issuer or ac.holder_serial != holder_cert.serial_number:
        raise HolderMismatch(
            f"{what} belongs to certificate {format_serial(ac.holder_serial)} of "
            f"{ac.holder_issuer.rfc4514_string()}, not to the presented certificate "
            f"{format_serial(holder_cert.serial_number)}"
        )
    _window(what, ac.not_before, ac.not_after, when)
    if ac.unknown_critical_extensions:
        raise UnknownCriticalExtension(
            f"{what} has unknown critical extension(s) {', '.join(ac.unknown_critical_extensions)}"
        )
    if ac.has_targeting:
        if gateway_name not in ac.target_gateways:
            named = ", ".join(ac.target_gateways) or "no gateway"
            raise WrongTarget(f"{what} is targeted at {named}, not at gateway {gateway_name}")
        if vm is not None and ac.target_vms and vm not in ac.target_vms:
            raise WrongTarget(f"{what} is limited to VM(s) {', '.join(ac.target_vms)}, not {vm}")
    if holder_revoked:
        raise Revoked(
            f"{what}: the holder's identity certificate {format_serial(ac.holder_serial)} "
            "is revoked"
        )
    if ac.serial in revoked_serials:
        raise Revoked(f"{what} is revoked")
    return ac.attributes

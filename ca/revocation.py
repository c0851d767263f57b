"""Certificate revocation lists: the root's identity CRL and the AA's attribute CRL.

Both are plain X.509 v2 CRLs built with cryptography. The attribute CRL marks
itself with IssuingDistributionPoint onlyContainsAttributeCerts so it cannot be
mistaken for a list of identity certificates.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from ca.errors import (
    Expired,
    MalformedInputError,
    NotYetValid,
    SignatureInvalid,
    WrongIssuer,
)
from ca.keys import PrivateKey, check_private_key
from ca.signing import signing_hash
from ca.timeutil import format_time, utc_seconds

REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}


def parse_reason(text: str) -> x509.ReasonFlags:
    """CLI reason name (RFC 5280 spelling, case-insensitive) -> ReasonFlags."""
    lowered = {name.lower(): flag for name, flag in REVOCATION_REASONS.items()}
    flag = lowered.get(text.strip().lower().replace("-", "").replace("_", ""))
    if flag is None:
        raise MalformedInputError(
            f"unknown revocation reason {text!r} (choose one of {', '.join(REVOCATION_REASONS)})"
        )
    return flag


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked serial, when, and why."""

    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags


def build_crl(
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    revoked: Iterable[RevokedEntry],
    *,
    crl_number: int,
    this_update: datetime,
    next_update: datetime,
    attribute_certificates: bool = False,
) -> x509.CertificateRevocationList:
    """Sign a CRL; ``attribute_certificates=True`` for the AA's list of revoked ACs."""
    check_private_key(issuer_key, "CRL issuer key")
    start = utc_seconds(this_update, "this_update")
    end = utc_seconds(next_update, "next_update")
    if end <= start:
        raise MalformedInputError("CRL next_update must be after this_update")
    if crl_number < 0:
        raise MalformedInputError(f"CRL number must not be negative (got {crl_number})")
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(start)
        .next_update(end)
        .add_extension(aki, critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    if attribute_certificates:
        idp = x509.IssuingDistributionPoint(
            full_name=None,
            relative_name=None,
            only_contains_user_certs=False,
            only_contains_ca_certs=False,
            only_some_reasons=None,
            indirect_crl=False,
            only_contains_attribute_certs=True,
        )
        builder = builder.add_extension(idp, critical=True)
    for entry in revoked:
        revoked_builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(utc_seconds(entry.revoked_at, "revocation time"))
        )
        if entry.reason != x509.ReasonFlags.unspecified:
            revoked_builder = revoked_builder.add_extension(
                x509.CRLReason(entry.reason), critical=False
            )
        builder = builder.add_revoked_certificate(revoked_builder.build())
    return builder.sign(issuer_key, signing_hash(issuer_key))


def revoked_serials_from_crl(
    crl: x509.CertificateRevocationList, issuer_cert: x509.Certificate, *, at: datetime
) -> frozenset[int]:
    """Serials revoked by a CRL that ``issuer_cert`` signed and that is current at ``at``."""
    when = utc_seconds(at, "at")
    if crl.issuer != issuer_cert.subject:
        raise WrongIssuer(
            f"CRL issued by {crl.issuer.rfc4514_string()}, "
            f"expected {issuer_cert.subject.rfc4514_string()}"
        )
    try:
        valid = crl.is_signature_valid(issuer_cert.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise SignatureInvalid(
            f"CRL signature does not verify with {issuer_cert.subject.rfc4514_string()}"
        )
    if crl.last_update_utc > when:
        raise NotYetValid(f"CRL is not valid before {format_time(crl.last_update_utc)}")
    next_update = crl.next_update_utc
    if next_update is not None and next_update < when:
        raise Expired(f"CRL expired at {format_time(next_update)}: publish a new one")
    return frozenset(entry.serial_number for entry in crl)

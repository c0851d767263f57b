"""The CA service of one installation: ``ca/`` builders and verifiers bound to store and audit.

Every operation that issues or revokes writes its certificate row and its audit event in one
transaction, so there is never an issued certificate without a record of who issued it.
Signing keys are loaded only for operations that sign, and only once per process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.orm import Session

from ca import attribute_cert, attribute_issuer, keys, revocation, verify
from ca import authority as builders
from ca.attributes import AttributeSet
from ca.errors import VerificationError
from ca.serials import format_serial, new_serial, parse_serial
from certgate.audit.chain import AuditEvent
from certgate.audit.log import append_in
from certgate.errors import CertgateError
from certgate.store import repositories as repo

if TYPE_CHECKING:
    from certgate.installation import Installation

SHORT_LIVED = timedelta(hours=24)
"""ACs valid at most this long carry noRevAvail instead of a CRL distribution point."""


@dataclass(frozen=True)
class IssuedIdentity:
    user: repo.User
    certificate: x509.Certificate
    serial: str


@dataclass(frozen=True)
class GrantRequest:
    """One attribute certificate to issue: to whom, what, for how long, for which VMs."""

    user: str
    attributes: AttributeSet
    valid_for: timedelta
    targets: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttributeCheck:
    """The outcome of checking one AC against this installation."""

    serial: str
    holder_serial: str
    holder_user: str | None
    attributes: AttributeSet | None
    targets: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    error: str | None

    @property
    def valid(self) -> bool:
        return self.error is None


class CAService:
    """Issues and revokes the certificates of one installation."""

    def __init__(self, installation: Installation) -> None:
        self.installation = installation
        self.database = installation.database
        self.config = installation.config
        self._holder_cache: dict[bytes, x509.Certificate] = {}

    def _event(self, event_type: str, **fields: Any) -> AuditEvent:
        return self.installation.event(event_type, **fields)

    @property
    def root_certificate(self) -> x509.Certificate:
        return self.installation.root_certificate

    @property
    def aa_certificate(self) -> x509.Certificate:
        return self.installation.aa_certificate

    @cached_property
    def root_key(self) -> keys.PrivateKey:
        return keys.read_private_key(self.installation.home.root_key,
                                     self.installation.passphrase())

    @cached_property
    def aa_key(self) -> keys.PrivateKey:
        return keys.read_private_key(self.installation.home.aa_key,
                                     self.installation.passphrase())

    @cached_property
    def ac_issuer(self) -> attribute_issuer.AttributeCertificateIssuer:
        return attribute_issuer.AttributeCertificateIssuer(
            self.aa_certificate,
            self.aa_key,
            gateway_name=self.config.gateway_name,
            crl_url=self.config.crl_url,
        )

    # -- users and identity certificates ------------------------------------------------------

    def add_user(
        self,
        name: str,
        *,
        email: str | None,
        public_key: keys.PublicKey,
        days: int,
        deliver: Callable[[x509.Certificate], None] | None = None,
    ) -> IssuedIdentity:
        """Record a new user and their identity certificate, atomically with the audit event.

        ``deliver`` runs inside the transaction, after the rows are written and before the
        commit (the CLI writes the certificate and a generated key there): if it fails, the
        user is not added.
        """
        if days < 1:
            raise CertgateError("--days must be at least 1")
        maximum = self.config.limits.max_identity_lifetime
        if days > maximum.days:
            raise CertgateError(
                f"--days {days} exceeds the maximum identity certificate lifetime of "
                f"{maximum.days} days (limits.max_identity_lifetime in certgate.toml)")
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        cert = builders.build_identity_certificate(
            self.root_certificate,
            self.root_key,
            public_key,
            user_name=name,
            email=email,
            not_before=start,
            not_after=start + timedelta(days=days),
        )
        serial = format_serial(cert.serial_number)
        with self.installation.admin_write() as session:
            user = repo.add_user(session, name, email)
            repo.add_certificate(
                session,
                serial=serial,
                kind=repo.IDENTITY,
                user=name,
                der=cert.public_bytes(Encoding.DER),
                subject=cert.subject.rfc4514_string(),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                key_fingerprint=keys.spki_sha256(public_key),
            )
            append_in(
                session,
                [self._event("user.add", outcome="ok", user=name, serial=serial,
                            details={"email": email, "key": keys.spki_sha256(public_key),
                                     "not_after": cert.not_valid_after_utc.isoformat()})],
            )
            if deliver is not None:
                deliver(cert)
        return IssuedIdentity(user, cert, serial)

    def current_identity(self, session: Session, user: str) -> repo.IssuedCertificate:
        """The newest identity certificate of a user that is valid now."""
        found = repo.current_identity(session, user, datetime.now(UTC))
        if found is None:
            raise CertgateError(f"user {user} has no valid identity certificate")
        return found

    # -- attribute certificates ---------------------------------------------------------------

    def grant(
        self,
        user: str,
        attributes: AttributeSet,
        *,
        valid_for: timedelta,
        targets: Sequence[str] = (),
    ) -> repo.IssuedCertificate:
        """Issue one AC and record it with its audit event in one transaction."""
        return self.grant_many([GrantRequest(user, attributes, valid_for, tuple(targets))])[0]

    def grant_many(self, requests: Sequence[GrantRequest]) -> list[repo.IssuedCertificate]:
        """Issue several ACs in one transaction: all are recorded (and audited) or none.

        One commit means one fsync on SQLite, which is what limits one-AC-per-transaction
        issuance there; bulk issuance (a whole team's shift) should come through here.
        """
        for request in requests:
            if request.valid_for <= timedelta(0):
                raise CertgateError("--valid must be a positive duration")
            self.config.limits.check_lifetime("attribute", request.valid_for)
        issued: list[repo.IssuedCertificate] = []
        events: list[AuditEvent] = []
        with self.installation.admin_write() as session:
            issued_at = datetime.now(UTC)
            start = issued_at.replace(microsecond=0)
            holders: dict[str, repo.IssuedCertificate] = {}
            for request in requests:
                holder_row = holders.get(request.user)
                if holder_row is None:
                    holder_row = holders[request.user] = self.current_identity(
                        session, request.user
                    )
                cert, event = self._issue_attribute_certificate(
                    request, holder_row, start, issued_at
                )
                issued.append(cert)
                events.append(event)
            repo.add_certificates(session, issued)
            append_in(session, events)
        return issued

    def _holder_certificate(self, der: bytes) -> x509.Certificate:
        cert = self._holder_cache.get(der)
        if cert is None:
            cert = x509.load_der_x509_certificate(der)
            if len(self._holder_cache) < 1024:
                self._holder_cache[der] = cert
        return cert

    def _issue_attribute_certificate(
        self,
        request: GrantRequest,
        holder_row: repo.IssuedCertificate,
        start: datetime,
        issued_at: datetime,
    ) -> tuple[repo.IssuedCertificate, AuditEvent]:
        # The serial and validity are chosen here, so the signed DER need not be parsed back.
        serial_number = new_serial()
        not_after = start + request.valid_for
        der = self.ac_issuer.issue(
            self._holder_certificate(holder_row.der),
            request.attributes,
            not_before=start,
            not_after=not_after,
            targets=request.targets,
            serial=serial_number,
            # With a CRL to publish, every AC is revocable; without one, short-lived ACs say
            # so (noRevAvail) and long-lived ones are still listed on the AA's CRL.
            no_rev_avail=request.valid_for <= SHORT_LIVED and self.config.crl_url is None,
        )
        serial = format_serial(serial_number)
        attributes = request.attributes.as_dict()
        cert = repo.IssuedCertificate(
            serial=serial,
            kind=repo.ATTRIBUTE,
            user=request.user,
            holder_serial=holder_row.serial,
            key_fingerprint=None,
            subject=request.attributes.describe(),
            attributes=attributes,
            targets=list(request.targets),
            not_before=start,
            not_after=not_after,
            issued_at=issued_at,
            status="valid",
            revoked_at=None,
            revocation_reason=None,
            der=der,
            user_id=holder_row.user_id,
        )
        event = self._event(
            "attr.grant", outcome="ok", user=request.user, serial=serial,
            details={"attributes": attributes, "targets": list(request.targets),
                     "holder": holder_row.serial, "not_after": not_after.isoformat()},
        )
        return cert, event

    def check_attribute_certificate(
        self, data: bytes, *, vm: str | None = None, at: datetime | None = None
    ) -> AttributeCheck:
        """Check an AC (from anywhere: a file, another implementation) against this install."""
        at = at or datetime.now(UTC)
        ac = attribute_cert.parse_attribute_certificate(data)
        serial, holder_serial = format_serial(ac.serial), format_serial(ac.holder_serial)
        with self.database.read() as session:
            try:
                holder_row: repo.IssuedCertificate | None = repo.get_certificate(
                    session, holder_serial
                )
            except CertgateError:
                holder_row = None
            revoked_acs = repo.revoked_serials(session, [repo.ATTRIBUTE])
        error: str | None = None
        attributes: AttributeSet | None = None
        if holder_row is None or holder_row.kind != repo.IDENTITY:
            error = f"holder {holder_serial} is not an identity certificate issued here"
        else:
            holder = x509.load_der_x509_certificate(holder_row.der)
            try:
                attributes = verify.verify_attribute_certificate(
                    ac,
                    aa_cert=self.aa_certificate,
                    root_cert=self.root_certificate,
                    holder_cert=holder,
                    at=at,
                    gateway_name=self.config.gateway_name,
                    vm=vm,
                    revoked_serials={parse_serial(s) for s in revoked_acs},
                    holder_revoked=holder_row.status == "revoked",
                )
            except VerificationError as exc:
                error = str(exc)
        return AttributeCheck(
            serial=serial,
            holder_serial=holder_serial,
            holder_user=holder_row.user if holder_row else None,
            attributes=attributes if error is None else ac.attributes,
            targets=ac.target_gateways + ac.target_vms,
            not_before=ac.not_before,
            not_after=ac.not_after,
            error=error,
        )

    # -- revocation ---------------------------------------------------------------------------

    def revoke(self, serial_text: str, *, reason: str) -> repo.IssuedCertificate:
        serial = format_serial(parse_serial(serial_text))
        revocation.parse_reason(reason)
        with self.installation.admin_write() as session:
            revoked = repo.revoke_certificate(
                session, serial, reason=reason, at=datetime.now(UTC).replace(microsecond=0)
            )
            dependants: list[str] = []
            if revoked.kind == repo.IDENTITY:
                dependants = [
                    c.serial for c in repo.attribute_certificates_for_holder(session, serial)
                    if c.status != "revoked"
                ]
            append_in(
                session,
                [self._event("cert.revoke", outcome="ok", user=revoked.user, serial=serial,
                            details={"kind": revoked.kind, "reason": reason,
                                     "bound_attribute_certificates": dependants})],
            )
            return revoked

    def crls(self) -> tuple[x509.CertificateRevocationList, x509.CertificateRevocationList]:
        """A fresh identity CRL (signed by the root) and attribute CRL (signed by the AA)."""
        now = datetime.now(UTC).replace(microsecond=0)
        lists = []
        with self.installation.admin_write() as session:
            for name, kinds, cert, key, is_ac in (
                ("identity", [repo.IDENTITY, repo.SSH], self.root_certificate,
                 self.root_key, False),
                ("attribute", [repo.ATTRIBUTE], self.aa_certificate, self.aa_key, True),
            ):
                entries = [
                    revocation.RevokedEntry(
                        serial=parse_serial(c.serial),
                        revoked_at=c.revoked_at or now,
                        reason=revocation.parse_reason(c.revocation_reason or "unspecified"),
                    )
                    for c in repo.revoked_certificates(session, kinds)
                ]
                number = repo.next_crl_number(session, name)
                lists.append(
                    revocation.build_crl(
                        cert, key, entries, crl_number=number, this_update=now,
                        next_update=now + timedelta(days=7), attribute_certificates=is_ac,
                    )
                )
                append_in(session, [self._event("crl.issue", outcome="ok",
                                               details={"list": name, "number": number,
                                                        "entries": len(entries)})])
        return lists[0], lists[1]

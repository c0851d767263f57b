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

from ca import attribute_issuer, keys, revocation
from ca import authority as builders
from ca.attributes import AttributeSet
from ca.serials import format_serial, new_serial, parse_serial
from certgate.audit.chain import AuditEvent
from certgate.audit.log import append_in
from certgate.errors import CertgateError
from certgate.store import repositories as repo

if TYPE_CHECKING:
    from certgate.installation import Installation

SHORT_LIVED = timedelta(hours=24)
"""ACs valid at most this long carry noRevAvail instead of a CRL distribution point."""


def _no_valid_identity(user: str) -> CertgateError:
    return CertgateError(f"user {user} has no valid identity certificate")


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
            repo.bind_key(session, keys.spki_sha256(public_key), name, datetime.now(UTC))
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
            raise _no_valid_identity(user)
        return found

    # -- attribute certificates ---------------------------------------------------------------

    @staticmethod
    def _current_holder(session: Session, user: str, at: datetime) -> repo.Holder:
        found = repo.current_holder(session, user, at)
        if found is None:
            raise _no_valid_identity(user)
        return found

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
            holders: dict[str, repo.Holder] = {}
            for request in requests:
                holder_row = holders.get(request.user)
                if holder_row is None:
                    holder_row = holders[request.user] = self._current_holder(
                        session, request.user, issued_at
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
        holder_row: repo.Holder,
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

    # -- user lifecycle ------------------------------------------------------------------------

    def disable_user(self, name: str) -> repo.User:
        """Refuse every login of ``name`` from now on; gateways end their live sessions."""
        with self.installation.admin_write() as session:
            current = repo.get_user(session, name)
            if current.removed_at is not None:
                raise CertgateError(f"user {name} was removed; there is nothing to disable")
            if current.disabled_at is not None:
                raise CertgateError(f"user {name} is already disabled (since "
                                    f"{current.disabled_at.isoformat()})")
            user = repo.set_user_disabled(session, name, datetime.now(UTC))
            append_in(session, [self._event("user.disable", outcome="ok", user=name)])
        return user

    def enable_user(self, name: str) -> repo.User:
        with self.installation.admin_write() as session:
            current = repo.get_user(session, name)
            if current.removed_at is not None:
                raise CertgateError(f"user {name} was removed (its certificates are revoked); "
                                    "add a new user instead")
            if current.disabled_at is None:
                raise CertgateError(f"user {name} is not disabled")
            user = repo.set_user_disabled(session, name, None)
            append_in(session, [self._event("user.enable", outcome="ok", user=name)])
        return user

    def remove_user(self, name: str, *, reason: str = "cessationOfOperation"
                    ) -> tuple[repo.User, list[repo.IssuedCertificate]]:
        """Revoke every certificate ``name`` holds (identity, ACs, OpenSSH) and mark the
        user removed; rows and audit history stay."""
        revocation.parse_reason(reason)
        at = datetime.now(UTC).replace(microsecond=0)
        with self.installation.admin_write() as session:
            current = repo.get_user(session, name)
            if current.removed_at is not None:
                raise CertgateError(f"user {name} was already removed at "
                                    f"{current.removed_at.isoformat()}")
            revoked = [
                repo.revoke_certificate(session, cert.serial, reason=reason, at=at)
                for cert in repo.certificates_of(session, name) if cert.status != "revoked"
            ]
            user = repo.mark_user_removed(session, name, at)
            append_in(session, [self._event(
                "user.rm", outcome="ok", user=name,
                details={"reason": reason,
                         "revoked": [{"serial": c.serial, "kind": c.kind} for c in revoked]})])
        return user, revoked

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

"""Who may look at what: reviewers are certgate identities holding ``audit.review``.

A reviewer proves who they are with certgate's own credentials (a client TLS certificate
issued by the CA, or a sign-in link bound to one); what they may see is the set of VMs for
which the policy grants them ``audit.review``, given their attribute certificates, the
request's source address and the time. Rules select VMs by name or label, so a grant can be
limited to, say, ``env: lab``. Every request re-checks all of it: revoking the certificate,
an attribute certificate, or a policy change takes effect on the next page.

This is a thin adapter over the access core (``certgate.access``: identity, attribute
approval, policy); it decides nothing itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from certgate.access import AccessRefused, AccessService, Credential, Identity
from certgate.installation import Installation
from certgate.policy import REVIEW
from certgate.store import repositories as repo
from certgate.web.catalog import known_vm_names
from certgate.web.console_logs import logged_vms
from certgate.web.signin import TokenHolder

MTLS, LINK = "client certificate", "sign-in link"


class ReviewRefused(AccessRefused):
    """The person is known but holds no ``audit.review`` anywhere (or is not known)."""


@dataclass(frozen=True)
class Reviewer:
    user: str
    identity_serial: str
    not_after: datetime
    method: str
    vms: tuple[str, ...]
    """VM names whose sessions, recordings, events and console logs this reviewer may see."""

    def may_see(self, vm: str) -> bool:
        return vm in self.vms


class ReviewerAccess:
    def __init__(self, installation: Installation,
                 access: AccessService | None = None) -> None:
        self.installation = installation
        self.access = access or AccessService(installation)

    def by_client_certificate(self, der: bytes, source: str | None) -> Reviewer:
        """The reviewer whose identity certificate the TLS client presented."""
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise ReviewRefused("the client certificate cannot be parsed") from None
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        credential = Credential("x509", hashlib.sha256(spki).hexdigest(),
                                f"x509:{cert.serial_number:x}", x509_der=der)
        identity = self.access.identify(credential)
        return self._reviewer(identity, source, MTLS)

    def by_token(self, holder: TokenHolder, source: str | None) -> Reviewer:
        """The reviewer a sign-in link or browser session was issued to, if still valid."""
        with self.installation.database.read() as session:
            row = repo.get_certificate(session, holder.identity_serial)
        identity = Identity(holder.user, holder.identity_serial, row.not_after,
                            Credential("link", "", f"link:{holder.identity_serial}"))
        problem = self.access.identity_still_valid(identity)
        if problem:
            raise ReviewRefused(problem)
        return self._reviewer(identity, source, LINK)

    def identity_for_link(self, identity: Identity, source: str | None) -> Reviewer:
        """Used by the gateway before it prints a sign-in link: refuse non-reviewers early."""
        return self._reviewer(identity, source, LINK)

    def _reviewer(self, identity: Identity, source: str | None, method: str) -> Reviewer:
        vms = self.review_scope(identity, source)
        if not vms:
            raise ReviewRefused(f"{identity.user} does not hold {REVIEW} for any VM")
        return Reviewer(identity.user, identity.serial, identity.not_after, method, vms)

    def review_scope(self, identity: Identity, source: str | None,
                     at: datetime | None = None) -> tuple[str, ...]:
        """VMs (in the fleet now, with recorded sessions, or with a console log) the policy
        lets ``identity`` review. A VM no longer in the fleet is judged by its name alone
        (no labels)."""
        names = [*known_vm_names(self.installation.database),
                 *logged_vms(self.installation.home.console_logs_dir)]
        return tuple(vm.name for vm, _ in self.access.reachable(
            identity, source, privilege=REVIEW, at=at, also=names))

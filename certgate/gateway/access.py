"""Who is this, what do they hold, may they reach this console: the gateway's decisions.

Identity comes only from the credential that passed SSH authentication (a key certified by
an identity certificate, or an OpenSSH certificate whose key id names one) and from the
store; the SSH login name never identifies anyone. Attributes come only from attribute
certificates that verify now (signature, holder, validity, targeting, revocation). The
decision itself is ``certgate.policy.decide``, a pure function of those.

Everything here is synchronous (the store is); the SSH server calls it from worker threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address

from cryptography import x509
from sqlalchemy.orm import Session

from ca import attribute_cert
from ca.attributes import AttributeSet, ClearanceLevel
from ca.errors import CAError, VerificationError
from ca.serials import format_serial, parse_serial
from ca.verify import verify_attribute_certificate, verify_identity_certificate
from certgate.errors import CertgateError
from certgate.firewall.policy_groups import groups_generation, policy_with_groups
from certgate.installation import Installation
from certgate.policy import (
    Decision,
    Policy,
    RequestContext,
    Subject,
    VMInfo,
    decide,
    reachable_vms,
)
from certgate.policy_cache import load_policy_cached
from certgate.store import repositories as repo

EMPTY_POLICY = Policy(rules=(), description="no policy applied: everything is denied")


class AccessRefused(CertgateError):
    """Authentication or authorisation failed; the message is safe to show the user."""


@dataclass(frozen=True)
class Credential:
    """What the client proved possession of during SSH authentication."""

    kind: str  # key | openssh-cert | x509
    key_fingerprint: str  # SHA-256 of the SubjectPublicKeyInfo of the authenticating key
    ssh_fingerprint: str  # SHA256:... as ssh-keygen shows it, for audit readers
    ssh_cert_blob: bytes | None = None
    x509_der: bytes | None = None


@dataclass(frozen=True)
class Identity:
    user: str
    serial: str
    not_after: datetime
    credential: Credential


@dataclass(frozen=True)
class Grant:
    """An access decision together with what it was based on."""

    identity: Identity
    vm: repo.VM | None
    attributes: AttributeSet
    attribute_serials: tuple[str, ...]
    rejected_attribute_certificates: tuple[str, ...]
    decision: Decision
    policy_version: int

    @property
    def allowed(self) -> bool:
        return self.decision.allowed


@dataclass
class _PolicyCache:
    version: int = -1
    policy: Policy = EMPTY_POLICY
    groups_generation: int = -1  # of the security groups a from_group policy was resolved with
    lock: threading.Lock = field(default_factory=threading.Lock)


def merge_attributes(sets: list[AttributeSet]) -> AttributeSet:
    """Union of roles, groups and grants; the highest clearance held."""
    clearances = [s.clearance for s in sets if s.clearance is not None]
    clearance: ClearanceLevel | None = max(clearances) if clearances else None
    return AttributeSet(
        roles=tuple(sorted({r for s in sets for r in s.roles})),
        groups=tuple(sorted({g for s in sets for g in s.groups})),
        clearance=clearance,
        grants=tuple(sorted({g for s in sets for g in s.grants})),
    )


def parse_source(address: str | None) -> IPv4Address | IPv6Address | None:
    if not address:
        return None
    try:
        return ip_address(address.split("%")[0])
    except ValueError:
        return None


class AccessService:
    """Identity, attributes and decisions for one installation."""

    def __init__(self, installation: Installation) -> None:
        self.installation = installation
        self.database = installation.database
        self.gateway_name = installation.config.gateway_name
        self.root = installation.root_certificate
        self.aa = installation.aa_certificate
        self._policy = _PolicyCache()
        self._parsed_acs: dict[str, attribute_cert.AttributeCertificate] = {}

    # -- identity -----------------------------------------------------------------------------

    def identify(self, credential: Credential, at: datetime | None = None) -> Identity:
        at = at or datetime.now(UTC)
        with self.database.read() as session:
            if credential.kind == "openssh-cert":
                candidates = [self._identity_for_ssh_cert(session, credential)]
            elif credential.kind == "x509":
                candidates = [self._identity_for_x509(session, credential)]
            else:
                candidates = repo.identities_for_key(session, credential.key_fingerprint)
                if not candidates:
                    raise AccessRefused(
                        f"no identity certificate is issued for key {credential.ssh_fingerprint}"
                    )
        problems: list[str] = []
        for row in sorted(candidates, key=lambda c: c.not_before, reverse=True):
            try:
                self._check_identity(row, at)
            except AccessRefused as exc:
                problems.append(str(exc))
                continue
            return Identity(row.user, row.serial, row.not_after, credential)
        raise AccessRefused("; ".join(problems))

    def _identity_for_ssh_cert(
        self, session: Session, credential: Credential
    ) -> repo.IssuedCertificate:
        """The identity an OpenSSH certificate was issued for, found by the exact blob.

        Matching the whole certificate against our records (rather than trusting its key id)
        means only certificates this installation issued and did not revoke are accepted.
        """
        ssh_row = self._identity_ssh_row(session, credential)
        if ssh_row is None:
            raise AccessRefused(
                f"OpenSSH certificate for key {credential.ssh_fingerprint} was not issued here"
            )
        if ssh_row.status == "revoked":
            raise AccessRefused(f"OpenSSH certificate {ssh_row.serial} is revoked")
        return repo.get_certificate(session, ssh_row.holder_serial or "")

    def _identity_for_x509(
        self, session: Session, credential: Credential
    ) -> repo.IssuedCertificate:
        """The presented X.509 certificate must be, byte for byte, one we issued."""
        refusal = AccessRefused("the X.509 certificate was not issued by this gateway's CA")
        try:
            cert = x509.load_der_x509_certificate(credential.x509_der or b"")
            row = repo.get_certificate(session, format_serial(cert.serial_number))
        except (ValueError, x509.InvalidVersion, CertgateError) as exc:
            raise refusal from exc
        if row.kind != repo.IDENTITY or row.der != credential.x509_der:
            raise refusal
        return row

    @staticmethod
    def _identity_ssh_row(
        session: Session, credential: Credential
    ) -> repo.IssuedCertificate | None:
        return next(
            (row for row in repo.ssh_certificates_for_key(session, credential.key_fingerprint)
             if row.der == credential.ssh_cert_blob),
            None,
        )

    def _check_identity(self, row: repo.IssuedCertificate, at: datetime) -> None:
        if row.status == "revoked":
            raise AccessRefused(f"identity certificate {row.serial} is revoked")
        cert = x509.load_der_x509_certificate(row.der)
        try:
            verify_identity_certificate(cert, self.root, at=at)
        except VerificationError as exc:
            raise AccessRefused(str(exc)) from exc

    def identity_still_valid(self, identity: Identity, at: datetime | None = None) -> str | None:
        """None while the identity holds; otherwise why it no longer does."""
        at = at or datetime.now(UTC)
        try:
            with self.database.read() as session:
                row = repo.get_certificate(session, identity.serial)
                if identity.credential.kind == "openssh-cert":
                    ssh_row = self._identity_ssh_row(session, identity.credential)
                    if ssh_row is None or ssh_row.status == "revoked":
                        return "the OpenSSH certificate was revoked"
                    if at >= ssh_row.not_after:
                        return f"OpenSSH certificate {ssh_row.serial} expired"
            self._check_identity(row, at)
        except (AccessRefused, CertgateError) as exc:
            return str(exc)
        return None

    # -- attributes ---------------------------------------------------------------------------

    def _parsed(self, row: repo.IssuedCertificate) -> attribute_cert.AttributeCertificate:
        parsed = self._parsed_acs.get(row.serial)
        if parsed is None:
            parsed = attribute_cert.parse_attribute_certificate(row.der)
            self._parsed_acs[row.serial] = parsed
        return parsed

    def attributes_for(
        self, identity: Identity, vm: str | None, at: datetime
    ) -> tuple[AttributeSet, tuple[str, ...], tuple[str, ...]]:
        """Approved attributes, the serials they came from, and why others were rejected."""
        return self._approve(self._holdings(identity, at), vm, at)

    def _holdings(
        self, identity: Identity, at: datetime
    ) -> tuple[repo.IssuedCertificate, list[repo.IssuedCertificate]]:
        """The identity's certificate row and its unexpired ACs: one read of the store."""
        with self.database.read() as session:
            holder = repo.get_certificate(session, identity.serial)
            rows = repo.attribute_certificates_for_holder(
                session, identity.serial, unexpired_at=at
            )
        return holder, rows

    def _approve(
        self,
        holdings: tuple[repo.IssuedCertificate, list[repo.IssuedCertificate]],
        vm: str | None,
        at: datetime,
    ) -> tuple[AttributeSet, tuple[str, ...], tuple[str, ...]]:
        holder, rows = holdings
        holder_cert = x509.load_der_x509_certificate(holder.der)
        approved: list[AttributeSet] = []
        serials: list[str] = []
        rejected: list[str] = []
        for row in rows:
            try:
                attrs = verify_attribute_certificate(
                    self._parsed(row),
                    aa_cert=self.aa,
                    root_cert=self.root,
                    holder_cert=holder_cert,
                    at=at,
                    gateway_name=self.gateway_name,
                    vm=vm,
                    revoked_serials={parse_serial(row.serial)} if row.status == "revoked"
                    else frozenset(),
                    holder_revoked=holder.status == "revoked",
                )
            except (VerificationError, CAError) as exc:
                rejected.append(f"{row.serial}: {exc}")
                continue
            approved.append(attrs)
            serials.append(row.serial)
        return merge_attributes(approved), tuple(serials), tuple(rejected)

    # -- policy -------------------------------------------------------------------------------

    def current_policy(self) -> tuple[int, Policy]:
        """The policy in force, with ``from_group`` sources resolved; cached per policy version
        and, for a policy that uses security groups, per groups generation."""
        cache = self._policy
        with self.database.read() as session:
            stored = repo.current_policy(session)
            if stored is None:
                return 0, EMPTY_POLICY
            # Only a policy that takes sources from security groups pays for this lookup.
            current = cache.version == stored.version and not cache.policy.source_groups
            generation = -1 if current else groups_generation(session)
        with cache.lock:
            if cache.version != stored.version or (
                    generation != -1 and generation != cache.groups_generation):
                policy = load_policy_cached(
                    stored.source, stored.source_name, self.installation.home.cache_dir)
                with self.database.read() as session:
                    cache.policy = policy_with_groups(session, policy)
                cache.version, cache.groups_generation = stored.version, generation
            return cache.version, cache.policy

    def decide(
        self, identity: Identity, vm_name: str, source: str | None, at: datetime | None = None
    ) -> Grant:
        at = at or datetime.now(UTC)
        with self.database.read() as session:
            vm = repo.find_vm(session, vm_name)
        version, policy = self.current_policy()
        if vm is None:
            raise AccessRefused(f"no VM named {vm_name}")
        attributes, serials, rejected = self.attributes_for(identity, vm.name, at)
        decision = decide(
            policy,
            Subject(identity.user, attributes),
            VMInfo(vm.name, vm.labels),
            RequestContext(parse_source(source), at),
        )
        return Grant(identity, vm, attributes, serials, rejected, decision, version)

    def reachable(
        self, identity: Identity, source: str | None, at: datetime | None = None
    ) -> list[tuple[repo.VM, Decision]]:
        at = at or datetime.now(UTC)
        with self.database.read() as session:
            vms = repo.list_vms(session)
        _, policy = self.current_policy()
        by_name = {vm.name: vm for vm in vms}
        result: list[tuple[repo.VM, Decision]] = []
        context = RequestContext(parse_source(source), at)
        holdings = self._holdings(identity, at)
        for vm in vms:
            attributes, _, _ = self._approve(holdings, vm.name, at)
            for info, decision in reachable_vms(
                policy, Subject(identity.user, attributes), [VMInfo(vm.name, vm.labels)], context
            ):
                result.append((by_name[info.name], decision))
        return result


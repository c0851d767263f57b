"""``AccessService``: the one place that decides who may do what, for one installation.

It reads the store (one snapshot per decision) and hands plain data to the pure parts:
``identification`` (is the identity good now?), ``approval`` (which ACs count here, now?)
and ``certgate.policy.decide`` (what does the policy grant?). The SSH gateway, ``policy
check``, ``attr verify``, ``whoami``, the VM listing and the live re-checks all come here.

Synchronous (the store is); the SSH server calls it from worker threads, so every cache is
thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from ca import attribute_cert
from ca.attributes import AttributeSet
from ca.serials import format_serial
from certgate.access.approval import (
    ParsedACs,
    TrustAnchors,
    VerifiedACs,
    approve_attribute_certificates,
    attributes_by_vm,
    judge_attribute_certificate,
)
from certgate.access.clock import SYSTEM_CLOCK, Clock
from certgate.access.identification import (
    VerifiedIdentities,
    identity_problem,
    ssh_certificate_problem,
)
from certgate.access.model import (
    EMPTY_APPROVAL,
    EMPTY_POLICY,
    AccessRefused,
    Approval,
    Credential,
    Grant,
    Identity,
    Rejection,
)
from certgate.access.snapshot import AccessSnapshot, FleetCache, read_snapshot, read_snapshots
from certgate.errors import CertgateError
from certgate.firewall.policy_groups import groups_generation, policy_with_groups
from certgate.policy import (
    VIEW,
    Decision,
    Policy,
    RequestContext,
    Subject,
    VMInfo,
    decide,
    reachable_vms,
)
from certgate.policy.boundaries import next_time_boundary
from certgate.policy_cache import load_policy_cached
from certgate.store import access_reads as reads
from certgate.store import records as repo
from certgate.store.sql import SQL

if TYPE_CHECKING:
    from certgate.installation import Installation

EXPIRED_LOOKBACK = timedelta(hours=24)
"""ACs that expired this recently still appear (as rejected, with their expiry) in decisions,
their audit events and explanations; older ones are history and are not read at all."""


def parse_source(address: str | None) -> IPv4Address | IPv6Address | None:
    if not address:
        return None
    try:
        return ip_address(address.split("%")[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class AttributeCheck:
    """The outcome of checking one AC (from anywhere: a file, another implementation)."""

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


class _PolicyCache:
    """One parsed Policy object per policy version (and, for a policy that takes sources from
    security groups, per groups generation), resolved inside the decision's snapshot."""

    def __init__(self) -> None:
        self.version = 0
        self.groups_generation = -1
        self.policy: Policy = EMPTY_POLICY
        self.lock = threading.Lock()

    def resolve(self, sql: SQL, snapshot: AccessSnapshot,
                cache_dir: Path | None) -> Policy:
        with self.lock:
            if snapshot.policy_version == 0:
                self.policy, self.version, self.groups_generation = EMPTY_POLICY, 0, -1
                return self.policy
            # Only a policy that takes sources from security groups pays for this lookup.
            current = self.version == snapshot.policy_version and not self.policy.source_groups
            generation = -1 if current else groups_generation(sql)
            if self.version != snapshot.policy_version or (
                    generation != -1 and generation != self.groups_generation):
                stored = snapshot.policy or reads.current_policy(sql)
                assert stored is not None
                policy = load_policy_cached(stored.source, stored.source_name, cache_dir)
                self.policy = policy_with_groups(sql, policy)
                self.version, self.groups_generation = snapshot.policy_version, generation
            return self.policy


class AccessService:
    """Identity, attributes and decisions for one installation."""

    def __init__(self, installation: Installation, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.database = installation.store
        self.clock = clock
        self.anchors = TrustAnchors(installation.root_certificate,
                                    installation.aa_certificate,
                                    installation.config.gateway_name)
        self.verified_acs = VerifiedACs()
        self._parsed = ParsedACs()
        self._identities = VerifiedIdentities()
        self._policy = _PolicyCache()
        self._fleet = FleetCache()
        self._fleet_infos: tuple[tuple[repo.VM, ...], dict[str, VMInfo]] = ((), {})
        self._policy_cache_dir: Path | None = installation.home.cache_dir
        self._holders: dict[str, tuple[bytes, x509.Certificate]] = {}
        self._holders_lock = threading.Lock()

    @property
    def gateway_name(self) -> str:
        return self.anchors.gateway_name

    # -- identify a credential ---------------------------------------------------------------

    def identify(self, credential: Credential, at: datetime | None = None) -> Identity:
        """Who presented ``credential``; AccessRefused (with the reason) if nobody valid."""
        at = at or self.clock.now()
        ssh_row: repo.IssuedCertificate | None = None
        with self.database.snapshot_sql() as sql:
            if credential.kind == "openssh-cert":
                ssh_row = next(
                    (row for row in reads.ssh_certificates_for_key(sql,
                                                                  credential.key_fingerprint)
                     if row.der == credential.ssh_cert_blob), None)
                if ssh_row is None:
                    raise AccessRefused(f"OpenSSH certificate for key "
                                        f"{credential.ssh_fingerprint} was not issued here")
                holder = reads.find_certificate(sql, ssh_row.holder_serial or "")
                candidates = [holder] if holder else []
            elif credential.kind == "x509":
                candidates = [self._x509_identity(sql, credential)]
            else:
                candidates = reads.identities_for_key(sql, credential.key_fingerprint)
                if not candidates:
                    raise AccessRefused(
                        f"no identity certificate is issued for key {credential.ssh_fingerprint}"
                    )
            disabled = reads.disabled_users(sql, {c.user for c in candidates})
        if ssh_row is not None:
            problem = ssh_certificate_problem(ssh_row, at)
            if problem:
                raise AccessRefused(problem)
        problems: list[str] = []
        for row in sorted(candidates, key=lambda c: c.not_before, reverse=True):
            problem = identity_problem(row, root=self.anchors.root, at=at,
                                       verified=self._identities,
                                       user_disabled=row.user in disabled)
            if problem:
                problems.append(problem)
                continue
            return Identity(row.user, row.serial, row.not_after, credential,
                            ssh_row.serial if ssh_row else None)
        raise AccessRefused("; ".join(problems) or "no valid identity certificate")

    @staticmethod
    def _x509_identity(sql: SQL, credential: Credential) -> repo.IssuedCertificate:
        """The presented X.509 certificate must be, byte for byte, one we issued."""
        refusal = AccessRefused("the X.509 certificate was not issued by this gateway's CA")
        try:
            cert = x509.load_der_x509_certificate(credential.x509_der or b"")
        except (ValueError, x509.InvalidVersion) as exc:
            raise refusal from exc
        row = reads.find_certificate(sql, format_serial(cert.serial_number))
        if row is None or row.kind != repo.IDENTITY or row.der != credential.x509_der:
            raise refusal
        return row

    def identity_of_user(self, user: str, at: datetime | None = None) -> Identity:
        """The identity ``user`` holds at ``at`` (their newest valid identity certificate),
        for decisions about a user rather than a login (``policy check``, web pages)."""
        at = at or self.clock.now()
        with self.database.read_sql() as sql:
            row = reads.current_identity(sql, user, at)
        if row is None:
            raise CertgateError(f"user {user} has no valid identity certificate")
        return Identity(user, row.serial, row.not_after,
                        Credential("key", row.key_fingerprint or "", "-"))

    # -- decide ----------------------------------------------------------------------------

    def _snapshot(self, identity: Identity, vm_names: list[str] | None,
                  at: datetime) -> AccessSnapshot:
        with self.database.snapshot_sql() as sql:
            snapshot = read_snapshot(
                sql, identity_serial=identity.serial,
                ssh_cert_serial=identity.ssh_cert_serial, vm_names=vm_names,
                acs_unexpired_at=at - EXPIRED_LOOKBACK,
                cached_policy_version=self._policy.version, fleet=self._fleet,
            )
            policy = self._policy.resolve(sql, snapshot, self._policy_cache_dir)
        return replace(snapshot, resolved_policy=policy)

    def _identity_problem(self, identity: Identity, snapshot: AccessSnapshot,
                          at: datetime) -> str | None:
        problem = identity_problem(snapshot.identity, root=self.anchors.root, at=at,
                                   verified=self._identities,
                                   user_disabled=snapshot.user_disabled)
        if problem is None and identity.ssh_cert_serial is not None:
            problem = ssh_certificate_problem(snapshot.ssh_certificate, at)
        return problem

    def _approve(self, snapshot: AccessSnapshot, vm: str | None, at: datetime) -> Approval:
        assert snapshot.identity is not None
        holder_cert = self._holder_certificate(snapshot.identity)
        return approve_attribute_certificates(
            snapshot.identity, holder_cert, snapshot.attribute_certificates,
            anchors=self.anchors, vm=vm, at=at, cache=self.verified_acs, parsed=self._parsed,
        )

    def _holder_certificate(self, row: repo.IssuedCertificate) -> x509.Certificate:
        with self._holders_lock:
            cached = self._holders.get(row.serial)
        if cached is not None and cached[0] == row.der:
            return cached[1]
        cert = x509.load_der_x509_certificate(row.der)
        with self._holders_lock:
            if len(self._holders) > 100_000:
                self._holders.clear()
            self._holders[row.serial] = (row.der, cert)
        return cert

    def _grant(self, identity: Identity, snapshot: AccessSnapshot, vm: repo.VM,
               source: str | None, at: datetime) -> Grant:
        policy = snapshot.resolved_policy or EMPTY_POLICY
        problem = self._identity_problem(identity, snapshot, at)
        if problem is not None:
            return Grant(identity, vm, EMPTY_APPROVAL,
                         Decision(False, frozenset(), (), (problem,)),
                         snapshot.policy_version, at, None, snapshot.change_counter)
        approval = self._approve(snapshot, vm.name, at)
        info = VMInfo(vm.name, vm.labels)
        decision = decide(policy, Subject(identity.user, approval.attributes), info,
                          RequestContext(parse_source(source), at))
        assert snapshot.identity is not None
        boundaries = [snapshot.identity.not_after, approval.valid_until,
                      next_time_boundary(policy, info, at)]
        if snapshot.ssh_certificate is not None:
            boundaries.append(snapshot.ssh_certificate.not_after)
        valid_until = min(b for b in boundaries if b is not None)
        return Grant(identity, vm, approval, decision, snapshot.policy_version, at,
                     valid_until, snapshot.change_counter)

    def decide(self, identity: Identity, vm_name: str, source: str | None,
               at: datetime | None = None) -> Grant:
        """May ``identity`` reach ``vm_name`` from ``source`` at ``at`` (default: now)?

        Raises AccessRefused only when there is no such VM; every other refusal is a Grant
        whose decision is denied, with the reasons.
        """
        at = at or self.clock.now()
        snapshot = self._snapshot(identity, [vm_name], at)
        if not snapshot.vms:
            raise AccessRefused(f"no VM named {vm_name}")
        return self._grant(identity, snapshot, snapshot.vms[0], source, at)

    def reachable(self, identity: Identity, source: str | None, *,
                  privilege: str = VIEW, at: datetime | None = None,
                  also: Iterable[str] = ()) -> list[tuple[repo.VM, Decision]]:
        """Every VM ``identity`` may use with ``privilege`` now, by name (one snapshot).

        ``also`` names VMs no longer in the fleet (say, with recorded sessions) that are
        judged by their name alone (no labels, no console)."""
        at = at or self.clock.now()
        snapshot = self._snapshot(identity, None, at)
        fleet = {vm.name for vm in snapshot.vms}
        gone = [repo.VM(name, "", {}, at) for name in sorted(set(also) - fleet)]
        vms = {vm.name: vm for vm in (*snapshot.vms, *gone)}
        if not vms or self._identity_problem(identity, snapshot, at) is not None:
            return []
        assert snapshot.identity is not None
        policy = snapshot.resolved_policy or EMPTY_POLICY
        context = RequestContext(parse_source(source), at)
        groups = attributes_by_vm(
            snapshot.identity, self._holder_certificate(snapshot.identity),
            snapshot.attribute_certificates, anchors=self.anchors, vm_names=vms, at=at,
            cache=self.verified_acs, parsed=self._parsed)
        # One listing per set of approved attributes (one in all, unless ACs name VMs):
        # the same decisions as ``decide`` per VM, without a grant per VM.
        infos = self._vm_infos(snapshot.vms)
        found = []
        for attributes, names in groups:
            infos_of = [infos.get(name) or VMInfo(name, vms[name].labels) for name in names]
            for info, decision in reachable_vms(policy, Subject(identity.user, attributes),
                                                infos_of, context):
                if privilege in decision.privileges:
                    found.append((vms[info.name], decision))
        found.sort(key=lambda pair: pair[0].name)
        return found

    def _vm_infos(self, vms: tuple[repo.VM, ...]) -> dict[str, VMInfo]:
        """What the policy sees of each VM of the fleet, built once per fleet read."""
        fleet, infos = self._fleet_infos
        if fleet is not vms:
            infos = {vm.name: VMInfo(vm.name, vm.labels) for vm in vms}
            self._fleet_infos = (vms, infos)
        return infos

    def identity_still_valid(self, identity: Identity,
                             at: datetime | None = None) -> str | None:
        """None while ``identity`` stands (certificate, OpenSSH certificate, user enabled);
        otherwise why not. For callers that hold an identity across requests (web pages)."""
        at = at or self.clock.now()
        return self._identity_problem(identity, self._snapshot(identity, [], at), at)

    def approval_at_gateway(self, identity: Identity, at: datetime | None = None) -> Approval:
        """The ACs that count at this gateway (any VM), for ``whoami``."""
        at = at or self.clock.now()
        snapshot = self._snapshot(identity, [], at)
        problem = self._identity_problem(identity, snapshot, at)
        if problem is not None:
            raise AccessRefused(problem)
        return self._approve(snapshot, None, at)

    def current_policy(self) -> tuple[int, Policy]:
        """The policy in force: its version and the parsed policy (security-group sources
        resolved), as the next decision will see it."""
        with self.database.snapshot_sql() as sql:
            version = reads.current_policy_number(sql)
            stored = reads.current_policy(sql) if version != self._policy.version else None
            snapshot = AccessSnapshot(None, None, (), (), version, stored)
            policy = self._policy.resolve(sql, snapshot, self._policy_cache_dir)
        return version, policy

    def may(self, user: str, privilege: str, vm_name: str, source: str | None,
            at: datetime | None = None) -> Grant:
        """May ``user`` (by name, through their current identity) do ``privilege`` on
        ``vm_name`` from ``source`` at ``at``? ``grant.permits(privilege)`` is the answer and
        ``explain(grant)`` the reasons."""
        at = at or self.clock.now()
        return self.decide(self.identity_of_user(user, at), vm_name, source, at)

    def redecide(self, sessions: Sequence[tuple[Grant, str | None, str]],
                 at: datetime | None = None) -> list[tuple[Grant | None, str | None]]:
        """``still_permitted`` for many live sessions from one snapshot: after a store
        change every live session is re-decided with a handful of queries in total."""
        at = at or self.clock.now()
        keys = [(g.identity.serial, g.identity.ssh_cert_serial) for g, _, _ in sessions]
        with self.database.snapshot_sql() as sql:
            snapshots = read_snapshots(sql, identities=keys,
                                       acs_unexpired_at=at - EXPIRED_LOOKBACK,
                                       cached_policy_version=self._policy.version,
                                       fleet=self._fleet)
            if snapshots:
                policy = self._policy.resolve(sql, next(iter(snapshots.values())),
                                              self._policy_cache_dir)
                snapshots = {k: replace(v, resolved_policy=policy)
                             for k, v in snapshots.items()}
        outcomes: list[tuple[Grant | None, str | None]] = []
        decided: dict[tuple[str | None, ...], Grant] = {}  # sessions that ask the same thing
        fleets: dict[int, dict[str, repo.VM]] = {}  # by id of the snapshot's VMs (one read)
        for (grant, source, privilege), key in zip(sessions, keys, strict=True):
            snapshot = snapshots[key]
            assert grant.vm is not None
            by_name = fleets.get(id(snapshot.vms))
            if by_name is None:
                by_name = fleets[id(snapshot.vms)] = {v.name: v for v in snapshot.vms}
            vm = by_name.get(grant.vm.name)
            if vm is None:
                outcomes.append((None, f"VM {grant.vm.name} was removed"))
                continue
            question = (*key, grant.identity.user, vm.name, source)
            fresh = decided.get(question)
            if fresh is None:
                fresh = decided[question] = self._grant(grant.identity, snapshot, vm, source,
                                                        at)
            outcomes.append((fresh, None) if fresh.permits(privilege)
                            else (fresh, withdrawal_reason(grant, fresh)))
        return outcomes

    def still_permitted(self, grant: Grant, source: str | None, privilege: str,
                        at: datetime | None = None) -> tuple[Grant | None, str | None]:
        """Re-decide a live session: (the new grant, None) while ``privilege`` holds, else
        (the new grant or None, why access ended), naming the certificate that changed."""
        assert grant.vm is not None
        try:
            fresh = self.decide(grant.identity, grant.vm.name, source, at)
        except AccessRefused as exc:
            return None, f"VM {grant.vm.name} was removed" if "no VM named" in str(exc) \
                else str(exc)
        if fresh.permits(privilege):
            return fresh, None
        return fresh, withdrawal_reason(grant, fresh)

    # -- a certificate from outside ------------------------------------------------------------

    def check_attribute_certificate(self, data: bytes, *, vm: str | None = None,
                                    at: datetime | None = None) -> AttributeCheck:
        """Check an AC (a file, another implementation's) against this installation."""
        at = at or self.clock.now()
        ac = attribute_cert.parse_attribute_certificate(data)
        serial, holder_serial = format_serial(ac.serial), format_serial(ac.holder_serial)
        with self.database.snapshot_sql() as sql:
            holder_row = reads.find_certificate(sql, holder_serial)
            stored = reads.find_certificate(sql, serial)
        error: str | None = None
        attributes: AttributeSet | None = ac.attributes
        if holder_row is None or holder_row.kind != repo.IDENTITY:
            error = f"holder {holder_serial} is not an identity certificate issued here"
        else:
            outcome = judge_attribute_certificate(
                ac, holder_cert=x509.load_der_x509_certificate(holder_row.der),
                anchors=self.anchors, vm=vm, at=at,
                revoked=stored is not None and stored.status == "revoked",
                revoked_reason=stored.revocation_reason if stored else None,
                holder_revoked=holder_row.status == "revoked",
                holder_revoked_reason=holder_row.revocation_reason,
            )
            if isinstance(outcome, Rejection):
                error = outcome.message
            else:
                attributes = outcome
        return AttributeCheck(
            serial=serial, holder_serial=holder_serial,
            holder_user=holder_row.user if holder_row else None,
            attributes=attributes, targets=ac.target_gateways + ac.target_vms,
            not_before=ac.not_before, not_after=ac.not_after, error=error,
        )


def withdrawal_reason(before: Grant, after: Grant) -> str:
    """Why a live session lost access, naming what changed when a certificate did."""
    if after.approval is EMPTY_APPROVAL and after.decision.reasons:
        return after.decision.reasons[0]
    lost = [r for r in after.approval.rejected if r.serial in before.attribute_serials]
    if lost:
        return "; ".join(str(r) for r in lost)
    return "access withdrawn: " + "; ".join(after.decision.reasons or ("policy",))

"""One read of the store per decision: everything a decision looks at, from one transaction.

Reading identity, ACs, revocations, VMs and the policy version in one transaction means a
decision never mixes a revocation committed between two reads with the state before it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from certgate.policy import Policy
from certgate.store import repositories as repo


@dataclass(frozen=True)
class AccessSnapshot:
    identity: repo.IssuedCertificate | None
    ssh_certificate: repo.IssuedCertificate | None
    attribute_certificates: tuple[repo.IssuedCertificate, ...]
    vms: tuple[repo.VM, ...]
    policy_version: int
    policy: repo.PolicyVersion | None
    """The policy's source, read only when the caller does not hold ``policy_version``."""
    user_disabled: bool = False
    change_counter: int = 0
    resolved_policy: Policy | None = None
    """The policy in force, parsed (and security-group sources resolved) in this snapshot."""


class FleetCache:
    """Every VM, as read at one value of the store's change counter.

    Why: reading 10k VM rows costs ~100x more than deciding on them. Every write that changes
    a VM moves the counter in its transaction (``mark_changed``), so while the counter read in
    a snapshot's transaction is the one the rows were read at, the rows are still those: a
    snapshot then reuses them, and stays consistent (counter and rows from one state).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counter = -1
        self._vms: tuple[repo.VM, ...] = ()

    def vms(self, session: Session, counter: int) -> tuple[repo.VM, ...]:
        """Every VM as of ``counter``, which ``session``'s transaction has just read."""
        with self._lock:
            if counter == self._counter:
                return self._vms
        vms = tuple(repo.list_vms(session))
        with self._lock:
            self._counter, self._vms = counter, vms
        return vms


def _every_vm(session: Session, counter: int, fleet: FleetCache | None) -> tuple[repo.VM, ...]:
    return fleet.vms(session, counter) if fleet is not None else tuple(repo.list_vms(session))


def read_snapshot(
    session: Session,
    *,
    identity_serial: str,
    ssh_cert_serial: str | None,
    vm_names: Sequence[str] | None,
    acs_unexpired_at: datetime,
    cached_policy_version: int,
    fleet: FleetCache | None = None,
) -> AccessSnapshot:
    """Read in ``session`` (one transaction); ``vm_names`` None means every VM (through
    ``fleet`` when given)."""
    counter = repo.change_counter(session)
    identity = repo.find_certificate(session, identity_serial)
    ssh_certificate = (repo.find_certificate(session, ssh_cert_serial)
                       if ssh_cert_serial else None)
    acs = repo.attribute_certificates_for_holder(
        session, identity_serial, unexpired_at=acs_unexpired_at)
    if vm_names is None:
        vms = _every_vm(session, counter, fleet)
    else:
        vms = tuple(vm for vm in (repo.find_vm(session, name) for name in vm_names) if vm)
    version = repo.current_policy_number(session)
    policy = repo.current_policy(session) if version != cached_policy_version else None
    disabled = bool(identity and repo.disabled_users(session, [identity.user]))
    return AccessSnapshot(identity, ssh_certificate, tuple(acs), vms, version, policy,
                          disabled, counter)


def read_snapshots(
    session: Session,
    *,
    identities: Sequence[tuple[str, str | None]],
    acs_unexpired_at: datetime,
    cached_policy_version: int,
    fleet: FleetCache | None = None,
) -> dict[tuple[str, str | None], AccessSnapshot]:
    """Snapshots for many identities (serial, OpenSSH certificate serial) from one
    transaction and a handful of queries: the re-check of every live session after a change.
    Each holds every VM (through ``fleet`` when given)."""
    counter = repo.change_counter(session)
    serials = {serial for serial, _ in identities} | {ssh for _, ssh in identities if ssh}
    certificates = repo.certificates_by_serial(session, serials)
    acs = repo.attribute_certificates_for_holders(
        session, {serial for serial, _ in identities}, unexpired_at=acs_unexpired_at)
    vms = _every_vm(session, counter, fleet)
    version = repo.current_policy_number(session)
    policy = repo.current_policy(session) if version != cached_policy_version else None
    disabled = repo.disabled_users(session, {c.user for c in certificates.values()})
    snapshots = {}
    for serial, ssh in identities:
        identity = certificates.get(serial)
        snapshots[(serial, ssh)] = AccessSnapshot(
            identity, certificates.get(ssh) if ssh else None, tuple(acs.get(serial, ())), vms,
            version, policy, bool(identity and identity.user in disabled), counter)
    return snapshots

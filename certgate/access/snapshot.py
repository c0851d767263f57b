"""One read of the store per decision: everything a decision looks at, from one transaction.

Reading identity, ACs, revocations, VMs and the policy version in one transaction means a
decision never mixes a revocation committed between two reads with the state before it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from certgate.policy import Policy
from certgate.store import access_reads as reads
from certgate.store import records as repo
from certgate.store.sql import SQL


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

    def vms(self, sql: SQL, counter: int) -> tuple[repo.VM, ...]:
        """Every VM as of ``counter``, which ``sql``'s transaction has just read."""
        with self._lock:
            if counter == self._counter:
                return self._vms
        vms = tuple(reads.list_vms(sql))
        with self._lock:
            self._counter, self._vms = counter, vms
        return vms


def _every_vm(sql: SQL, counter: int, fleet: FleetCache | None) -> tuple[repo.VM, ...]:
    return fleet.vms(sql, counter) if fleet is not None else tuple(reads.list_vms(sql))


def read_snapshot(
    sql: SQL,
    *,
    identity_serial: str,
    ssh_cert_serial: str | None,
    vm_names: Sequence[str] | None,
    acs_unexpired_at: datetime,
    cached_policy_version: int,
    fleet: FleetCache | None = None,
) -> AccessSnapshot:
    """Read in ``sql`` (one transaction); ``vm_names`` None means every VM (through
    ``fleet`` when given)."""
    counter = reads.change_counter(sql)
    identity = reads.find_certificate(sql, identity_serial)
    ssh_certificate = (reads.find_certificate(sql, ssh_cert_serial)
                       if ssh_cert_serial else None)
    acs = reads.attribute_certificates_for_holder(
        sql, identity_serial, unexpired_at=acs_unexpired_at)
    if vm_names is None:
        vms = _every_vm(sql, counter, fleet)
    else:
        vms = tuple(vm for vm in (reads.find_vm(sql, name) for name in vm_names) if vm)
    version = reads.current_policy_number(sql)
    policy = reads.current_policy(sql) if version != cached_policy_version else None
    disabled = bool(identity and reads.disabled_users(sql, [identity.user]))
    return AccessSnapshot(identity, ssh_certificate, tuple(acs), vms, version, policy,
                          disabled, counter)


def read_snapshots(
    sql: SQL,
    *,
    identities: Sequence[tuple[str, str | None]],
    acs_unexpired_at: datetime,
    cached_policy_version: int,
    fleet: FleetCache | None = None,
) -> dict[tuple[str, str | None], AccessSnapshot]:
    """Snapshots for many identities (serial, OpenSSH certificate serial) from one
    transaction and a handful of queries: the re-check of every live session after a change.
    Each holds every VM (through ``fleet`` when given)."""
    counter = reads.change_counter(sql)
    serials = {serial for serial, _ in identities} | {ssh for _, ssh in identities if ssh}
    certificates = reads.certificates_by_serial(sql, serials)
    acs = reads.attribute_certificates_for_holders(
        sql, {serial for serial, _ in identities}, unexpired_at=acs_unexpired_at)
    vms = _every_vm(sql, counter, fleet)
    version = reads.current_policy_number(sql)
    policy = reads.current_policy(sql) if version != cached_policy_version else None
    disabled = reads.disabled_users(sql, {c.user for c in certificates.values()})
    snapshots = {}
    for serial, ssh in identities:
        identity = certificates.get(serial)
        snapshots[(serial, ssh)] = AccessSnapshot(
            identity, certificates.get(ssh) if ssh else None, tuple(acs.get(serial, ())), vms,
            version, policy, bool(identity and identity.user in disabled), counter)
    return snapshots

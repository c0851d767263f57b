"""One read of the store per decision: everything a decision looks at, from one transaction.

Reading identity, ACs, revocations, VMs and the policy version in one transaction means a
decision never mixes a revocation committed between two reads with the state before it.
"""

from __future__ import annotations

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


def read_snapshot(
    session: Session,
    *,
    identity_serial: str,
    ssh_cert_serial: str | None,
    vm_names: Sequence[str] | None,
    acs_unexpired_at: datetime,
    cached_policy_version: int,
) -> AccessSnapshot:
    """Read in ``session`` (one transaction); ``vm_names`` None means every VM."""
    identity = repo.find_certificate(session, identity_serial)
    ssh_certificate = (repo.find_certificate(session, ssh_cert_serial)
                       if ssh_cert_serial else None)
    acs = repo.attribute_certificates_for_holder(
        session, identity_serial, unexpired_at=acs_unexpired_at)
    if vm_names is None:
        vms = repo.list_vms(session)
    else:
        vms = [vm for vm in (repo.find_vm(session, name) for name in vm_names) if vm]
    version = repo.current_policy_number(session)
    policy = repo.current_policy(session) if version != cached_policy_version else None
    disabled = bool(identity and repo.disabled_users(session, [identity.user]))
    return AccessSnapshot(identity, ssh_certificate, tuple(acs), tuple(vms), version, policy,
                          disabled, repo.change_counter(session))


def read_snapshots(
    session: Session,
    *,
    identities: Sequence[tuple[str, str | None]],
    acs_unexpired_at: datetime,
    cached_policy_version: int,
) -> dict[tuple[str, str | None], AccessSnapshot]:
    """Snapshots for many identities (serial, OpenSSH certificate serial) from one
    transaction and a handful of queries: the re-check of every live session after a change.
    Each holds every VM."""
    serials = {serial for serial, _ in identities} | {ssh for _, ssh in identities if ssh}
    certificates = repo.certificates_by_serial(session, serials)
    acs = repo.attribute_certificates_for_holders(
        session, {serial for serial, _ in identities}, unexpired_at=acs_unexpired_at)
    vms = tuple(repo.list_vms(session))
    version = repo.current_policy_number(session)
    policy = repo.current_policy(session) if version != cached_policy_version else None
    disabled = repo.disabled_users(session, {c.user for c in certificates.values()})
    counter = repo.change_counter(session)
    snapshots = {}
    for serial, ssh in identities:
        identity = certificates.get(serial)
        snapshots[(serial, ssh)] = AccessSnapshot(
            identity, certificates.get(ssh) if ssh else None, tuple(acs.get(serial, ())), vms,
            version, policy, bool(identity and identity.user in disabled), counter)
    return snapshots

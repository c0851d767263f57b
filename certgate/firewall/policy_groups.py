"""Where policies meet security groups: ``when: from_group`` resolved from the store.

The gateway calls ``policy_with_groups`` when it (re)loads the policy in force and keys its
cache on ``groups_generation``, so a decision never reads the groups itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from certgate.errors import ConflictError
from certgate.policy import Policy, PolicyError
from certgate.policy.source_groups import resolve_source_groups
from certgate.store import access_reads
from certgate.store.sql import SQL

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def groups_generation(sql: SQL) -> int:
    return access_reads.security_groups_generation(sql)


def policy_with_groups(sql: SQL, policy: Policy) -> Policy:
    names = sorted(policy.source_groups)
    if not names:
        return policy
    # The groups' model is loaded only for a policy that uses them (``policy check`` time).
    from certgate.store import secgroup_reads

    return resolve_source_groups(policy, secgroup_reads.source_whitelists(sql, names))


def check_policy_groups(session: Session, policy: Policy) -> None:
    """Refuse a policy that names a security group that does not exist."""
    from certgate.store import secgroup_repository as repo

    names = sorted(policy.source_groups)
    if not names:
        return
    known = set(repo.group_names(session))
    for rule in policy.rules:
        for group in rule.source_groups:
            if group not in known:
                loc = rule.location
                raise PolicyError(loc.file, loc.line, loc.column, f"rule {rule.name}",
                                  f"from_group: unknown security group {group!r}")


def check_group_unused_by_policy(policy: Policy | None, group: str) -> None:
    if policy is None:
        return
    users = [r.name for r in policy.rules if group in r.source_groups]
    if users:
        raise ConflictError(f"security group {group} is the source whitelist of policy "
                            f"rule(s) {', '.join(users)} (change the policy first)")

"""Filling in the networks of the security groups that policy rules take sources from.

Done once where a policy is loaded for use (not per decision): the gateway passes the groups'
ingress whitelists, read from the store, and gets back a policy whose rules carry them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from ipaddress import IPv4Network, IPv6Network

from certgate.policy.model import EVERYWHERE, Policy

Network = IPv4Network | IPv6Network


def resolve_source_groups(policy: Policy, whitelists: Mapping[str, Sequence[Network]]) -> Policy:
    """``policy`` with each rule's ``group_cidrs`` set from ``whitelists``.

    A group missing from ``whitelists`` (removed since the policy was applied) admits nobody
    to an allow rule and everybody to a deny rule, so its absence never widens access.
    """
    if not policy.source_groups:
        return policy
    rules = []
    for rule in policy.rules:
        if not rule.source_groups:
            rules.append(rule)
            continue
        networks: list[Network] = []
        for group in rule.source_groups:
            if group in whitelists:
                networks.extend(whitelists[group])
            elif rule.effect == "deny":
                networks.extend(EVERYWHERE)
        rules.append(replace(rule, group_cidrs=tuple(dict.fromkeys(networks))))
    return replace(policy, rules=tuple(rules))

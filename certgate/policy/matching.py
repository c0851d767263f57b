"""Does one rule apply? Each check returns the reasons it fails (empty when it holds)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from fnmatch import fnmatchcase
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from zoneinfo import ZoneInfo

from ca.attributes import AttributeSet
from certgate.policy.model import Rule, TimeWindow, clearance_name
from certgate.policy.values import format_days, format_hours


def selects(rule: Rule, name: str, labels: Mapping[str, str]) -> bool:
    """Whether ``rule`` is about the VM: a name glob matches and every label pair is present.

    Globs are ``fnmatch`` patterns (``*``, ``?``, ``[a-c]``), matched case-sensitively.
    """
    if rule.vm_names and not any(fnmatchcase(name, pattern) for pattern in rule.vm_names):
        return False
    return all(labels.get(k) == v for k, v in rule.vm_labels.items())


def _listing(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(values) + "]"


def holder_failures(rule: Rule, identity: str, attributes: AttributeSet) -> list[str]:
    """Why the holder does not meet the rule's ``require`` block."""
    failures = []
    if rule.has_principals:
        is_named = identity in rule.users
        has_role = bool(set(rule.any_roles) & set(attributes.roles))
        has_group = bool(set(rule.any_groups) & set(attributes.groups))
        if not (is_named or has_role or has_group):
            wanted = (
                [f"user {u}" for u in rule.users]
                + [f"role {r}" for r in rule.any_roles]
                + [f"group {g}" for g in rule.any_groups]
            )
            failures.append(
                f"requires {' or '.join(wanted)}; holder {identity} has roles "
                f"{_listing(attributes.roles)} groups {_listing(attributes.groups)}"
            )
    if rule.min_clearance is not None:
        held = attributes.clearance
        if held is None or held < rule.min_clearance:
            has = "no clearance" if held is None else f"clearance {clearance_name(held)}"
            failures.append(
                f"requires clearance at least {clearance_name(rule.min_clearance)}; "
                f"holder has {has}"
            )
    missing = [g for g in rule.grants if g not in attributes.grants]
    if missing:
        failures.append(
            f"requires grants {_listing(rule.grants)}; holder lacks {_listing(missing)}"
        )
    return failures


def source_failures(
    rule: Rule, address: IPv4Address | IPv6Address | None, *, unknown_matches: bool
) -> list[str]:
    """Why the source address is outside the rule's whitelist.

    An unknown address (``None``) matches only when ``unknown_matches`` -- the evaluator passes
    False for allow rules and True for deny rules, so not knowing the source fails closed.
    """
    if rule_source_matches(rule, address, unknown_matches=unknown_matches):
        return []
    networks = rule.effective_sources
    whitelist = _listing([str(n) for n in networks]) if networks else "(empty)"
    if rule.source_groups:
        whitelist = f"{whitelist} (security group(s) {_listing(list(rule.source_groups))})"
    if address is None:
        return [f"source address unknown; whitelist {whitelist}"]
    return [f"source {address} not in whitelist {whitelist}"]


def rule_source_matches(
    rule: Rule, address: IPv4Address | IPv6Address | None, *, unknown_matches: bool
) -> bool:
    """Whether ``address`` is in the rule's whitelist: its CIDRs and its security groups'.

    A rule with security groups whose whitelist is empty matches no known address.
    """
    if not rule.source_groups:
        return source_matches(rule.source_cidrs, address, unknown_matches=unknown_matches)
    networks = rule.effective_sources
    if address is None:
        return unknown_matches
    return bool(networks) and source_matches(networks, address, unknown_matches=unknown_matches)


def source_matches(
    networks: tuple[IPv4Network | IPv6Network, ...],
    address: IPv4Address | IPv6Address | None,
    *,
    unknown_matches: bool,
) -> bool:
    """Whether ``address`` is in the whitelist ``networks`` (empty: any source).

    An IPv4-mapped IPv6 address also matches the IPv4 networks that hold its IPv4 form.
    """
    if not networks:
        return True
    if address is None:
        return unknown_matches
    candidates: list[IPv4Address | IPv6Address] = [address]
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        c.version == network.version and c in network for network in networks for c in candidates
    )


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def window_contains(window: TimeWindow, at: datetime) -> bool:
    """Whether the aware instant ``at`` falls in ``window`` (wall clock in its timezone)."""
    local = at.astimezone(_zone(window.timezone))
    minute = local.hour * 60 + local.minute + local.second / 60
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    if not window.crosses_midnight:
        return today in window.days and window.start_minute <= minute < window.end_minute
    return (today in window.days and minute >= window.start_minute) or (
        yesterday in window.days and minute < window.end_minute
    )


def time_matches(windows: tuple[TimeWindow, ...], at: datetime) -> bool:
    """Whether ``at`` falls in any of ``windows`` (empty: any time)."""
    return not windows or any(window_contains(w, at) for w in windows)


def describe_window(window: TimeWindow) -> str:
    return (
        f"{format_days(window.days)} {format_hours(window.start_minute, window.end_minute)} "
        f"{window.timezone}"
    )


def time_failures(rule: Rule, at: datetime) -> list[str]:
    """Why ``at`` is outside all of the rule's time windows."""
    if time_matches(rule.time_windows, at):
        return []
    windows = _listing([describe_window(w) for w in rule.time_windows])
    now = at.astimezone(_zone(rule.time_windows[0].timezone))
    return [f"{now:%a %H:%M} {rule.time_windows[0].timezone} is outside time windows {windows}"]

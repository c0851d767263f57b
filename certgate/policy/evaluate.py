"""The decision: may this holder reach this VM's console now, and with which privileges?

Pure: every input is plain data, nothing is read from disk, the clock or the network.
Default deny; allow rules union their privileges; matching deny rules withdraw privileges
(all of them when they list none) and always win over allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address

from ca.attributes import AttributeSet
from certgate.policy.matching import holder_failures, selects, source_failures, time_failures
from certgate.policy.model import (
    ALL_PRIVILEGES,
    Policy,
    Rule,
    implied_privileges,
    privileges_withdrawn_by,
    sorted_privileges,
)
from certgate.policy.values import format_duration


@dataclass(frozen=True)
class VMInfo:
    """What the policy may look at about a VM: its name and labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Subject:
    """The holder: identity from the identity certificate, attributes from the attribute cert."""

    identity: str
    attributes: AttributeSet = field(default_factory=AttributeSet)


@dataclass(frozen=True)
class RequestContext:
    """Where and when the request comes from. ``source_address`` None means unknown."""

    source_address: IPv4Address | IPv6Address | None
    at: datetime

    def __post_init__(self) -> None:
        _require_aware(self.at)


def _require_aware(at: object) -> None:
    if not isinstance(at, datetime):
        raise ValueError(f"RequestContext.at must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("RequestContext.at must be timezone-aware (naive datetime given)")


@dataclass(frozen=True)
class Decision:
    """The outcome of ``decide``. ``privileges`` is closed under implication."""

    allowed: bool
    privileges: frozenset[str]
    matched_rules: tuple[str, ...]
    reasons: tuple[str, ...]
    max_session: timedelta | None = None
    idle_timeout: timedelta | None = None
    record_input: bool = False
    observer: str | None = None
    """Set when the session is moderated: the attribute an observer must hold."""
    on_observer_leave: str = "pause"

    def explain(self) -> str:
        """Human-readable account of the decision, one reason per line."""
        if not self.allowed:
            return "\n".join(["denied:", *(f" - {r}" for r in self.reasons)])
        lines = list(self.reasons)
        limits = []
        if self.max_session is not None:
            limits.append(f"max {format_duration(self.max_session)}")
        if self.idle_timeout is not None:
            limits.append(f"idle {format_duration(self.idle_timeout)}")
        if self.record_input:
            limits.append("keystrokes recorded")
        if self.observer is not None:
            limits.append(f"moderated: needs an observer with {self.observer} "
                          f"({self.on_observer_leave} if the observer leaves)")
        if limits:
            lines.append(f"session: {', '.join(limits)}")
        return "\n".join(lines)


def _privilege_list(privileges: Iterable[str]) -> str:
    return ", ".join(sorted_privileges(privileges))


def _strictest(values: Iterable[timedelta | None]) -> timedelta | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def decide(policy: Policy, subject: Subject, vm: VMInfo, context: RequestContext) -> Decision:
    """Evaluate ``policy`` for one holder, one VM, one request."""
    _require_aware(context.at)
    allows: list[Rule] = []
    denies: list[Rule] = []
    failures: list[str] = []
    any_allow_selects = False
    for rule in policy.rules:
        if not selects(rule, vm.name, vm.labels):
            continue
        is_deny = rule.effect == "deny"
        any_allow_selects = any_allow_selects or not is_deny
        problems = (
            holder_failures(rule, subject.identity, subject.attributes)
            + source_failures(rule, context.source_address, unknown_matches=is_deny)
            + time_failures(rule, context.at)
        )
        if problems:
            if not is_deny:
                failures.extend(f"rule {rule.name}: {problem}" for problem in problems)
        else:
            (denies if is_deny else allows).append(rule)

    granted = implied_privileges(p for rule in allows for p in rule.privileges)
    reasons = [
        f"allowed by rule {r.name} ({r.location}): "
        f"{_privilege_list(implied_privileges(r.privileges))}"
        for r in allows
    ]
    remaining = granted
    for rule in denies:
        withdrawn = privileges_withdrawn_by(rule.privileges or ALL_PRIVILEGES)
        if withdrawn == ALL_PRIVILEGES:
            reasons.append(f"denied by rule {rule.name} ({rule.location})")
        else:
            reasons.append(
                f"withdrawn by rule {rule.name} ({rule.location}): {_privilege_list(withdrawn)}"
            )
        remaining = remaining - withdrawn
    if not any_allow_selects:
        reasons.append(f"no allow rule selects {vm.name}")
    matched_names = {r.name for r in allows} | {r.name for r in denies}
    matched = tuple(r.name for r in policy.rules if r.name in matched_names)
    if not remaining:
        return Decision(False, frozenset(), matched, tuple(reasons + failures))
    return Decision(
        allowed=True,
        privileges=remaining,
        matched_rules=matched,
        reasons=tuple(reasons),
        max_session=_strictest(r.max_session for r in allows),
        idle_timeout=_strictest(r.idle_timeout for r in allows),
        record_input=any(r.record_input for r in allows),
        **_moderation(allows),
    )


def _moderation(allows: list[Rule]) -> dict[str, str]:
    """The first moderated rule among those that allowed, in file order: a moderated rule
    cannot be escaped by also matching an unmoderated one."""
    moderated = next((r for r in allows if r.observer is not None), None)
    if moderated is None or moderated.observer is None:
        return {}
    return {"observer": moderated.observer, "on_observer_leave": moderated.on_observer_leave}


def console_write_mode(policy: Policy, vm: VMInfo) -> str:
    """The console's write mode: ``exclusive`` when any allow rule selecting it says so.

    A property of the console rather than of one holder's decision, so everyone on it
    plays by the same rule however they were let in.
    """
    for rule in policy.rules:
        if (rule.effect == "allow" and rule.write_mode == "exclusive"
                and selects(rule, vm.name, vm.labels)):
            return "exclusive"
    return "shared"


def subject_tags(subject: Subject) -> frozenset[str]:
    """What an observer requirement (``role=security``) is matched against."""
    attributes = subject.attributes
    tags = {f"user={subject.identity}"}
    tags.update(f"role={r}" for r in attributes.roles)
    tags.update(f"group={g}" for g in attributes.groups)
    tags.update(f"grant={g}" for g in attributes.grants)
    return frozenset(tags)


def reachable_vms(
    policy: Policy, subject: Subject, vms: Iterable[VMInfo], context: RequestContext
) -> list[tuple[VMInfo, Decision]]:
    """The VMs ``subject`` may reach now, with their decisions, sorted by VM name."""
    decisions = ((vm, decide(policy, subject, vm, context)) for vm in vms)
    return sorted(((vm, d) for vm, d in decisions if d.allowed), key=lambda pair: pair[0].name)

"""The decision: may this holder reach this VM's console now, and with which privileges?

Pure: every input is plain data, nothing is read from disk, the clock or the network.
Default deny; allow rules union their privileges; matching deny rules withdraw privileges
(all of them when they list none) and always win over allows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

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
    """The outcome of ``decide``. ``privileges`` is closed under implication.

    A refusal from the compiled index carries its ``reasons`` unwritten (``refused``): they
    explain every selecting rule that failed, which costs more than the decision itself, and
    most refusals (listings, probes, re-checks) are never explained. They are written on first
    read (``reasons``, ``explain()``, equality, ``repr``), always the same lines, so a lazy
    refusal and an eager one are indistinguishable to every caller.
    """

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

    @classmethod
    def refused(cls, matched_rules: tuple[str, ...],
                reasons: Callable[[], tuple[str, ...]]) -> Decision:
        """A refusal whose reasons are written by ``reasons()`` when first read."""
        decision = cls.__new__(cls)
        for name, value in (("allowed", False), ("privileges", frozenset()),
                            ("matched_rules", matched_rules), ("_write_reasons", reasons)):
            object.__setattr__(decision, name, value)
        return decision

    if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute

        def __getattr__(self, name: str) -> Any:
            # Called only for attributes not set: ``reasons`` of a refusal made by ``refused``.
            write = self.__dict__.get("_write_reasons") if name == "reasons" else None
            if write is None:
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}")
            reasons = tuple(write())
            object.__setattr__(self, "reasons", reasons)
            return reasons

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with its reasons written (the writer is a closure)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

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


def strictest(values: Iterable[timedelta | None]) -> timedelta | None:
    """The shortest of the limits given, or None when none is."""
    present = [v for v in values if v is not None]
    return min(present) if present else None


def decide(policy: Policy, subject: Subject, vm: VMInfo, context: RequestContext) -> Decision:
    """Evaluate ``policy`` for one holder, one VM, one request.

    The policy is compiled once (``Policy.index``) so that only the rules that select the VM
    and can name the holder are looked at; the result equals ``decide_by_scanning``'s.
    """
    _require_aware(context.at)
    return policy.index.decide(subject, vm, context)


def decide_by_scanning(
    policy: Policy, subject: Subject, vm: VMInfo, context: RequestContext
) -> Decision:
    """The reference evaluator: every rule in file order, an explanation for every failure.

    ``decide`` must always agree with it (the equivalence tests compare the two); the index
    also uses it, on the few rules that select the VM, to explain a refusal.
    """
    _require_aware(context.at)
    selecting = [rule for rule in policy.rules if selects(rule, vm.name, vm.labels)]
    return scan_rules(selecting, policy.rules, subject, vm, context)


def scan_rules(
    selecting: Iterable[Rule],
    order: Iterable[Rule],
    subject: Subject,
    vm: VMInfo,
    context: RequestContext,
) -> Decision:
    """Decide over ``selecting``, the rules that select the VM, in file order; ``order`` holds
    at least every rule sharing a name with one of them, in file order (to name matches)."""
    allows: list[Rule] = []
    denies: list[Rule] = []
    failures: list[str] = []
    any_allow_selects = False
    for rule in selecting:
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
    reasons = [allow_reason(r) for r in allows]
    remaining = granted
    for rule in denies:
        withdrawn = privileges_withdrawn_by(rule.privileges or ALL_PRIVILEGES)
        reasons.append(deny_reason(rule))
        remaining = remaining - withdrawn
    if not any_allow_selects:
        reasons.append(f"no allow rule selects {vm.name}")
    matched_names = {r.name for r in allows} | {r.name for r in denies}
    matched = tuple(r.name for r in order if r.name in matched_names)
    if not remaining:
        return Decision(False, frozenset(), matched, tuple(reasons + failures))
    return Decision(
        allowed=True,
        privileges=remaining,
        matched_rules=matched,
        reasons=tuple(reasons),
        max_session=strictest(r.max_session for r in allows),
        idle_timeout=strictest(r.idle_timeout for r in allows),
        record_input=any(r.record_input for r in allows),
        **moderation_of(allows),
    )


def moderation_of(allows: list[Rule]) -> dict[str, str]:
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


def allow_reason(rule: Rule) -> str:
    """The explanation line of an allow rule that matched."""
    return (
        f"allowed by rule {rule.name} ({rule.location}): "
        f"{_privilege_list(implied_privileges(rule.privileges))}"
    )


def deny_reason(rule: Rule) -> str:
    """The explanation line of a deny rule that matched."""
    withdrawn = privileges_withdrawn_by(rule.privileges or ALL_PRIVILEGES)
    if withdrawn == ALL_PRIVILEGES:
        return f"denied by rule {rule.name} ({rule.location})"
    return f"withdrawn by rule {rule.name} ({rule.location}): {_privilege_list(withdrawn)}"


def reachable_vms(
    policy: Policy, subject: Subject, vms: Iterable[VMInfo], context: RequestContext
) -> list[tuple[VMInfo, Decision]]:
    """The VMs ``subject`` may reach now, with their decisions, sorted by VM name.

    The holder, source and time conditions do not depend on the VM, so they are checked once
    per rule for the whole listing; each VM then costs one selection lookup.
    """
    _require_aware(context.at)
    return policy.index.reachable(subject, vms, context)


def reachable_vms_by_scanning(
    policy: Policy, subject: Subject, vms: Iterable[VMInfo], context: RequestContext
) -> list[tuple[VMInfo, Decision]]:
    """``reachable_vms`` by the reference evaluator (for the equivalence tests and benches)."""
    decisions = ((vm, decide_by_scanning(policy, subject, vm, context)) for vm in vms)
    return sorted(((vm, d) for vm, d in decisions if d.allowed), key=lambda pair: pair[0].name)

"""A policy compiled for decisions in microseconds: rules indexed by what can make them apply.

Why: scanning a thousand rules per decision, and writing a failure explanation for each rule
that did not apply, cost milliseconds per login and tens of seconds to list the reachable VMs
of a 10k-VM fleet. A policy is immutable, so it is compiled once (``Policy.index``) into:

- a selection index: rules by literal VM name, by the literal prefix or suffix of a name glob
  and by one of their label pairs, so a VM meets only the rules that can select it;
- a holder index: rules by the user, role or group they name, so a holder meets only the rules
  that can name them;
- per rule, its remaining conditions and its explanation line, prepared once.

Sets of rules are ints used as bit sets (bit i is ``policy.rules[i]``): unions and
intersections over a thousand rules cost a few machine words. The outcome is by construction
the reference evaluator's (``decide_by_scanning``, compared in tests/policy): an allowed
decision is assembled from prepared parts; a refusal costs no more than an allowed decision,
because its explanation (why each selecting rule failed: the reference evaluator over the
selecting rules only) is written when first read (``Decision.refused``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import translate
from ipaddress import IPv4Address, IPv6Address

from ca.attributes import AttributeSet, ClearanceLevel
from certgate.policy.evaluate import (
    Decision,
    RequestContext,
    Subject,
    VMInfo,
    allow_reason,
    deny_reason,
    moderation_of,
    scan_rules,
    strictest,
)
from certgate.policy.matching import rule_source_matches, time_matches
from certgate.policy.model import (
    ALL_PRIVILEGES,
    Rule,
    TimeWindow,
    implied_privileges,
    privileges_withdrawn_by,
)

_GLOB_CHARS = re.compile(r"[*?\[]")
#: Selection results remembered per VM name; a fleet is finite, but names come from outside.
_NAME_CACHE_LIMIT = 1 << 16

#: Allowed decisions remembered per (allow rules, deny rules) pair.
_DECISION_CACHE_LIMIT = 1 << 12

Matcher = Callable[[str], object]


def _bits(mask: int) -> Iterable[int]:
    """Indices of the set bits of ``mask``, lowest first (policy order)."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class _LazyGlob:
    """A glob's matcher, its regex compiled on first use: a one-shot decision (``policy
    check``) meets a few of a policy's globs, and compiling all of them cost more than it."""

    __slots__ = ("_match", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._match: Matcher | None = None

    def __call__(self, name: str) -> object:
        match = self._match
        if match is None:
            match = self._match = re.compile(translate(self.pattern)).match
        return match(name)


class _NameSelector:
    """Which rules' ``vm_names`` globs match a VM name (rules without globs always do).

    Each distinct glob is keyed by a literal part every matching name must have: its prefix,
    its suffix, or else its longest literal run (checked with ``in`` before the regex runs).
    A glob that is only ``prefix*`` or ``*suffix`` needs no regex at all.
    """

    def __init__(self, rules: Iterable[tuple[int, Rule]]) -> None:
        self.always = 0
        self.literal: dict[str, int] = {}
        globs: dict[str, int] = {}
        for i, rule in rules:
            bit = 1 << i
            if not rule.vm_names:
                self.always |= bit
            for pattern in rule.vm_names:
                if pattern == "*":
                    self.always |= bit
                elif _GLOB_CHARS.search(pattern) is None:
                    self.literal[pattern] = self.literal.get(pattern, 0) | bit
                else:
                    globs[pattern] = globs.get(pattern, 0) | bit
        self.by_prefix: dict[str, list[tuple[Matcher | None, int]]] = {}
        self.by_suffix: dict[str, list[tuple[Matcher | None, int]]] = {}
        self.by_part: dict[str, list[tuple[Matcher, int]]] = {}
        for pattern, mask in globs.items():
            self._add(pattern, mask)
        self.prefix_lengths = sorted({len(p) for p in self.by_prefix})
        self.suffix_lengths = sorted({len(s) for s in self.by_suffix})
        self.parts = list(self.by_part.items())
        self._cache: dict[str, int] = {}

    def _add(self, pattern: str, mask: int) -> None:
        # Text outside ``[...]`` sets and between ``*``/``?`` is literal (fnmatch has no escape).
        literal_runs = re.split(r"\[[^\]]*\]?|[*?]", pattern) if "[" in pattern else re.split(
            r"[*?]", pattern
        )
        first = _GLOB_CHARS.search(pattern)
        assert first is not None
        prefix = pattern[: first.start()]
        suffix = "" if "[" in pattern else literal_runs[-1]
        regex = _LazyGlob(pattern)
        if prefix and len(prefix) >= len(suffix):
            trivial = pattern == prefix + "*"
            self.by_prefix.setdefault(prefix, []).append((None if trivial else regex, mask))
        elif suffix:
            trivial = pattern == "*" + suffix
            self.by_suffix.setdefault(suffix, []).append((None if trivial else regex, mask))
        else:
            part = max(literal_runs, key=len)
            self.by_part.setdefault(part, []).append((regex, mask))

    def matching(self, name: str) -> int:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        mask = self.always | self.literal.get(name, 0)
        length = len(name)
        for n in self.prefix_lengths:
            if n > length:
                break
            for matcher, bits in self.by_prefix.get(name[:n], ()):
                if matcher is None or matcher(name):
                    mask |= bits
        for n in self.suffix_lengths:
            if n > length:
                break
            for matcher, bits in self.by_suffix.get(name[length - n :], ()):
                if matcher is None or matcher(name):
                    mask |= bits
        for part, entries in self.parts:
            if part in name:
                for regex, bits in entries:
                    if regex(name):
                        mask |= bits
        if len(self._cache) >= _NAME_CACHE_LIMIT:
            self._cache.clear()
        self._cache[name] = mask
        return mask


class _LabelSelector:
    """Which rules' ``vm_labels`` are all present on a VM (rules without labels always are).

    Rules are grouped by the label keys they test; a VM costs one tuple lookup per group.
    """

    def __init__(self, rules: Iterable[tuple[int, Rule]]) -> None:
        self.always = 0
        groups: dict[tuple[str, ...], dict[tuple[str, ...], int]] = {}
        for i, rule in rules:
            if not rule.vm_labels:
                self.always |= 1 << i
                continue
            keys = tuple(sorted(rule.vm_labels))
            values = tuple(rule.vm_labels[k] for k in keys)
            group = groups.setdefault(keys, {})
            group[values] = group.get(values, 0) | 1 << i
        self.groups = list(groups.items())

    def matching(self, labels: Mapping[str, str]) -> int:
        mask = self.always
        for keys, by_values in self.groups:
            found = by_values.get(tuple([labels.get(k) for k in keys]))  # type: ignore[misc]
            if found:
                mask |= found
        return mask


@dataclass(frozen=True)
class _Conditions:
    """A rule's conditions other than selection and principals, and what it contributes."""

    is_deny: bool
    min_clearance: ClearanceLevel | None
    grants: frozenset[str]
    source_rule: Rule | None  # the rule itself when it has a source whitelist
    windows: tuple[TimeWindow, ...]

    def hold(
        self,
        attributes: AttributeSet,
        address: IPv4Address | IPv6Address | None,
        at: datetime,
    ) -> bool:
        if self.min_clearance is not None and (
            attributes.clearance is None or attributes.clearance < self.min_clearance
        ):
            return False
        if self.grants and not self.grants.issubset(attributes.grants):
            return False
        if self.source_rule is not None and not rule_source_matches(
            self.source_rule, address, unknown_matches=self.is_deny
        ):
            return False
        return not self.windows or time_matches(self.windows, at)


class PolicyIndex:
    """The compiled form of one policy; build it through ``Policy.index`` (cached)."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self._names = _NameSelector(enumerate(rules))
        self._labels = _LabelSelector(enumerate(rules))
        self._anyone = 0
        self._by_user: dict[str, int] = {}
        self._by_role: dict[str, int] = {}
        self._by_group: dict[str, int] = {}
        self._deny_mask = 0
        same_name: dict[str, int] = {}
        for i, rule in enumerate(rules):
            bit = 1 << i
            same_name[rule.name] = same_name.get(rule.name, 0) | bit
            if rule.effect == "deny":
                self._deny_mask |= bit
            if not rule.has_principals:
                self._anyone |= bit
            for table, keys in (
                (self._by_user, rule.users),
                (self._by_role, rule.any_roles),
                (self._by_group, rule.any_groups),
            ):
                for key in keys:
                    table[key] = table.get(key, 0) | bit
        self._allow_mask = ((1 << len(rules)) - 1) & ~self._deny_mask
        self._same_name = [same_name[rule.name] for rule in rules]
        self._unique_names = len(same_name) == len(rules)
        self._conditions = [
            _Conditions(
                is_deny=rule.effect == "deny",
                min_clearance=rule.min_clearance,
                grants=frozenset(rule.grants),
                source_rule=rule if rule.source_cidrs or rule.source_groups else None,
                windows=rule.time_windows,
            )
            for rule in rules
        ]
        self._unconditional = 0
        for i, rule in enumerate(rules):
            if not (rule.min_clearance is not None or rule.grants or rule.source_cidrs
                    or rule.source_groups or rule.time_windows):
                self._unconditional |= 1 << i
        # A policy has a handful of distinct privilege sets: close each one once.
        distinct = {rule.privileges for rule in rules}
        implied = {p: implied_privileges(p) for p in distinct}
        withdrawn = {p: privileges_withdrawn_by(p or ALL_PRIVILEGES) for p in distinct}
        self._grants = [implied[rule.privileges] for rule in rules]
        self._withdraws = [withdrawn[rule.privileges] for rule in rules]
        self._reasons: list[str | None] = [None] * len(rules)
        self._timed = 0
        for i, rule in enumerate(rules):
            if rule.time_windows:
                self._timed |= 1 << i
        self._decisions: dict[tuple[int, int], Decision | None] = {}

    # -- selection and principals -----------------------------------------------------------

    def selecting(self, vm: VMInfo) -> int:
        """The rules that select ``vm``."""
        return self._names.matching(vm.name) & self._labels.matching(vm.labels)

    def timed_rules_selecting(self, vm: VMInfo) -> list[Rule]:
        """The rules with time windows that select ``vm``, in file order."""
        timed = self._timed and self.selecting(vm) & self._timed
        return [self.rules[i] for i in _bits(timed)]

    def naming(self, subject: Subject) -> int:
        """The rules whose principals (users, roles, groups) the holder meets."""
        mask = self._anyone | self._by_user.get(subject.identity, 0)
        attributes = subject.attributes
        for role in attributes.roles:
            mask |= self._by_role.get(role, 0)
        for group in attributes.groups:
            mask |= self._by_group.get(group, 0)
        return mask

    def _applying(self, candidates: int, subject: Subject, context: RequestContext) -> int:
        """Of ``candidates``, the rules whose clearance, grant, source and time conditions hold."""
        applying = candidates & self._unconditional
        conditional = candidates & ~self._unconditional
        if conditional:
            attributes, address, at = subject.attributes, context.source_address, context.at
            conditions = self._conditions
            for i in _bits(conditional):
                if conditions[i].hold(attributes, address, at):
                    applying |= 1 << i
        return applying

    # -- decisions --------------------------------------------------------------------------

    def decide(self, subject: Subject, vm: VMInfo, context: RequestContext) -> Decision:
        selected = self.selecting(vm)
        applying = self._applying(selected & self.naming(subject), subject, context)
        decision = self._allowed(applying & self._allow_mask, applying & self._deny_mask)
        if decision is not None:
            return decision
        return Decision.refused(
            self._matched_names(applying),
            lambda: self._refusal_reasons(selected, subject, vm, context))

    def reachable(
        self, subject: Subject, vms: Iterable[VMInfo], context: RequestContext
    ) -> list[tuple[VMInfo, Decision]]:
        applying = self._applying(self.naming(subject), subject, context)
        allow_mask, deny_mask = applying & self._allow_mask, applying & self._deny_mask
        if not allow_mask:
            return []
        # Only the rules that apply to this holder matter: select among those alone.
        relevant = [(i, self.rules[i]) for i in _bits(applying)]
        names, labels = _NameSelector(relevant), _LabelSelector(relevant)
        result: list[tuple[VMInfo, Decision]] = []
        for vm in vms:
            selected = names.matching(vm.name)
            allows = selected & allow_mask
            if not allows:
                continue
            selected &= labels.matching(vm.labels)
            allows = selected & allow_mask
            if not allows:
                continue
            if not allows:
                continue
            decision = self._allowed(allows, selected & deny_mask)
            if decision is not None:
                result.append((vm, decision))
        result.sort(key=lambda pair: pair[0].name)
        return result

    def _allowed(self, allows: int, denies: int) -> Decision | None:
        """The decision when the rules ``allows`` and ``denies`` apply, or None if it is a
        refusal (refusals need the failure explanations of the reference evaluator).

        It depends on nothing else, and decisions are immutable: remembered per rule pair.
        """
        if not allows:
            return None
        key = (allows, denies)
        if key in self._decisions:
            return self._decisions[key]
        if len(self._decisions) >= _DECISION_CACHE_LIMIT:
            self._decisions.clear()
        decision = self._decisions[key] = self._assemble(allows, denies)
        return decision

    def _assemble(self, allows: int, denies: int) -> Decision | None:
        remaining: frozenset[str] = frozenset()
        allow_indices = list(_bits(allows))
        for i in allow_indices:
            remaining |= self._grants[i]
        deny_indices = list(_bits(denies))
        for i in deny_indices:
            remaining = remaining - self._withdraws[i]
        if not remaining:
            return None
        rules = self.rules
        allow_rules = [rules[i] for i in allow_indices]
        return Decision(
            allowed=True,
            privileges=remaining,
            matched_rules=self._matched_names(allows | denies),
            reasons=tuple(self._reason(i) for i in allow_indices + deny_indices),
            max_session=_strictest_of(allow_rules, "max_session"),
            idle_timeout=_strictest_of(allow_rules, "idle_timeout"),
            record_input=any(rule.record_input for rule in allow_rules),
            **moderation_of(allow_rules),
        )

    def _reason(self, i: int) -> str:
        reason = self._reasons[i]
        if reason is None:
            rule = self.rules[i]
            reason = deny_reason(rule) if rule.effect == "deny" else allow_reason(rule)
            self._reasons[i] = reason
        return reason

    def _matched_names(self, applying: int) -> tuple[str, ...]:
        """The names of the rules that applied, in file order, each as often as the policy
        has a rule of that name (what the reference evaluator reports)."""
        if not applying:
            return ()
        matched = 0
        for i in _bits(applying):
            matched |= self._same_name[i]
        rules = self.rules
        return tuple(rules[i].name for i in _bits(matched))

    def _refusal_reasons(
        self, selected: int, subject: Subject, vm: VMInfo, context: RequestContext
    ) -> tuple[str, ...]:
        """A refusal's explanation: the reference evaluator over the selecting rules only.
        Written when first read (``Decision.refused``), not on every refusal."""
        selecting = [self.rules[i] for i in _bits(selected)]
        # Matched rules are named in file order; with unique names the selecting rules (in
        # file order) hold every name that can be matched.
        order = selecting if self._unique_names else self.rules
        return scan_rules(selecting, order, subject, vm, context).reasons


def _strictest_of(rules: list[Rule], attribute: str) -> timedelta | None:
    values: list[timedelta | None] = [getattr(rule, attribute) for rule in rules]
    return strictest(values)

"""The policy model: immutable plain data, produced by the loader and read by the evaluator."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Final, Literal

from ca.attributes import ClearanceLevel

if TYPE_CHECKING:
    from certgate.policy.index import PolicyIndex


class Privilege(StrEnum):
    """What a holder may do on a console. Members are plain strings (``"console.view"``)."""

    VIEW = "console.view"
    INTERACT = "console.interact"
    BREAK = "console.break"
    FORCE = "console.force"
    LOG = "console.log"
    REVIEW = "audit.review"
    """Reading the audit records and recordings of the selected VMs' sessions (``certgate
    web``); it implies nothing on the console and no console privilege implies it."""


VIEW: Final = Privilege.VIEW
INTERACT: Final = Privilege.INTERACT
BREAK: Final = Privilege.BREAK
FORCE: Final = Privilege.FORCE
LOG: Final = Privilege.LOG
REVIEW: Final = Privilege.REVIEW
CONSOLE_PRIVILEGES: Final[frozenset[str]] = frozenset({VIEW, INTERACT, BREAK, FORCE, LOG})
ALL_PRIVILEGES: Final[frozenset[str]] = frozenset(Privilege)

#: Privileges form a ladder: break implies interact implies view. A break or SysRq is useless
#: without typing the follow-up key, and typing is useless without seeing the console. Taking
#: the keyboard by force (an exclusive console) likewise implies interact. Reading the console
#: log (history, possibly from before one's access) stands alone: it implies nothing.
_IMPLIED: Final[Mapping[str, frozenset[str]]] = {
    VIEW: frozenset({VIEW}),
    INTERACT: frozenset({INTERACT, VIEW}),
    BREAK: frozenset({BREAK, INTERACT, VIEW}),
    FORCE: frozenset({FORCE, INTERACT, VIEW}),
    LOG: frozenset({LOG}),
    REVIEW: frozenset({REVIEW}),
}

WRITE_MODES: Final = ("shared", "exclusive")
OBSERVER_LEAVE: Final = ("pause", "end")


def implied_privileges(privileges: Iterable[str]) -> frozenset[str]:
    """The privileges granted by ``privileges``, closed under implication."""
    return frozenset().union(*(_IMPLIED[p] for p in privileges))


def privileges_withdrawn_by(privileges: Iterable[str]) -> frozenset[str]:
    """The privileges a deny of ``privileges`` takes away: each one and all that imply it."""
    denied = frozenset(privileges)
    return frozenset(p for p, implied in _IMPLIED.items() if implied & denied)


def sorted_privileges(privileges: Iterable[str]) -> list[str]:
    """Privileges in ladder order (view, interact, break), for display."""
    order = list(Privilege)
    return [str(p) for p in sorted(privileges, key=lambda p: order.index(Privilege(p)))]


def clearance_name(level: ClearanceLevel) -> str:
    """The policy-file spelling of a clearance level (``top-secret``)."""
    return level.name.lower().replace("_", "-")


CLEARANCE_BY_NAME: Final[Mapping[str, ClearanceLevel]] = {
    clearance_name(level): level for level in ClearanceLevel
}

DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: Every source address, IPv4 and IPv6.
EVERYWHERE: Final[tuple[IPv4Network | IPv6Network, ...]] = (
    IPv4Network("0.0.0.0/0"), IPv6Network("::/0"))


@dataclass(frozen=True)
class SourceLocation:
    """Where something was written: file name, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class TimeWindow:
    """Days of the week (0 = Monday) and a wall-clock range in a named IANA timezone.

    ``start_minute``/``end_minute`` count minutes after midnight (``end_minute`` may be 1440,
    i.e. 24:00). When ``end_minute < start_minute`` the window crosses midnight and belongs to
    the day it starts on: ``fri 22:00-06:00`` covers Friday 22:00 until Saturday 06:00.
    """

    days: frozenset[int]
    start_minute: int
    end_minute: int
    timezone: str = "UTC"

    @property
    def crosses_midnight(self) -> bool:
        return self.end_minute < self.start_minute


@dataclass(frozen=True)
class Rule:
    """One policy rule.

    Selection: the VM name matches any of ``vm_names`` (globs) -- or ``vm_names`` is empty --
    and every ``vm_labels`` pair is present; at least one of the two is set.
    Requirement: if any of ``users``/``any_roles``/``any_groups`` is set the holder must match
    one entry of one of them; ``min_clearance`` and every one of ``grants`` must hold besides.
    ``privileges`` as written; for a deny rule an empty set means "all privileges".
    ``source_cidrs`` empty means any source; ``time_windows`` empty means any time.
    ``source_groups`` names security groups whose ingress whitelists are sources too; their
    networks are ``group_cidrs``, filled in by ``resolve_source_groups`` where the policy is
    loaded (None until then, and an unresolved rule fails closed).
    """

    name: str
    effect: Literal["allow", "deny"]
    vm_names: tuple[str, ...] = ()
    vm_labels: Mapping[str, str] = field(default_factory=dict)
    users: tuple[str, ...] = ()
    any_roles: tuple[str, ...] = ()
    any_groups: tuple[str, ...] = ()
    min_clearance: ClearanceLevel | None = None
    grants: tuple[str, ...] = ()
    privileges: frozenset[str] = frozenset()
    source_cidrs: tuple[IPv4Network | IPv6Network, ...] = ()
    source_groups: tuple[str, ...] = ()
    group_cidrs: tuple[IPv4Network | IPv6Network, ...] | None = field(default=None, compare=False)
    time_windows: tuple[TimeWindow, ...] = ()
    max_session: timedelta | None = None
    idle_timeout: timedelta | None = None
    record_input: bool = False
    write_mode: str | None = None
    """``exclusive`` makes every console this rule selects one-writer-at-a-time."""
    observer: str | None = None
    """Moderation: sessions granted by this rule are held until an ``observer`` (an attribute
    such as ``role=security``) watches view-only."""
    on_observer_leave: str = "pause"
    location: SourceLocation = field(default=SourceLocation("<policy>", 0, 0), compare=False)
    description: str | None = None

    @property
    def effective_sources(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """``source_cidrs`` and the networks of ``source_groups``. Unresolved groups add
        nothing to an allow rule and every address to a deny rule: they fail closed."""
        if not self.source_groups:
            return self.source_cidrs
        if self.group_cidrs is None:
            return self.source_cidrs + (EVERYWHERE if self.effect == "deny" else ())
        return self.source_cidrs + self.group_cidrs

    @property
    def has_principals(self) -> bool:
        return bool(self.users or self.any_roles or self.any_groups)


@dataclass(frozen=True)
class Policy:
    """A parsed policy document: rules in file order. With no rules, everything is denied."""

    rules: tuple[Rule, ...] = ()
    description: str | None = None

    @cached_property
    def index(self) -> PolicyIndex:
        """The policy compiled for fast decisions; built on first use, once per policy."""
        from certgate.policy.index import PolicyIndex  # the index builds on the evaluator

        return PolicyIndex(self.rules)

    @cached_property
    def source_groups(self) -> frozenset[str]:
        """Every security group a rule takes its source whitelist from."""
        return frozenset(g for rule in self.rules for g in rule.source_groups)

    def rule(self, name: str) -> Rule:
        """The rule called ``name``; ``KeyError`` if there is none."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

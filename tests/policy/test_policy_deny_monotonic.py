"""Property: adding a deny rule never grants more than the policy granted without it."""

import itertools
import random
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address, ip_network

from ca.attributes import AttributeSet, ClearanceLevel
from certgate.policy import (
    ALL_PRIVILEGES,
    Policy,
    RequestContext,
    Rule,
    Subject,
    TimeWindow,
    VMInfo,
    decide,
)

ROLES = ("operator", "dev", "admin")
GROUPS = ("ops", "contractors")
GRANTS = ("oncall",)
NETWORKS = (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))
ADDRESSES = (ip_address("10.1.1.1"), ip_address("192.0.2.1"), ip_address("2001:db8::1"), None)
VMS = (VMInfo("vm01", {"env": "lab"}), VMInfo("db01", {"env": "prod"}), VMInfo("vm02", {}))


def random_rule(rng: random.Random, index: int, effect: str) -> Rule:
    def some(options: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(o for o in options if rng.random() < 0.3)

    return Rule(
        name=f"r{index}",
        effect=effect,  # type: ignore[arg-type]
        vm_names=rng.choice([("*",), ("vm*",), ("db*",), ()]),
        vm_labels=rng.choice([{}, {"env": "lab"}, {"env": "prod"}]) or {},
        any_roles=some(ROLES),
        any_groups=some(GROUPS),
        min_clearance=rng.choice([None, ClearanceLevel.CONFIDENTIAL, ClearanceLevel.SECRET]),
        grants=some(GRANTS),
        privileges=frozenset(p for p in ALL_PRIVILEGES if rng.random() < 0.4)
        or (frozenset({"console.view"}) if effect == "allow" else frozenset()),
        source_cidrs=tuple(n for n in NETWORKS if rng.random() < 0.3),
        time_windows=rng.choice([(), (TimeWindow(frozenset({0, 1, 2}), 22 * 60, 6 * 60),)]),
        max_session=rng.choice([None, timedelta(hours=1)]),
    )


def random_subject(rng: random.Random) -> Subject:
    return Subject(
        rng.choice(("alice", "bob")),
        AttributeSet(
            roles=tuple(r for r in ROLES if rng.random() < 0.4),
            groups=tuple(g for g in GROUPS if rng.random() < 0.4),
            clearance=rng.choice([None, *ClearanceLevel]),
            grants=tuple(g for g in GRANTS if rng.random() < 0.5),
        ),
    )


def test_adding_a_deny_rule_never_grants_more_privileges() -> None:
    rng = random.Random(20261125)
    checked = 0
    for case in range(400):
        base = [random_rule(rng, i, rng.choice(["allow", "allow", "deny"])) for i in range(4)]
        deny = random_rule(rng, 99, "deny")
        position = rng.randrange(len(base) + 1)
        without = Policy(tuple(base))
        with_deny = Policy((*base[:position], deny, *base[position:]))
        subject = random_subject(rng)
        at = datetime(2026, 11, 23, 0, 0, tzinfo=UTC) + timedelta(hours=rng.randrange(24 * 7))
        for vm, address in itertools.product(VMS, ADDRESSES):
            context = RequestContext(address, at)
            before = decide(without, subject, vm, context)
            after = decide(with_deny, subject, vm, context)
            assert after.privileges <= before.privileges, (case, vm, address)
            assert before.allowed or not after.allowed
            checked += int(before.allowed)
    assert checked > 100  # the generator produces enough allowed cases to mean something

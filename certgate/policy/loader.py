"""Loading a policy document (YAML text) into the model, and fingerprinting its text.

The loader is strict on purpose: unknown keys, duplicate keys, empty lists and unknown values
are errors, because a typo that is silently ignored widens or narrows access unnoticed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from ca.attributes import ClearanceLevel
from certgate.policy.errors import PolicyError
from certgate.policy.model import (
    CLEARANCE_BY_NAME,
    OBSERVER_LEAVE,
    WRITE_MODES,
    Policy,
    Privilege,
    Rule,
    SourceLocation,
    TimeWindow,
)
from certgate.policy.values import (
    check_timezone,
    parse_cidr,
    parse_days,
    parse_duration,
    parse_hours,
)
from certgate.policy.yamlnodes import Cursor, compose_document, decode_policy
from certgate.secgroups.names import parse_group_name

__all__ = [
    "PolicyError", "decode_policy", "load_policy", "normalize_policy_text", "policy_fingerprint",
]

SUPPORTED_VERSION = "1"
_RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_PRIVILEGE_NAMES = [p.value for p in Privilege]


def load_policy(text: str, source_name: str = "<policy>") -> Policy:
    """Parse and validate a policy document; ``PolicyError`` names the place of any problem."""
    root = compose_document(text, source_name)
    if root is None:
        raise PolicyError(
            source_name, 1, 1, "", "empty policy document (expected 'version' and 'rules')"
        )
    doc = Cursor(root, "", source_name).mapping(
        ["version", "description", "rules"], required=["version", "rules"]
    )
    version = doc["version"].string()
    if version != SUPPORTED_VERSION:
        raise doc["version"].error(f"unsupported version {version!r} (expected 1)")
    description = doc["description"].string() if "description" in doc else None
    rules: list[Rule] = []
    first_defined: dict[str, SourceLocation] = {}
    for item in doc["rules"].sequence(non_empty=False):
        rule = _rule(item)
        if rule.name in first_defined:
            name_cursor = item.mapping(_RULE_KEYS)["name"]
            raise name_cursor.error(
                f"duplicate rule name {rule.name!r} (first defined at line "
                f"{first_defined[rule.name].line})"
            )
        first_defined[rule.name] = rule.location
        rules.append(rule)
    return Policy(rules=tuple(rules), description=description)


def normalize_policy_text(text: str) -> str:
    """The text as it is versioned: LF line ends, no trailing blanks, one final newline.

    Comments and layout are kept: the stored document is what people read and review.
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def policy_fingerprint(text: str) -> str:
    """SHA-256 (hex) of ``normalize_policy_text(text)``: the version identity of a policy."""
    return hashlib.sha256(normalize_policy_text(text).encode("utf-8")).hexdigest()


_RULE_KEYS = ["name", "description", "effect", "vms", "require", "privileges", "when", "session"]


def _rule(cursor: Cursor) -> Rule:
    entries = cursor.mapping(_RULE_KEYS, required=["name", "effect", "vms"])
    name = entries["name"].string()
    if not _RULE_NAME.fullmatch(name):
        raise entries["name"].error(
            f"invalid rule name {name!r} (letters, digits, '.', '_', ':' and '-'; no spaces)"
        )
    effect = _effect(entries["effect"])
    vm_names, vm_labels = _vms(entries["vms"])
    require = _require(entries["require"]) if "require" in entries else _Require()
    privileges = _privileges(entries["privileges"]) if "privileges" in entries else frozenset()
    if effect == "allow" and not privileges:
        raise cursor.error("an allow rule must list 'privileges' (e.g. [console.view])")
    sources, groups, windows = _when(entries["when"]) if "when" in entries else ((), (), ())
    limits = _SessionLimits()
    if "session" in entries:
        if effect == "deny":
            raise entries["session"].error("session limits apply to allow rules only")
        limits = _session(entries["session"])
    return Rule(
        name=name,
        effect=effect,
        vm_names=vm_names,
        vm_labels=vm_labels,
        users=require.users,
        any_roles=require.roles,
        any_groups=require.groups,
        min_clearance=require.clearance,
        grants=require.grants,
        privileges=privileges,
        source_cidrs=sources,
        source_groups=groups,
        time_windows=windows,
        max_session=limits.max_session,
        idle_timeout=limits.idle,
        record_input=limits.record_input,
        write_mode=limits.write_mode,
        observer=limits.observer,
        on_observer_leave=limits.on_observer_leave,
        location=cursor.location,
        description=entries["description"].string() if "description" in entries else None,
    )


def _effect(cursor: Cursor) -> Literal["allow", "deny"]:
    value = cursor.string()
    if value == "allow":
        return "allow"
    if value == "deny":
        return "deny"
    raise cursor.error(f"unknown effect {value!r} (expected allow or deny)")


def _vms(cursor: Cursor) -> tuple[tuple[str, ...], dict[str, str]]:
    entries = cursor.mapping(["names", "labels"])
    if not entries:
        raise cursor.error("select VMs by 'names' and/or 'labels' (names: ['*'] selects all)")
    names = tuple(entries["names"].strings()) if "names" in entries else ()
    labels: dict[str, str] = {}
    if "labels" in entries:
        label_cursor = entries["labels"]
        if label_cursor.is_mapping() and not label_cursor.node.value:
            raise label_cursor.error("must not be empty (leave the key out instead)")
        for key, value in label_cursor.mapping(None).items():
            labels[key] = value.string()
    return names, labels


@dataclass
class _Require:
    users: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    grants: tuple[str, ...] = ()
    clearance: ClearanceLevel | None = None


def _require(cursor: Cursor) -> _Require:
    entries = cursor.mapping(["users", "roles", "groups", "clearance", "grants"])
    if not entries:
        raise cursor.error("must not be empty (leave 'require' out to match every holder)")

    def strings(key: str) -> tuple[str, ...]:
        return tuple(entries[key].strings()) if key in entries else ()

    result = _Require(strings("users"), strings("roles"), strings("groups"), strings("grants"))
    if "clearance" in entries:
        name = entries["clearance"].string()
        if name not in CLEARANCE_BY_NAME:
            raise entries["clearance"].error(
                f"unknown clearance {name!r} (expected one of {', '.join(CLEARANCE_BY_NAME)})"
            )
        result.clearance = CLEARANCE_BY_NAME[name]
    return result


def _privileges(cursor: Cursor) -> frozenset[str]:
    found: set[str] = set()
    for item in cursor.sequence():
        value = item.string()
        if value not in _PRIVILEGE_NAMES:
            raise item.error(
                f"unknown privilege {value!r} (expected one of {', '.join(_PRIVILEGE_NAMES)})"
            )
        found.add(Privilege(value))
    return frozenset(found)


def _when(
    cursor: Cursor,
) -> tuple[tuple[IPv4Network | IPv6Network, ...], tuple[str, ...], tuple[TimeWindow, ...]]:
    entries = cursor.mapping(["sources", "from_group", "time"])
    if not entries:
        raise cursor.error("must not be empty (leave 'when' out for no conditions)")
    sources = (
        tuple(item.parsed(parse_cidr) for item in entries["sources"].sequence())
        if "sources" in entries
        else ()
    )
    groups: tuple[str, ...] = ()
    if "from_group" in entries:
        group_cursor = entries["from_group"]
        items = group_cursor.sequence() if group_cursor.is_sequence() else [group_cursor]
        groups = tuple(item.parsed(parse_group_name) for item in items)
    windows: list[TimeWindow] = []
    if "time" in entries:
        time_cursor = entries["time"]
        items = time_cursor.sequence() if time_cursor.is_sequence() else [time_cursor]
        for item in items:
            windows.extend(_time_windows(item))
    return sources, groups, tuple(windows)


def _time_windows(cursor: Cursor) -> list[TimeWindow]:
    entries = cursor.mapping(["days", "hours", "timezone"])
    if "days" not in entries and "hours" not in entries:
        raise cursor.error("a time window needs 'days' and/or 'hours'")
    days: frozenset[int] = frozenset(range(7))
    if "days" in entries:
        days = frozenset().union(*(item.parsed(parse_days) for item in entries["days"].sequence()))
    ranges = [(0, 24 * 60)]
    if "hours" in entries:
        hours = entries["hours"]
        items = hours.sequence() if hours.is_sequence() else [hours]
        ranges = [item.parsed(parse_hours) for item in items]
    timezone = entries["timezone"].parsed(check_timezone) if "timezone" in entries else "UTC"
    return [TimeWindow(days, start, end, timezone) for start, end in ranges]


@dataclass
class _SessionLimits:
    max_session: timedelta | None = None
    idle: timedelta | None = None
    record_input: bool = False
    write_mode: str | None = None
    observer: str | None = None
    on_observer_leave: str = "pause"


_OBSERVER = re.compile(r"(role|group|grant|user)=[A-Za-z0-9._:@/+-]{1,128}")


def _session(cursor: Cursor) -> _SessionLimits:
    entries = cursor.mapping(["max", "idle", "record_input", "write_mode", "moderated"])
    if not entries:
        raise cursor.error("must not be empty (leave 'session' out for no limits)")
    limits = _SessionLimits()
    limits.max_session = entries["max"].parsed(parse_duration) if "max" in entries else None
    limits.idle = entries["idle"].parsed(parse_duration) if "idle" in entries else None
    if "record_input" in entries:
        limits.record_input = entries["record_input"].parsed(_parse_bool)
    if "write_mode" in entries:
        limits.write_mode = entries["write_mode"].parsed(_choice(WRITE_MODES, "write mode"))
    if "moderated" in entries:
        moderated = entries["moderated"].mapping(["observer", "on_observer_leave"],
                                                 required=["observer"])
        limits.observer = moderated["observer"].parsed(_observer)
        if "on_observer_leave" in moderated:
            limits.on_observer_leave = moderated["on_observer_leave"].parsed(
                _choice(OBSERVER_LEAVE, "on_observer_leave"))
    return limits


def _observer(text: str) -> str:
    if not _OBSERVER.fullmatch(text):
        raise ValueError(f"observer {text!r} must be an attribute like role=security "
                         "(role=, group=, grant= or user=)")
    return text


def _choice(options: tuple[str, ...], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"unknown {what} {text!r} (expected {' or '.join(options)})")
        return text

    return parse


def _parse_bool(text: str) -> bool:
    if text in ("true", "yes"):
        return True
    if text in ("false", "no"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")

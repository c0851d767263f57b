"""A parsed policy as JSON-ready data and back, for caching the parse between processes.

Why: parsing a 1,000-rule policy document (YAML with positions, strict validation) costs
about 0.2-1 s, which every ``certgate policy check`` and every gateway start would pay again
for a policy that has not changed. Rebuilding the model from this form takes milliseconds.

The encoding is generic over the model's dataclasses (tagged values), so a field added to
``Rule`` later is carried without touching this module; ``to_data`` refuses (``ValueError``)
any value it does not know, and ``from_data`` rejects anything that is not exactly what
``to_data`` writes, so a cache that cannot be read back is never half-used.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from ca.attributes import ClearanceLevel
from certgate.policy.model import Policy, Rule, SourceLocation, TimeWindow

FORMAT = 2
"""2: fields that hold their default are left out (a 1,000-rule policy decodes in about half
the time: most fields of most rules are defaults)."""
_CLASSES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (Policy, Rule, SourceLocation, TimeWindow)
}


def to_data(policy: Policy) -> dict[str, Any]:
    """The policy as JSON-ready data; ``ValueError`` if it holds a value of an unknown type."""
    return {"format": FORMAT, "policy": _encode(policy)}


def from_data(data: object) -> Policy:
    """The policy ``to_data`` encoded; ``ValueError`` on anything else."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not a serialized policy of this format")
    policy = _decode(data.get("policy"))
    if not isinstance(policy, Policy):
        raise ValueError("serialized data is not a policy")
    return policy


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | str) or type(value) is int:
        return value
    if isinstance(value, ClearanceLevel):
        return ["clearance", int(value)]
    if isinstance(value, timedelta):
        return ["timedelta", value.days, value.seconds, value.microseconds]
    if isinstance(value, IPv4Network | IPv6Network):
        return ["network", str(value)]
    if isinstance(value, tuple):
        return ["tuple", [_encode(v) for v in value]]
    if isinstance(value, frozenset):
        return ["frozenset", sorted((_encode(v) for v in value), key=repr)]
    if isinstance(value, dict):
        return ["dict", [[_encode(k), _encode(v)] for k, v in value.items()]]
    if dataclasses.is_dataclass(value) and type(value).__name__ in _CLASSES:
        return [type(value).__name__, {
            f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)
            if not _is_default(f, getattr(value, f.name))
        }]
    raise ValueError(f"cannot serialize a {type(value).__name__} in a policy")


def _is_default(field: dataclasses.Field[Any], value: Any) -> bool:
    """True when the class would fill in ``value`` itself (same type, equal)."""
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        return False
    return type(value) is type(default) and bool(value == default)


def _decode(value: Any) -> Any:
    # Dispatch on the exact type and the tag: this runs for every value of the policy (30,000
    # for 1,000 rules) on every ``policy check``, so it avoids chains of isinstance tests.
    kind = type(value)
    if kind is str or value is None or kind is int or kind is bool:
        return value
    if kind is not list or len(value) < 2 or type(value[0]) is not str:
        raise ValueError("malformed serialized policy value")
    tag = value[0]
    decode = _TAGGED.get(tag)
    if decode is not None:
        return decode(value)
    cls = _CLASSES.get(tag)
    if cls is None or len(value) != 2 or type(value[1]) is not dict:
        raise ValueError(f"unknown serialized policy type {tag!r}")
    return cls(**{name: _decode(v) for name, v in value[1].items()})


def _tuple(value: list[Any]) -> tuple[Any, ...]:
    return tuple([v if type(v) is str else _decode(v) for v in _items(value[1:])])


def _frozenset(value: list[Any]) -> frozenset[Any]:
    return frozenset([v if type(v) is str else _decode(v) for v in _items(value[1:])])


def _dict(value: list[Any]) -> dict[Any, Any]:
    return {_decode(k): _decode(v) for k, v in _items(value[1:])}


def _timedelta(value: list[Any]) -> timedelta:
    _, days, seconds, micros = value
    return timedelta(days=days, seconds=seconds, microseconds=micros)


_TAGGED: dict[str, Any] = {
    "tuple": _tuple,
    "frozenset": _frozenset,
    "dict": _dict,
    "clearance": lambda value: ClearanceLevel(value[1]),
    "timedelta": _timedelta,
    "network": lambda value: ip_network(value[1]),
}


def _items(rest: list[Any]) -> list[Any]:
    if len(rest) != 1 or not isinstance(rest[0], list):
        raise ValueError("malformed serialized policy collection")
    return rest[0]

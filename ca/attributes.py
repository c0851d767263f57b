"""The privileges an attribute certificate carries, as plain data.

``AttributeSet`` is what the policy engine consumes; how it is encoded in
ASN.1 lives in ``ca.attribute_codec``.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from ca.errors import MalformedInputError

CERTGATE_ARC = "2.25.77420421246107097186889716350714180255"
OID_ROLE = "2.5.4.72"
OID_GROUP = "1.3.6.1.5.5.7.10.4"
OID_CLEARANCE = "2.5.4.55"
OID_CLEARANCE_RFC3281 = "2.5.1.5.55"
OID_GRANTS = CERTGATE_ARC + ".1.1"
OID_CLEARANCE_POLICY = CERTGATE_ARC + ".2.1"

ROLE_URI_PREFIX = "urn:certgate:role:"

_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")


class ClearanceLevel(IntEnum):
    """RFC 5755 ClassList bit numbers; a clearance's level is its highest bit set."""

    UNMARKED = 0
    UNCLASSIFIED = 1
    CONFIDENTIAL = 2
    SECRET = 3
    TOP_SECRET = 4

    @property
    def cli_name(self) -> str:
        """Name used on the command line and in JSON (``top-secret``)."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_name(cls, text: str) -> "ClearanceLevel":
        """Parse a CLI name (case-insensitive, ``_`` or ``-``)."""
        key = text.strip().upper().replace("-", "_")
        try:
            return cls[key]
        except KeyError:
            names = ", ".join(level.cli_name for level in cls)
            raise MalformedInputError(
                f"unknown clearance {text!r} (choose one of {names})"
            ) from None


@dataclass(frozen=True)
class AttributeSet:
    """Roles, groups, clearance and certgate grants of one holder."""

    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    clearance: ClearanceLevel | None = None
    grants: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        """True when nothing is granted."""
        return not (self.roles or self.groups or self.grants) and self.clearance is None

    def as_dict(self) -> dict[str, list[str] | str | None]:
        """JSON-ready form."""
        return {
            "roles": list(self.roles),
            "groups": list(self.groups),
            "clearance": None if self.clearance is None else self.clearance.cli_name,
            "grants": list(self.grants),
        }

    def describe(self) -> str:
        """One line for humans: ``role=admin group=ops clearance=secret``."""
        parts = [f"role={r}" for r in self.roles]
        parts += [f"group={g}" for g in self.groups]
        if self.clearance is not None:
            parts.append(f"clearance={self.clearance.cli_name}")
        parts += [f"grant={g}" for g in self.grants]
        return " ".join(parts) if parts else "(no attributes)"


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def check_attribute_value(kind: str, value: str) -> str:
    """Role, group and grant names: letters, digits and ``._:@/+-``, at most 128."""
    if not _VALUE.fullmatch(value):
        raise MalformedInputError(
            f"invalid {kind} value {value!r}: use letters, digits and . _ : @ / + - "
            "(at most 128 characters)"
        )
    return value


def parse_attribute_assignments(items: Sequence[str]) -> AttributeSet:
    """Parse ``role=admin``, ``group=ops``, ``clearance=secret``, ``grant=console.break``."""
    roles: list[str] = []
    groups: list[str] = []
    grants: list[str] = []
    clearance: ClearanceLevel | None = None
    for item in items:
        kind, sep, value = item.partition("=")
        kind = kind.strip().lower()
        value = value.strip()
        if not sep or not value:
            raise MalformedInputError(
                f"bad attribute {item!r}: expected KIND=VALUE with KIND role, group, "
                "clearance or grant"
            )
        if kind == "role":
            roles.append(check_attribute_value("role", value))
        elif kind == "group":
            groups.append(check_attribute_value("group", value))
        elif kind == "grant":
            grants.append(check_attribute_value("grant", value))
        elif kind == "clearance":
            if clearance is not None:
                raise MalformedInputError(f"bad attribute {item!r}: clearance given twice")
            clearance = ClearanceLevel.from_name(value)
        else:
            raise MalformedInputError(
                f"bad attribute {item!r}: unknown kind {kind!r} (role, group, clearance, grant)"
            )
    return AttributeSet(
        roles=_unique(roles), groups=_unique(groups), clearance=clearance, grants=_unique(grants)
    )

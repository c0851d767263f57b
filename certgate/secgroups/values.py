"""Parsing what people type for security groups; every ``ValueError`` names the bad text.

Names are bounded so that every chain certgate makes fits iptables' 28-character limit
(``CG-I-`` + a 23-character group name) and every interface name fits the kernel's 15.
"""

from __future__ import annotations

import re

from certgate.policy.values import parse_cidr
from certgate.secgroups.model import PortRange, Protocol
from certgate.secgroups.names import GROUP_NAME, parse_group_name

__all__ = [
    "GROUP_NAME",
    "parse_cidr",
    "parse_description",
    "parse_group_name",
    "parse_ifname",
    "parse_ports",
    "parse_protocol",
]

IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
MAX_DESCRIPTION = 200
_PORTS = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


def parse_ifname(text: str) -> str:
    if not IFNAME.fullmatch(text):
        raise ValueError(
            f"invalid interface name {text[:40]!r} (1-15 letters, digits, '.', '_', '-', "
            "as the host names its tap/vif/veth devices)"
        )
    return text


def parse_protocol(text: str) -> Protocol:
    try:
        return Protocol(text.lower())
    except ValueError:
        raise ValueError(
            f"unknown protocol {text[:20]!r} (expected tcp, udp, icmp or any)"
        ) from None


def parse_ports(text: str) -> PortRange:
    """``22`` or ``8000-8080``; ports 1-65535."""
    match = _PORTS.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid port {text[:20]!r} (expected a port or a range like 8000-8080)")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else first
    for port in (first, last):
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} out of range (1-65535)")
    if last < first:
        raise ValueError(f"empty port range {text!r} (the first port is above the last)")
    return PortRange(first, last)


def parse_description(text: str) -> str:
    if len(text) > MAX_DESCRIPTION or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(
            f"description must be at most {MAX_DESCRIPTION} printable characters"
        )
    return text

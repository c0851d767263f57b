"""Security groups: per-VM network isolation, as plain data rendered to packet-filter rulesets.

Pure code only: the model, its validation, the nftables and iptables renderers and the diff
against a loaded ruleset. Running ``nft``/``iptables-restore`` and the store live elsewhere
(``certgate.firewall``), so every decision here is testable without root or a kernel.
"""

from certgate.secgroups.model import (
    Direction,
    Fleet,
    Nic,
    PortRange,
    Protocol,
    SecurityGroup,
    SecurityGroupError,
    SecurityRule,
)

__all__ = [
    "Direction",
    "Fleet",
    "Nic",
    "PortRange",
    "Protocol",
    "SecurityGroup",
    "SecurityGroupError",
    "SecurityRule",
]

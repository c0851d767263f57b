"""Rendering a fleet to one nftables table, ``inet certgate_sg``, that certgate owns outright.

Layout (see docs/security-groups.md):

- ``antispoof`` (prerouting, priority raw): a packet arriving on a VM's interface must carry
  one of that interface's addresses (an ``ifname . address`` set), else it is dropped.
- ``egress`` (forward, priority filter - 10): established/related first, then a verdict map by
  input interface for the NICs whose groups all restrict egress.
- ``ingress`` (forward, priority filter): established/related first, then a verdict map by
  output interface to the NIC's chain, which jumps to each of its group chains and drops.

A group is one chain per direction (``sg_NAME_in``/``sg_NAME_out``) whose rules accept; the
NIC chain ends in ``drop``, so the groups' rules are a union and the default is deny. An accept
in one base chain does not skip another, so egress and ingress are both checked for traffic
between two VMs, and no verdict here overrides a drop in a table certgate does not own.
The text is written the way ``nft list table`` prints it, so the loaded table can be diffed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from certgate.secgroups.model import Direction, Fleet, Network, Nic, Protocol, SecurityRule

TABLE_FAMILY = "inet"
TABLE_NAME = "certgate_sg"
TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"
TABLE_COMMENT = "managed by certgate: security groups"
STATE_SET = "applied"
HASH_PREFIX = "certgate sha256:"
BASE_CHAINS = ("antispoof", "egress", "ingress")


@dataclass(frozen=True)
class NftRuleset:
    """The table as text, written the way ``nft list table`` prints it, and its SHA-256.

    The loaded table carries the hash as the comment of an empty set (``applied``): ``nft
    list set`` reads only that set back (listing a chain would fetch every set's elements),
    and knowing what is loaded is what lets a re-apply change only what changed.
    """

    body: str
    sha256: str

    @property
    def table(self) -> str:
        """The table as loaded: the body plus its static comment and the state chain."""
        head, rest = self.body.split("\n", 1)
        rest = rest.removesuffix("}\n")
        return (f'{head}\n\tcomment "{TABLE_COMMENT}"\n{rest}\n{_state_set(self.sha256)}\n}}\n')

    @property
    def script(self) -> str:
        """One ``nft -f`` transaction: create-if-missing, delete, define. All or nothing."""
        return f"table {TABLE} {{\n}}\ndelete table {TABLE}\n{self.table}"

    def blocks(self) -> dict[str, list[str]]:
        return parse_blocks(self.body)


def _state_set(sha256: str) -> str:
    return (f"\tset {STATE_SET} {{\n\t\ttype inet_service\n"
            f'\t\tcomment "{HASH_PREFIX}{sha256}"\n\t}}')


def parse_blocks(body: str) -> dict[str, list[str]]:
    """``{"chain sg_web_in": [rule, ...], "set vm_nics": [line, ...], ...}`` of a body that
    ``render_nftables`` wrote (one block per top-level set, map or chain)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in body.split("\n"):
        if line.startswith("\t") and not line.startswith("\t\t"):
            text = line.strip()
            if text == "}":
                current = None
            elif text.endswith("{"):
                current = blocks.setdefault(text.removesuffix("{").strip(), [])
        elif current is not None and line.startswith("\t\t"):
            current.append(line.strip())
    return blocks


def _elements(lines: list[str]) -> list[str]:
    for line in lines:
        if line.startswith("elements = {") and line.endswith("}"):
            inner = line.removeprefix("elements = {").removesuffix("}").strip()
            return [e.strip() for e in inner.split(",") if e.strip()]
    return []


def incremental_script(old_body: str, new: NftRuleset) -> str | None:
    """A transaction that turns the loaded ``old_body`` into ``new`` touching only what
    changed; None when only a full replacement will do (the base chains differ)."""
    old, wanted = parse_blocks(old_body), new.blocks()
    if any(old.get(f"chain {c}") != wanted.get(f"chain {c}") for c in BASE_CHAINS):
        return None
    lines: list[str] = []
    added = [k for k in wanted if k not in old]
    removed = [k for k in old if k not in wanted]
    changed = [k for k in wanted if k in old and old[k] != wanted[k]]
    for key in added:
        kind, name = key.split(" ", 1)
        if kind == "chain":
            lines.append(f"add chain {TABLE} {name}")
        else:
            spec = "; ".join(line for line in wanted[key] if not line.startswith("elements"))
            lines.append(f"add {kind} {TABLE} {name} {{ {spec}; }}")
    for key in added + changed:
        kind, name = key.split(" ", 1)
        if kind == "chain":
            continue
        # Element by element: flushing and refilling a large interval set costs far more.
        before, after = _elements(old.get(key, [])), _elements(wanted[key])
        before_set, after_set = set(before), set(after)
        gone = [e for e in before if e not in after_set]
        new_elements = [e for e in after if e not in before_set]
        if gone:
            lines.append(f"delete element {TABLE} {name} {{ {', '.join(gone)} }}")
        if new_elements:
            lines.append(f"add element {TABLE} {name} {{ {', '.join(new_elements)} }}")
    for key in added + changed:
        kind, name = key.split(" ", 1)
        if kind != "chain":
            continue
        if key in old:
            lines.append(f"flush chain {TABLE} {name}")
        lines.extend(f"add rule {TABLE} {name} {rule}" for rule in wanted[key])
    # References go before what they refer to: NIC chains, then group chains, then sets.
    for key in sorted(removed, key=lambda k: (not k.startswith("chain nic_"),
                                              not k.startswith("chain"), k)):
        kind, name = key.split(" ", 1)
        if kind == "chain":
            lines.append(f"flush chain {TABLE} {name}")
    for key in sorted(removed, key=lambda k: (not k.startswith("chain nic_"),
                                              not k.startswith("chain"), k)):
        kind, name = key.split(" ", 1)
        lines.append(f"delete {kind} {TABLE} {name}")
    # Replacing the empty set is cheap; any element operation makes nft fetch every element.
    lines.append(f"delete set {TABLE} {STATE_SET}")
    lines.append(f'add set {TABLE} {STATE_SET} {{ type inet_service; '
                 f'comment "{HASH_PREFIX}{new.sha256}"; }}')
    return "\n".join(lines) + "\n"


def render_nftables(fleet: Fleet) -> NftRuleset:
    """The whole table for ``fleet`` (assumed checked by ``check_fleet``)."""
    blocks: list[list[str]] = []
    blocks.append(_set("vm_nics", "ifname", None, [_q(n.ifname) for n in fleet.nics]))
    for version, type_name in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        elements = [
            f"{_q(nic.ifname)} . {_address(a)}"
            for nic in fleet.nics for a in _collapsed(nic.addresses, version)
        ]
        blocks.append(_set(f"nic_addrs_v{version}", f"ifname . {type_name}", "interval",
                           elements))
    for remote in sorted({r.remote_group for g in fleet.groups for r in g.rules
                          if r.remote_group is not None}):
        addresses = fleet.member_addresses(remote)
        for version, type_name in ((4, "ipv4_addr"), (6, "ipv6_addr")):
            blocks.append(_set(_members_set(remote, version), type_name, "interval",
                               [_address(a) for a in _collapsed(addresses, version)]))
    ingress_nics = list(fleet.nics)
    egress_nics = [nic for nic in fleet.nics if fleet.egress_restricted(nic)]
    blocks.append(_map("ingress_dispatch",
                       [f"{_q(n.ifname)} : jump {_nic_chain(n, 'in')}" for n in ingress_nics]))
    blocks.append(_map("egress_dispatch",
                       [f"{_q(n.ifname)} : jump {_nic_chain(n, 'out')}" for n in egress_nics]))
    for group in fleet.groups:
        blocks.append(_chain(f"sg_{group.name}_in", _rule_lines(group.ingress)))
        if group.restrict_egress:
            blocks.append(_chain(f"sg_{group.name}_out", _rule_lines(group.egress)))
    for nic in ingress_nics:
        blocks.append(_chain(_nic_chain(nic, "in"),
                             [f"jump sg_{g}_in" for g in nic.groups] + ["drop"]))
    for nic in egress_nics:
        blocks.append(_chain(_nic_chain(nic, "out"),
                             [f"jump sg_{g}_out" for g in nic.groups] + ["drop"]))
    blocks.append(_chain("antispoof", [
        "iifname != @vm_nics return",
        "iifname . ip saddr @nic_addrs_v4 return",
        "iifname . ip6 saddr @nic_addrs_v6 return",
        "ip6 saddr fe80::/10 return",
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return",
        "drop",
    ], hook="type filter hook prerouting priority raw; policy accept;"))
    blocks.append(_chain("egress", [
        "ct state established,related accept",
        "iifname vmap @egress_dispatch",
    ], hook="type filter hook forward priority filter - 10; policy accept;"))
    blocks.append(_chain("ingress", [
        "ct state established,related accept",
        "oifname vmap @ingress_dispatch",
    ], hook="type filter hook forward priority filter; policy accept;"))
    lines = [f"table {TABLE_FAMILY} {TABLE_NAME} {{"]
    for index, block in enumerate(blocks):
        if index:
            lines.append("")
        lines.extend(block)
    lines.append("}")
    body = "\n".join(lines) + "\n"
    return NftRuleset(body, hashlib.sha256(body.encode()).hexdigest())


def _q(ifname: str) -> str:
    return f'"{ifname}"'


def _nic_chain(nic: Nic, direction: str) -> str:
    return f"nic_{nic.ifname}_{direction}"


def _members_set(group: str, version: int) -> str:
    return f"members_{group}_v{version}"


def _address(network: Network) -> str:
    host = network.prefixlen == network.max_prefixlen
    return str(network.network_address) if host else str(network)


def _collapsed(networks: Iterable[Network], version: int) -> list[Network]:
    """Sorted networks of one family without any contained in another: interval sets refuse
    overlapping elements. (Adjacent ones stay apart, as ``nft`` lists them.)"""
    spans = sorted(
        (int(n.network_address), -n.prefixlen, n) for n in networks if n.version == version
    )
    kept: list[Network] = []
    end = -1
    for first, negative_prefix, network in spans:
        if first <= end:
            continue
        kept.append(network)
        end = first + (1 << (network.max_prefixlen + negative_prefix)) - 1
    return kept


def _set(name: str, type_name: str, flags: str | None, elements: list[str]) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {type_name}"]
    if flags:
        lines.append(f"\t\tflags {flags}")
    if elements:
        lines.append(f"\t\telements = {{ {', '.join(elements)} }}")
    lines.append("\t}")
    return lines


def _map(name: str, elements: list[str]) -> list[str]:
    lines = [f"\tmap {name} {{", "\t\ttype ifname : verdict"]
    if elements:
        lines.append(f"\t\telements = {{ {', '.join(elements)} }}")
    lines.append("\t}")
    return lines


def _chain(name: str, rules: list[str], hook: str | None = None) -> list[str]:
    lines = [f"\tchain {name} {{"]
    if hook:
        lines.append(f"\t\t{hook}")
    lines.extend(f"\t\t{rule}" for rule in rules)
    lines.append("\t}")
    return lines


def _rule_lines(rules: Iterable[SecurityRule]) -> list[str]:
    lines: list[str] = []
    for rule in rules:
        lines.extend(rule_statements(rule))
    return lines


def rule_statements(rule: SecurityRule) -> list[str]:
    """The nft rule lines for one whitelist entry (two for a remote group: IPv4 and IPv6)."""
    field = "saddr" if rule.direction is Direction.INGRESS else "daddr"
    peers: list[tuple[int, str]]
    if rule.cidr is not None:
        family = "ip" if rule.cidr.version == 4 else "ip6"
        peers = [(rule.cidr.version, f"{family} {field} {_address(rule.cidr)}")]
    else:
        assert rule.remote_group is not None
        peers = [(v, f"{'ip' if v == 4 else 'ip6'} {field} @{_members_set(rule.remote_group, v)}")
                 for v in (4, 6)]
    lines = []
    for version, peer in peers:
        lines.append(f"{peer}{_protocol_match(rule, version)} accept")
    return lines


def _protocol_match(rule: SecurityRule, version: int) -> str:
    if rule.protocol is Protocol.ANY:
        return ""
    if rule.protocol is Protocol.ICMP:
        return " meta l4proto icmp" if version == 4 else " meta l4proto ipv6-icmp"
    if rule.ports is None:
        return f" meta l4proto {rule.protocol}"
    return f" {rule.protocol} dport {rule.ports}"

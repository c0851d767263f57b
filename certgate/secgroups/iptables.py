"""Rendering a fleet to iptables/ip6tables chains, the model the seed describes.

One user-defined chain per group and direction (``CG-I-NAME`` in ``filter`` for ingress,
``CG-E-NAME`` in ``mangle`` for egress), one chain per NIC that jumps to its groups' chains and
then drops (``CG-N-IF`` / ``CG-O-IF``), and an anti-spoofing chain per NIC in ``raw``
(``CG-S-IF``). Three entry chains are jumped to from the built-in ones:

- ``raw PREROUTING -> CG-ANTISPOOF``: a packet from a VM's interface must carry its address;
- ``mangle FORWARD -> CG-EGRESS``: runs before ``filter``, so a restricted VM's egress is
  checked and the destination's ingress is still checked afterwards in ``filter``;
- ``filter FORWARD -> CG-INGRESS``: by output interface to the NIC chain.

Rules are written the way ``iptables-save`` prints them, so the loaded chains can be compared
line by line. Remote groups become one rule per member address (iptables has no sets without
ipset). Every chain certgate owns starts with ``CG-``; nothing else is written, except the
three jumps, which are inserted once at the top of their built-in chains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from certgate.secgroups.model import Direction, Fleet, Network, Protocol, SecurityRule

PREFIX = "CG-"
#: (table, built-in chain) -> certgate's entry chain
HOOKS: Mapping[tuple[str, str], str] = {
    ("raw", "PREROUTING"): "CG-ANTISPOOF",
    ("mangle", "FORWARD"): "CG-EGRESS",
    ("filter", "FORWARD"): "CG-INGRESS",
}
TABLES = ("raw", "mangle", "filter")
FAMILIES = (4, 6)

#: family -> table -> chain -> rule lines (``-A CHAIN ...``), chains in a stable order
Chains = dict[int, dict[str, dict[str, list[str]]]]


@dataclass(frozen=True)
class IptablesRuleset:
    chains: Chains
    text: str
    sha256: str


def render_iptables(fleet: Fleet) -> IptablesRuleset:
    chains: Chains = {v: {t: {} for t in TABLES} for v in FAMILIES}
    for version in FAMILIES:
        raw, mangle, filt = (chains[version][t] for t in TABLES)
        raw["CG-ANTISPOOF"] = []
        mangle["CG-EGRESS"] = ["-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
        filt["CG-INGRESS"] = []
        for group in fleet.groups:
            filt[f"CG-I-{group.name}"] = [
                line for rule in group.ingress for line in _rule_lines(rule, version, fleet)]
            if group.restrict_egress:
                mangle[f"CG-E-{group.name}"] = [
                    line for rule in group.egress for line in _rule_lines(rule, version, fleet)]
        for nic in fleet.nics:
            spoof = f"CG-S-{nic.ifname}"
            raw["CG-ANTISPOOF"].append(f"-i {nic.ifname} -j {spoof}")
            raw[spoof] = [f"-s {_cidr(a)} -j RETURN" for a in nic.addresses
                          if a.version == version]
            if version == 4:
                raw[spoof].append("-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp "
                                  "--sport 68 --dport 67 -j RETURN")
            else:
                raw[spoof].append("-s fe80::/10 -j RETURN")
            raw[spoof].append("-j DROP")
            filt["CG-INGRESS"].append(f"-o {nic.ifname} -j CG-N-{nic.ifname}")
            filt[f"CG-N-{nic.ifname}"] = (
                ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
                + [f"-j CG-I-{g}" for g in nic.groups] + ["-j DROP"])
            if fleet.egress_restricted(nic):
                mangle["CG-EGRESS"].append(f"-i {nic.ifname} -j CG-O-{nic.ifname}")
                mangle[f"CG-O-{nic.ifname}"] = [f"-j CG-E-{g}" for g in nic.groups] + ["-j DROP"]
    text = canonical_text(chains)
    return IptablesRuleset(chains, text, hashlib.sha256(text.encode()).hexdigest())


def _cidr(network: Network) -> str:
    return str(network)  # iptables-save always prints the prefix length


def _rule_lines(rule: SecurityRule, version: int, fleet: Fleet) -> list[str]:
    flag = "-s" if rule.direction is Direction.INGRESS else "-d"
    if rule.cidr is not None:
        peers = [rule.cidr] if rule.cidr.version == version else []
    else:
        assert rule.remote_group is not None
        peers = sorted({a for a in fleet.member_addresses(rule.remote_group)
                        if a.version == version}, key=lambda a: (int(a.network_address),
                                                                 a.prefixlen))
    return [f"{flag} {_cidr(peer)}{_protocol(rule, version)} -j ACCEPT" for peer in peers]


def _protocol(rule: SecurityRule, version: int) -> str:
    if rule.protocol is Protocol.ANY:
        return ""
    if rule.protocol is Protocol.ICMP:
        return " -p icmp" if version == 4 else " -p ipv6-icmp"
    if rule.ports is None:
        return f" -p {rule.protocol}"
    ports = (str(rule.ports.first) if rule.ports.first == rule.ports.last
             else f"{rule.ports.first}:{rule.ports.last}")
    return f" -p {rule.protocol} -m {rule.protocol} --dport {ports}"


def canonical_text(chains: Chains) -> str:
    """Both families' chains, sorted, one ``-A`` line per rule: what is hashed and diffed."""
    lines: list[str] = []
    for version in FAMILIES:
        for table in TABLES:
            for chain in sorted(chains[version][table]):
                lines.append(f"# ipv{version} {table} {chain}")
                lines.extend(f"-A {chain} {rule}" for rule in chains[version][table][chain])
    return "\n".join(lines) + "\n"


# -- what is loaded, and the restore script that gets from there to what is wanted -------------


@dataclass(frozen=True)
class LoadedTable:
    chains: dict[str, list[str]]  # certgate's chains and their rules (without "-A CHAIN ")
    jumps: frozenset[str]  # built-in chains that already jump to certgate's entry chain


def parse_save(text: str) -> dict[str, LoadedTable]:
    """certgate's part of one family's ``iptables-save`` output, by table."""
    found: dict[str, tuple[dict[str, list[str]], set[str]]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            found.setdefault(table, ({}, set()))
        elif line.startswith(":") and table:
            chain = line[1:].split()[0]
            if chain.startswith(PREFIX):
                found[table][0].setdefault(chain, [])
        elif line.startswith("-A ") and table:
            _, chain, rest = line.split(" ", 2)
            if chain.startswith(PREFIX):
                found[table][0].setdefault(chain, []).append(rest)
            elif HOOKS.get((table, chain)) and rest == f"-j {HOOKS[(table, chain)]}":
                found[table][1].add(chain)
    return {t: LoadedTable(chains, frozenset(jumps)) for t, (chains, jumps) in found.items()}


def loaded_chains(loaded: Mapping[int, Mapping[str, LoadedTable]]) -> Chains:
    return {v: {t: dict(loaded.get(v, {}).get(t, LoadedTable({}, frozenset())).chains)
                for t in TABLES} for v in FAMILIES}


def restore_script(wanted: Mapping[str, Mapping[str, list[str]]],
                   loaded: Mapping[str, LoadedTable]) -> str:
    """An ``iptables-restore --noflush`` script for one family: declare (and so flush)
    every certgate chain, fill the wanted ones, delete the stale ones, add missing jumps."""
    out: list[str] = []
    for table in TABLES:
        want = wanted.get(table, {})
        have = loaded.get(table, LoadedTable({}, frozenset()))
        stale = sorted(set(have.chains) - set(want))
        if not want and not stale:
            continue
        out.append(f"*{table}")
        out.extend(f":{chain} - [0:0]" for chain in sorted(set(want) | set(stale)))
        for chain in sorted(want):
            out.extend(f"-A {chain} {rule}" for rule in want[chain])
        for (hook_table, builtin), entry in HOOKS.items():
            if hook_table != table:
                continue
            if entry in want and builtin not in have.jumps:
                out.append(f"-I {builtin} 1 -j {entry}")
            if entry not in want and builtin in have.jumps:
                out.append(f"-D {builtin} -j {entry}")
        out.extend(f"-X {chain}" for chain in stale)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


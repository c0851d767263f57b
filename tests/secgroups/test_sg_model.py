"""Validation, warnings, the YAML form and the nftables text, without a kernel."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from certgate.policy.errors import PolicyError
from certgate.secgroups.diff import canonical_text, ruleset_diff
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
from certgate.secgroups.nftables import incremental_script, parse_blocks, render_nftables
from certgate.secgroups.validate import check_fleet, rule_warnings
from certgate.secgroups.values import parse_cidr, parse_group_name, parse_ifname, parse_ports
from certgate.secgroups.yamlform import load_groups

IN = Direction.INGRESS


def tcp(port: str, source: str) -> SecurityRule:
    return SecurityRule(IN, Protocol.TCP, parse_ports(port), cidr=ip_network(source))


def test_port_and_cidr_parsing_refuse_what_is_out_of_range() -> None:
    assert parse_ports("8000-8080") == PortRange(8000, 8080)
    for bad, message in (("0", "out of range"), ("65536", "out of range"),
                         ("90-80", "empty port range"), ("22,23", "invalid port")):
        with pytest.raises(ValueError, match=message):
            parse_ports(bad)
    with pytest.raises(ValueError, match="host bits set"):
        parse_cidr("10.0.0.1/8")
    with pytest.raises(ValueError, match="invalid CIDR"):
        parse_cidr("10.0.0.300")
    with pytest.raises(ValueError, match="invalid interface name"):
        parse_ifname("tap0; drop")
    with pytest.raises(ValueError, match="invalid security group name"):
        parse_group_name("a" * 24)


def test_redundant_and_overlapping_rules_are_warned_about() -> None:
    group = SecurityGroup("web", ingress=(
        tcp("22", "10.0.0.0/16"),
        tcp("22", "10.0.1.0/24"),          # shadowed by the first
        tcp("22", "10.0.0.0/16"),          # duplicates the first
        tcp("20-30", "10.0.0.0/24"),       # overlaps the first
        tcp("80", "192.168.0.0/24"),       # unrelated
        SecurityRule(IN, Protocol.ANY, cidr=ip_network("172.16.0.0/12")),
        tcp("443", "172.16.5.0/24"),       # shadowed by "any" from a wider source
    ))
    warnings = rule_warnings(group)
    assert warnings == [
        "group web: rule 1 (ingress tcp port 22 from 10.0.0.0/16) overlaps "
        "rule 4 (ingress tcp port 20-30 from 10.0.0.0/24)",
        "group web: rule 2 (ingress tcp port 22 from 10.0.1.0/24) is shadowed by "
        "rule 1 (ingress tcp port 22 from 10.0.0.0/16)",
        "group web: rule 3 (ingress tcp port 22 from 10.0.0.0/16) duplicates "
        "rule 1 (ingress tcp port 22 from 10.0.0.0/16)",
        "group web: rule 7 (ingress tcp port 443 from 172.16.5.0/24) is shadowed by "
        "rule 6 (ingress any from 172.16.0.0/12)",
    ]


def test_unknown_groups_and_shared_addresses_are_errors() -> None:
    web = SecurityGroup("web", ingress=(SecurityRule(IN, Protocol.TCP, remote_group="db"),))
    with pytest.raises(SecurityGroupError, match="refers to unknown security group 'db'"):
        check_fleet(Fleet.of([web], []))
    nic = Nic("vm1", "tap1", (ip_network("10.0.0.0/29"),), ("nosuch",))
    with pytest.raises(SecurityGroupError, match="bound to unknown security group 'nosuch'"):
        check_fleet(Fleet.of([], [nic]))
    one = Nic("vm1", "tap1", (ip_network("10.0.0.0/29"),))
    two = Nic("vm2", "tap2", (ip_network("10.0.0.5/32"),))
    with pytest.raises(SecurityGroupError, match=r"10.0.0.5/32 of interface tap2 \(VM vm2\) "
                                                 r"overlaps 10.0.0.0/29 of interface tap1"):
        check_fleet(Fleet.of([], [one, two]))


def test_a_group_may_admit_its_own_members() -> None:
    peers = SecurityGroup("peers", ingress=(
        SecurityRule(IN, Protocol.ANY, remote_group="peers"),))
    nics = [Nic("a", "tapa", (ip_network("10.0.0.1/32"),), ("peers",)),
            Nic("b", "tapb", (ip_network("10.0.0.2/32"),), ("peers",))]
    fleet = Fleet.of([peers], nics)
    assert check_fleet(fleet) == []
    body = render_nftables(fleet).body
    assert "elements = { 10.0.0.1, 10.0.0.2 }" in body
    assert parse_blocks(body)["chain sg_peers_in"] == [
        "ip saddr @members_peers_v4 accept", "ip6 saddr @members_peers_v6 accept"]


def test_the_nftables_table_dispatches_by_interface_and_drops_by_default() -> None:
    web = SecurityGroup("web", ingress=(
        tcp("443", "0.0.0.0/0"),
        SecurityRule(IN, Protocol.ICMP, cidr=ip_network("2001:db8::/32")),
        SecurityRule(IN, Protocol.UDP, cidr=ip_network("10.1.0.0/16")),
    ))
    nic = Nic("vm1", "vif1.0", (ip_network("10.0.0.5/32"), ip_network("2001:db8:1::5/128")),
              ("web",))
    blocks = parse_blocks(render_nftables(Fleet.of([web], [nic])).body)
    assert blocks["chain sg_web_in"] == [
        "ip saddr 0.0.0.0/0 tcp dport 443 accept",
        "ip6 saddr 2001:db8::/32 meta l4proto ipv6-icmp accept",
        "ip saddr 10.1.0.0/16 meta l4proto udp accept",
    ]
    assert blocks["chain nic_vif1.0_in"] == ["jump sg_web_in", "drop"]
    assert 'elements = { "vif1.0" : jump nic_vif1.0_in }' in blocks["map ingress_dispatch"]
    assert blocks["chain ingress"][1:] == ["ct state established,related accept",
                                           "oifname vmap @ingress_dispatch"]
    assert 'elements = { "vif1.0" . 10.0.0.5 }' in blocks["set nic_addrs_v4"]
    assert blocks["chain antispoof"][-1] == "drop"


def test_an_incremental_change_touches_only_the_changed_chain() -> None:
    before = Fleet.of([SecurityGroup("web", ingress=(tcp("80", "10.0.0.0/8"),)),
                       SecurityGroup("ssh", ingress=(tcp("22", "10.0.0.0/8"),))],
                      [Nic("vm1", "tap1", (ip_network("10.9.0.1/32"),), ("web", "ssh"))])
    after = Fleet.of([SecurityGroup("web", ingress=(tcp("8080", "10.0.0.0/8"),)),
                      SecurityGroup("ssh", ingress=(tcp("22", "10.0.0.0/8"),))],
                     before.nics)
    old, new = render_nftables(before), render_nftables(after)
    script = incremental_script(old.body, new)
    assert script is not None
    assert [line for line in script.splitlines() if "applied" not in line] == [
        "flush chain inet certgate_sg sg_web_in",
        "add rule inet certgate_sg sg_web_in ip saddr 10.0.0.0/8 tcp dport 8080 accept",
    ]
    diff = ruleset_diff(old.table, new.body)
    assert "-\tip saddr 10.0.0.0/8 tcp dport 80 accept" in diff
    assert "+\tip saddr 10.0.0.0/8 tcp dport 8080 accept" in diff
    assert ruleset_diff(new.table, new.body) == []


def test_the_canonical_form_ignores_how_nft_wraps_and_orders_elements() -> None:
    listed = ("table inet certgate_sg {\n\tset s {\n\t\ttype ipv4_addr\n"
              "\t\telements = { 10.0.0.2,\n\t\t\t     10.0.0.1 }\n\t}\n}\n")
    written = ("table inet certgate_sg {\n\tset s {\n\t\ttype ipv4_addr\n"
               "\t\telements = { 10.0.0.1, 10.0.0.2 }\n\t}\n}\n")
    assert canonical_text(listed) == canonical_text(written)


def test_the_yaml_form_names_the_line_and_column_of_a_mistake() -> None:
    text = ("version: 1\ngroups:\n  - name: web\n    ingress:\n"
            "      - {protocol: tcp, ports: 99999, from: 10.0.0.0/8}\n")
    with pytest.raises(PolicyError) as caught:
        load_groups(text, "groups.yaml")
    assert str(caught.value) == ("groups.yaml:5:32: groups[0].ingress[0].ports: port 99999 "
                                 "out of range (1-65535)")
    text = ("version: 1\ngroups:\n  - name: web\n    ingress:\n"
            "      - {protocol: tcp, from_group: dbs}\n")
    with pytest.raises(PolicyError, match=r"groups.yaml:5:37: .*unknown security group 'dbs'"):
        load_groups(text, "groups.yaml")
    with pytest.raises(PolicyError, match=r"groups.yaml:4:5: .*unknown key 'ingres'"):
        load_groups("version: 1\ngroups:\n  - name: web\n    ingres: []\n", "groups.yaml")
    with pytest.raises(PolicyError, match=r":4:11: .*'web' is defined twice"):
        load_groups("version: 1\ngroups:\n  - name: web\n  - name: web\n", "g.yaml")


def test_the_yaml_form_restricts_egress_only_where_egress_is_given() -> None:
    groups = load_groups("version: 1\ngroups:\n  - name: a\n  - name: b\n    egress: []\n"
                         "  - name: c\n    egress:\n      - {protocol: udp, ports: 53, "
                         "to: 10.0.0.53}\n")
    assert [(g.name, g.restrict_egress, len(g.egress)) for g in groups] == [
        ("a", False, 0), ("b", True, 0), ("c", True, 1)]

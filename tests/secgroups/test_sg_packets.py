"""Security groups loaded into a real packet filter, checked with real packets.

Everything happens inside namespaces the fixture creates (see sg_topology.py): a client, a host
that routes and two VMs behind veth pairs standing in for taps. certgate runs in the host's
namespace and loads its groups there; the client and the VMs connect to each other through
the host's forward hook. Every case runs once per backend (nftables, iptables).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sg_host import HostCertgate, new_home, require_netfilter
from sg_topology import CLIENT_OK, CLIENT_OTHER, VM1, VM2, Topology, run

from certgate.firewall.backends import backend_for
from certgate.firewall.errors import FirewallError
from certgate.firewall.operations import stored_fleet
from certgate.home import Home
from certgate.installation import Installation
from certgate.secgroups import iptables as ipt
from certgate.secgroups.model import Fleet

pytestmark = pytest.mark.slow


@dataclass
class Scenario:
    backend: str
    topo: Topology
    certgate: HostCertgate

    @property
    def vm1_if(self) -> str:
        return self.topo.ifname("vm1")

    @property
    def vm2_if(self) -> str:
        return self.topo.ifname("vm2")

    def apply(self) -> str:
        return self.certgate.ok("sg", "apply", "--backend", self.backend)


GROUPS_YAML = f"""\
version: 1
groups:
  - name: ssh
    description: ssh from the admin host only
    ingress:
      - {{protocol: tcp, ports: 22, from: {CLIENT_OK}}}
  - name: web
    ingress:
      - {{protocol: tcp, ports: 80, from: 10.211.1.0/24}}
  - name: app
  - name: db
    ingress:
      - {{protocol: tcp, ports: 5432, from_group: app}}
"""


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def scenario(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    require_netfilter()
    topo = Topology()
    try:
        topo.create()
        certgate = new_home(tmp_path_factory.mktemp(f"sg-{request.param}"), topo.ns("host"))
        s = Scenario(request.param, topo, certgate)
        certgate.ok("vm", "add", "vm1", "--console", "tcp:127.0.0.1:5901")
        certgate.ok("vm", "add", "vm2", "--console", "tcp:127.0.0.1:5902")
        groups = tmp_path_factory.mktemp(f"sg-{request.param}-file") / "groups.yaml"
        groups.write_text(GROUPS_YAML)
        certgate.ok("sg", "apply-file", str(groups), "--backend", request.param)
        certgate.ok("vm", "nic", "add", "vm1", s.vm1_if, "--addr", VM1,
                    "--sg", "ssh", "--sg", "web", "--sg", "app")
        certgate.ok("vm", "nic", "add", "vm2", s.vm2_if, "--addr", VM2,
                    "--sg", "ssh", "--sg", "db")
        for role, ports in (("vm1", (22, 80, 2222)), ("vm2", (22, 5432)),
                            ("client", (8080, 8081))):
            for port in ports:
                assert topo.agents[role].ask(op="listen_tcp", port=port)["ok"]
        assert topo.agents["client"].ask(op="listen_udp", port=9999)["ok"]
        # Before certgate loads anything, the host forwards everything.
        assert topo.tcp("client", VM1, 2222, source=CLIENT_OTHER, expect=True)
        s.apply()
        yield s
    finally:
        topo.destroy()


def test_a_whitelisted_source_reaches_the_vm_port(scenario: Scenario) -> None:
    answer = scenario.topo.agents["client"].ask(op="connect_tcp", host=VM1, port=22,
                                                source=CLIENT_OK, timeout=10.0)
    assert answer == {"ok": True, "banner": "vm1:22"}


def test_a_source_outside_the_whitelist_is_dropped(scenario: Scenario) -> None:
    assert not scenario.topo.tcp("client", VM1, 22, source=CLIENT_OTHER, expect=False)
    # the same source is admitted where a group's whitelist includes it
    assert scenario.topo.tcp("client", VM1, 80, source=CLIENT_OTHER, expect=True)


def test_a_port_no_rule_opens_is_dropped(scenario: Scenario) -> None:
    assert not scenario.topo.tcp("client", VM1, 2222, source=CLIENT_OK, expect=False)
    assert not scenario.topo.tcp("client", VM2, 5432, source=CLIENT_OK, expect=False)


def test_remote_group_rules_follow_membership_after_apply(scenario: Scenario) -> None:
    topo, certgate = scenario.topo, scenario.certgate
    assert topo.tcp("vm1", VM2, 5432, expect=True)
    certgate.ok("vm", "nic", "set-groups", "vm1", scenario.vm1_if, "--sg", "ssh", "--sg", "web")
    # stored, not yet applied: the loaded ruleset still admits vm1
    assert topo.tcp("vm1", VM2, 5432, expect=True)
    scenario.apply()
    assert not topo.tcp("vm1", VM2, 5432, expect=False)
    certgate.ok("vm", "nic", "set-groups", "vm1", scenario.vm1_if,
                "--sg", "ssh", "--sg", "web", "--sg", "app")
    scenario.apply()
    assert topo.tcp("vm1", VM2, 5432, expect=True)


def test_egress_from_a_vm_is_allowed_by_default(scenario: Scenario) -> None:
    answer = scenario.topo.agents["vm1"].ask(op="connect_tcp", host=CLIENT_OK, port=8080,
                                             timeout=10.0)
    assert answer == {"ok": True, "banner": "client:8080"}


def test_egress_rules_restrict_a_vm_whose_groups_all_restrict_egress(
        scenario: Scenario) -> None:
    topo, certgate = scenario.topo, scenario.certgate
    for group in ("ssh", "db"):
        certgate.ok("sg", "set", group, "--restrict-egress")
    certgate.ok("sg", "rule", "add", "db", "-p", "tcp", "--port", "8080", "--to", CLIENT_OK)
    try:
        scenario.apply()
        assert topo.tcp("vm2", CLIENT_OK, 8080, expect=True)
        assert not topo.tcp("vm2", CLIENT_OK, 8081, expect=False)
        # vm1 is also in web, which does not restrict egress
        assert topo.tcp("vm1", CLIENT_OK, 8081, expect=True)
    finally:
        for group in ("ssh", "db"):
            certgate.ok("sg", "set", group, "--allow-egress")
        scenario.apply()
    assert topo.tcp("vm2", CLIENT_OK, 8081, expect=True)


def test_a_vm_cannot_send_with_another_vms_address(scenario: Scenario) -> None:
    topo = scenario.topo
    run("ip", "-n", topo.ns("vm1"), "addr", "add", f"{VM2}/32", "dev", "eth0")
    try:
        assert topo.udp_reaches("vm1", VM1, "client", CLIENT_OK, 9999, expect=True) == [VM1]
        assert topo.udp_reaches("vm1", VM2, "client", CLIENT_OK, 9999, expect=False) == []
        # Control: without certgate's rules the forged datagram does get through.
        scenario.certgate.ok("sg", "unload", "--backend", scenario.backend)
        try:
            assert topo.udp_reaches("vm1", VM2, "client", CLIENT_OK, 9999,
                                    expect=True) == [VM2]
        finally:
            scenario.apply()
        assert topo.udp_reaches("vm1", VM2, "client", CLIENT_OK, 9999, expect=False) == []
    finally:
        run("ip", "-n", topo.ns("vm1"), "addr", "del", f"{VM2}/32", "dev", "eth0")


def test_reapplying_is_idempotent_and_the_dry_run_shows_no_difference(
        scenario: Scenario) -> None:
    again = scenario.apply()
    assert "already loaded" in again
    dry = scenario.certgate.ok("sg", "apply", "--dry-run", "--backend", scenario.backend)
    assert "# no difference from the loaded ruleset" in dry


def test_the_dry_run_shows_a_pending_change_and_changes_nothing(scenario: Scenario) -> None:
    certgate = scenario.certgate
    added = certgate.ok("sg", "rule", "add", "web", "-p", "tcp", "--port", "2222",
                        "--from", CLIENT_OK)
    rule_id = added.split()[2]
    try:
        dry = certgate.ok("sg", "apply", "--dry-run", "--backend", scenario.backend)
        diff = [line for line in dry.splitlines() if line.startswith("+") and "2222" in line]
        assert diff, dry
        assert not scenario.topo.tcp("client", VM1, 2222, source=CLIENT_OK, expect=False)
        scenario.apply()
        assert scenario.topo.tcp("client", VM1, 2222, source=CLIENT_OK, expect=True)
    finally:
        certgate.ok("sg", "rule", "rm", "web", rule_id)
        scenario.apply()
    assert not scenario.topo.tcp("client", VM1, 2222, source=CLIENT_OK, expect=False)


def test_rejected_input_leaves_the_loaded_ruleset_untouched(scenario: Scenario) -> None:
    certgate = scenario.certgate
    before = certgate.ok("sg", "apply", "--dry-run", "--backend", scenario.backend)
    assert "not in" not in certgate.refused("sg", "rule", "add", "web", "--port", "70000",
                                            "--from", CLIENT_OK)
    certgate.refused("sg", "rule", "add", "web", "--port", "80", "--from", "10.0.0.1/8")
    certgate.refused("sg", "rule", "add", "web", "--port", "80", "--from-group", "nosuch")
    certgate.refused("vm", "nic", "add", "vm1", "tap-nosuch", "--addr", VM2, "--sg", "web")
    certgate.refused("vm", "nic", "add", "vm1", "tap-x", "--sg", "nosuch")
    certgate.refused("vm", "nic", "rm", "vm1", "tap-nosuch")
    assert certgate.ok("sg", "apply", "--dry-run", "--backend", scenario.backend) == before
    assert scenario.topo.tcp("client", VM1, 22, source=CLIENT_OK, expect=True)


def test_nothing_outside_certgates_own_rules_is_touched(scenario: Scenario) -> None:
    host = scenario.topo.ns("host")
    if scenario.backend == "nftables":
        run("ip", "netns", "exec", host, "nft", "add", "table", "inet", "operator")
        run("ip", "netns", "exec", host, "nft", "add", "chain", "inet", "operator", "keep")
        listing = ["ip", "netns", "exec", host, "nft", "list", "table", "inet", "operator"]
    else:
        run("ip", "netns", "exec", host, "iptables", "-N", "OPERATOR")
        run("ip", "netns", "exec", host, "iptables", "-A", "OPERATOR", "-s", "10.9.9.9",
            "-j", "ACCEPT")
        listing = ["ip", "netns", "exec", host, "iptables", "-S", "OPERATOR"]
    before = subprocess.run(listing, capture_output=True, text=True, check=True).stdout
    scenario.certgate.ok("sg", "apply", "--full", "--backend", scenario.backend)
    scenario.certgate.ok("sg", "unload", "--backend", scenario.backend)
    after = subprocess.run(listing, capture_output=True, text=True, check=True).stdout
    scenario.apply()
    assert after == before and before.strip()


def test_loaded_state_stays_single_and_private(scenario: Scenario) -> None:
    host = scenario.topo.ns("host")
    if scenario.backend == "nftables":
        cache = Path(scenario.certgate.home) / "firewall"
        assert cache.is_dir() and (cache.stat().st_mode & 0o077) == 0
        tables = subprocess.run(["ip", "netns", "exec", host, "nft", "list", "tables"],
                                capture_output=True, text=True, check=True).stdout
        assert tables.count("certgate_sg") == 1
        return
    scenario.certgate.ok("sg", "apply", "--full", "--backend", scenario.backend)
    for table, chain, entry in (("raw", "PREROUTING", "CG-ANTISPOOF"),
                                ("mangle", "FORWARD", "CG-EGRESS"),
                                ("filter", "FORWARD", "CG-INGRESS")):
        rules = subprocess.run(["ip", "netns", "exec", host, "iptables", "-t", table, "-S",
                                chain], capture_output=True, text=True, check=True).stdout
        assert rules.splitlines().count(f"-A {chain} -j {entry}") == 1, rules


def test_a_refused_apply_leaves_the_previous_rules_loaded(scenario: Scenario) -> None:
    prefix = ["ip", "netns", "exec", scenario.topo.ns("host")]
    backend = backend_for(scenario.backend, None, prefix)
    text, _ = backend.render(stored_fleet_of(scenario))
    if scenario.backend == "nftables":
        broken, broken_sha = text.replace("\t\tdrop\n", "\t\tdrop_everything\n", 1), "0" * 64
    else:
        # a rule the kernel refuses, in the last family committed (IPv6): the IPv4 part
        # must not stay half-applied either
        ruleset = ipt.render_iptables(stored_fleet_of(scenario))
        ruleset.chains[6]["filter"]["CG-INGRESS"].append("-p tcp --dport 70000 -j ACCEPT")
        ruleset.chains[4]["filter"]["CG-INGRESS"].append("-p tcp --dport 7 -j DROP")
        broken_text = ipt.canonical_text(ruleset.chains)
        backend._rendered["x" * 64] = ipt.IptablesRuleset(  # type: ignore[attr-defined]
            ruleset.chains, broken_text, "x" * 64)
        broken, broken_sha = broken_text, "x" * 64
    with pytest.raises(FirewallError, match="refused"):
        backend.apply(broken, broken_sha, full=True)
    assert backend.diff(text) == []
    assert scenario.topo.tcp("client", VM1, 22, source=CLIENT_OK, expect=True)
    assert not scenario.topo.tcp("client", VM1, 22, source=CLIENT_OTHER, expect=False)


def stored_fleet_of(scenario: Scenario) -> Fleet:
    inst = Installation(Home(scenario.certgate.home))
    try:
        return stored_fleet(inst)
    finally:
        inst.close()

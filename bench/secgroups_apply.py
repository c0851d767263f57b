"""How long does it take to generate and load security groups for a large fleet?

    sudo .venv/bin/python bench/secgroups_apply.py [--vms 1000] [--groups 10] [--rules 20]
                                                  [--groups-per-vm 3] [--repeat 5]

Fleet: --vms VMs with one interface each (one IPv4 and one IPv6 address), --groups groups of
--rules ingress rules each (every fifth rule a remote-group rule, the rest CIDR rules),
each interface in --groups-per-vm groups. One group restricts egress.

Measured (medians of --repeat runs; loading happens in a throwaway network namespace, so the
host's own ruleset is never touched):

  check       check_fleet (errors, shadowing and overlap warnings)
  render      render_nftables (the whole table as text)
  apply-full  ``nft -f`` of the whole table, replacing a loaded one (one transaction)
  reapply-1   re-apply after one rule changed (the incremental path: hash read + small
              transaction)
  reapply-nic re-apply after one interface moved to another group (set elements + a chain)
  unchanged   re-apply with nothing changed (hash read only)

Baseline, measured in the same run: ``nft -f`` of an empty table in the same namespace -- the
fixed cost of starting nft at all. Ratios are against it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path

from certgate.firewall.nft_host import NftHost
from certgate.secgroups.model import (
    Direction,
    Fleet,
    Nic,
    PortRange,
    Protocol,
    SecurityGroup,
    SecurityRule,
)
from certgate.secgroups.nftables import render_nftables
from certgate.secgroups.validate import check_fleet


def build_fleet(vms: int, groups: int, rules: int, per_vm: int) -> Fleet:
    made = []
    for g in range(groups):
        ingress = []
        for r in range(rules):
            if r % 5 == 0:
                ingress.append(SecurityRule(Direction.INGRESS, Protocol.TCP,
                                            PortRange(1000 + r, 1000 + r),
                                            remote_group=f"g{(g + 1) % groups}"))
            else:
                protocol = Protocol.TCP if r % 2 else Protocol.UDP
                ingress.append(SecurityRule(Direction.INGRESS, protocol,
                                            PortRange(2000 + r, 2000 + r),
                                            cidr=ip_network(f"10.{100 + g}.{r}.0/24")))
        egress = (SecurityRule(Direction.EGRESS, Protocol.ANY,
                               cidr=ip_network("10.0.0.0/8")),) if g == 0 else ()
        made.append(SecurityGroup(f"g{g}", ingress=tuple(ingress), egress=egress,
                                  restrict_egress=g == 0))
    nics = [Nic(f"vm{i}", f"tap{i}",
                (ip_network(f"10.{i // 250}.{i % 250}.1/32"), ip_network(f"fd00::{i:x}/128")),
                tuple(f"g{(i + k) % groups}" for k in range(per_vm)))
            for i in range(vms)]
    return Fleet.of(made, nics)


def change_one_rule(fleet: Fleet, port: int) -> Fleet:
    first = fleet.groups[0]
    rule = replace(first.ingress[1], ports=PortRange(port, port))
    changed = replace(first, ingress=(first.ingress[0], rule, *first.ingress[2:]))
    return Fleet.of((changed, *fleet.groups[1:]), fleet.nics)


def move_one_nic(fleet: Fleet, groups: tuple[str, ...]) -> Fleet:
    nic = fleet.nics[0]
    return Fleet.of(fleet.groups, (replace(nic, groups=groups), *fleet.nics[1:]))


def median_of(repeat: int, run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(repeat))


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--groups-per-vm", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the ruleset is loaded into a throwaway network namespace")
    fleet = build_fleet(args.vms, args.groups, args.rules, args.groups_per_vm)
    namespace = f"cgbench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        with tempfile.TemporaryDirectory() as cache:
            run(fleet, namespace, Path(cache), args)
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)


def run(fleet: Fleet, namespace: str, cache: Path, args: argparse.Namespace) -> None:
    prefix = ["ip", "netns", "exec", namespace]
    host = NftHost(cache, command_prefix=prefix)
    load = os.getloadavg()
    ruleset = render_nftables(fleet)
    rules = sum(len(g.rules) for g in fleet.groups)
    print(f"fleet: {len(fleet.nics)} VMs, {len(fleet.groups)} groups x {args.rules} rules "
          f"({rules} rules), {args.groups_per_vm} groups per VM; "
          f"table: {ruleset.table.count(chr(10))} lines")

    def empty_table() -> float:
        return timed(lambda: subprocess.run(
            [*prefix, "nft", "-f", "-"], input="table inet certgate_bench {\n}\n",
            text=True, check=True))

    baseline = median_of(args.repeat, empty_table)
    check = median_of(args.repeat, lambda: timed(lambda: check_fleet(fleet)))
    render = median_of(args.repeat, lambda: timed(lambda: render_nftables(fleet)))
    host.apply(ruleset, full=True)
    full = median_of(args.repeat, lambda: host.apply(ruleset, full=True).seconds)

    ports = iter(range(30000, 40000))
    changes: list[float] = []
    for _ in range(args.repeat):
        changed = render_nftables(change_one_rule(fleet, next(ports)))
        outcome = host.apply(changed)
        assert outcome.mode == "incremental", outcome
        changes.append(outcome.seconds)
    moves: list[float] = []
    for index in range(args.repeat):
        groups = ("g5", "g6") if index % 2 == 0 else ("g7",)
        outcome = host.apply(render_nftables(move_one_nic(fleet, groups)))
        assert outcome.mode == "incremental", outcome
        moves.append(outcome.seconds)
    last = render_nftables(move_one_nic(fleet, ("g7",) if args.repeat % 2 else ("g5", "g6")))
    unchanged = median_of(args.repeat, lambda: host.apply(last).seconds)
    reapply_1 = statistics.median(changes)
    reapply_nic = statistics.median(moves)
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'step':<12} {'median':>10} {'x baseline':>11}")
    for name, seconds in (("baseline", baseline), ("check", check), ("render", render),
                          ("apply-full", full), ("reapply-1", reapply_1),
                          ("reapply-nic", reapply_nic), ("unchanged", unchanged)):
        print(f"{name:<12} {seconds * 1000:>8.1f}ms {seconds / baseline:>10.1f}x")
    print(f"aims: apply-full < 1 s: {'met' if full < 1 else 'MISSED'}; "
          f"reapply-1 < 200 ms: {'met' if reapply_1 < 0.2 else 'MISSED'}")


if __name__ == "__main__":
    main()

"""Benchmark: listing the VMs a holder may reach, through the access core, over a 10k-VM fleet.

    python bench/access_reachable.py [--vms 10000] [--rules 1000] [--runs 7]

What ``whoami``, the gateway's VM listing and the review site's scope call:
``AccessService.reachable(identity, source)`` on a real installation (SQLite, the fleet and
the 1,000-rule policy of bench/policy_decide.py stored in it; the holder's roles, clearance
and grant come from three attribute certificates, one of them limited to two VMs). Measured
in one run, alternating, each the median of ``--runs``:

- ``AccessService.reachable``: one snapshot of the store, the holder's ACs approved once per
  group of VMs that share approved attributes, one index listing per group; the VM rows are
  reused while the store's change counter stands (``FleetCache``);
- the same, first listing after a change to the store (the 10k VM rows read again);
- its parts: the snapshot alone (the store read), and the index listing alone
  (``reachable_vms`` over prepared ``VMInfo`` objects: the floor of any listing);
- the code before (same run, same store): a grant per VM (``AccessService._grant``: AC
  approval and a ``decide`` for every VM), timed on ``--baseline-vms`` VMs and scaled.

Wall and CPU (this thread's) are both printed with the load average: the machine is shared.
The listings' answers are compared; a difference aborts the run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from policy_decide import fleet, policy_text  # noqa: E402

from ca.attributes import AttributeSet, ClearanceLevel  # noqa: E402
from ca.keys import generate_private_key  # noqa: E402
from certgate.access import AccessService  # noqa: E402
from certgate.access.snapshot import FleetCache  # noqa: E402
from certgate.fleet import apply_policy  # noqa: E402
from certgate.home import Home  # noqa: E402
from certgate.installation import Installation  # noqa: E402
from certgate.policy import VIEW, RequestContext, Subject, VMInfo, reachable_vms  # noqa: E402
from certgate.provisioning import InitOptions, create_installation  # noqa: E402
from certgate.store import repositories as repo  # noqa: E402

PASSPHRASE = b"bench passphrase"
SOURCE = "10.1.2.3"


def build(root: Path, vm_count: int, rules: int) -> tuple[Installation, list[VMInfo], str]:
    rng = random.Random(8)
    vms = fleet(vm_count, rng)
    text = policy_text(rules, vm_count, rng)
    home = Home(root / "home")
    create_installation(home, InitOptions(gateway_name="gw.bench"), passphrase=PASSPHRASE,
                        actor="bench")
    inst = Installation(home, actor="bench", passphrase=lambda: PASSPHRASE)
    with inst.admin_write() as session:  # one transaction for the whole fleet
        for vm in vms:
            repo.add_vm(session, vm.name, "tcp:127.0.0.1:1", dict(vm.labels))
    apply_policy(inst, text, "bench.yaml")
    inst.ca.add_user("alice", email=None, public_key=generate_private_key("ed25519").public_key(),
                     days=30)
    valid = timedelta(hours=8)
    inst.ca.grant("alice", AttributeSet(roles=("t07-ops", "t07-web")), valid_for=valid)
    inst.ca.grant("alice", AttributeSet(clearance=ClearanceLevel.SECRET, grants=("oncall",)),
                  valid_for=valid)
    inst.ca.grant("alice", AttributeSet(roles=("t12-db",)), valid_for=valid,
                  targets=(vms[12].name, vms[62].name))
    return inst, vms, text


def timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    start, cpu = time.perf_counter(), time.thread_time()
    result = run()
    return (time.perf_counter() - start) * 1000, (time.thread_time() - cpu) * 1000, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline-vms", type=int, default=1_000,
                        help="VMs decided one by one (the code before), scaled to the fleet")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certgate-bench-") as tmp:
        inst, vms, _ = build(Path(tmp), options.vms, options.rules)
        try:
            return measure(inst, vms, options)
        finally:
            inst.close()


def measure(inst: Installation, vms: list[VMInfo], options: argparse.Namespace) -> int:
    access = AccessService(inst)
    identity = access.identity_of_user("alice")
    at = datetime.now(UTC)
    listing = access.reachable(identity, SOURCE, at=at)  # warm: policy parsed, ACs verified
    _, policy = access.current_policy()
    approval = access.approval_at_gateway(identity, at)
    subject = Subject("alice", approval.attributes)
    context = RequestContext(ip_address(SOURCE), at)

    def per_vm(snapshot_vms: int | None = None) -> list[str]:
        # The code before: a full grant (AC approval + decide) per VM.
        snapshot = access._snapshot(identity, None, at)
        found = []
        for vm in snapshot.vms[:snapshot_vms]:
            grant = access._grant(identity, snapshot, vm, SOURCE, at)
            if grant.permits(VIEW):
                found.append(vm.name)
        return found

    reference = per_vm()
    if [vm.name for vm, _ in listing] != reference:
        print("MISMATCH between the grouped listing and per-VM grants", file=sys.stderr)
        return 1
    figures: dict[str, list[tuple[float, float]]] = {
        "AccessService.reachable (grouped)": [],
        "AccessService.reachable, first after a store change (fleet re-read)": [],
        "its snapshot (store read)": [],
        "index listing alone (reachable_vms)": [], "per-VM grants (before), scaled": []}
    scale = len(vms) / options.baseline_vms
    for _ in range(options.runs):
        wall, cpu, _ = timed(lambda: access.reachable(identity, SOURCE, at=at))
        figures["AccessService.reachable (grouped)"].append((wall, cpu))
        access._fleet = FleetCache()  # as after any committed change to the store
        wall, cpu, _ = timed(lambda: access.reachable(identity, SOURCE, at=at))
        figures["AccessService.reachable, first after a store change (fleet re-read)"].append(
            (wall, cpu))
        wall, cpu, _ = timed(lambda: access._snapshot(identity, None, at))
        figures["its snapshot (store read)"].append((wall, cpu))
        wall, cpu, _ = timed(lambda: reachable_vms(policy, subject, vms, context))
        figures["index listing alone (reachable_vms)"].append((wall, cpu))
        wall, cpu, _ = timed(lambda: per_vm(options.baseline_vms))
        figures["per-VM grants (before), scaled"].append((wall * scale, cpu * scale))
    load = os.getloadavg()
    print(f"{len(vms)} VMs x {options.rules} rules, SQLite, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"holder reaches {len(listing)} VMs; {options.runs} runs, alternating")
    print()
    print("| figure | wall, median | CPU, median | wall runs (ms) | aim |")
    print("|---|---:|---:|---|---|")
    for label, samples in figures.items():
        walls = [w for w, _ in samples]
        print(f"| {label} | {statistics.median(walls):,.1f} ms | "
              f"{statistics.median(c for _, c in samples):,.1f} ms | "
              f"{', '.join(f'{w:.0f}' for w in walls)} | "
              f"{'≤ 50 ms' if label.startswith('AccessService') else ''} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: policy decisions at fleet scale, compiled index against the rule-by-rule scan.

    python bench/policy_decide.py [--vms 10000] [--rules 1000] [--samples 2000]

A generated fleet (VMs named ``tNN-role-NNNN`` with env/team/tier labels) and a generated
policy document (YAML, loaded with ``load_policy``) mixing literal names, prefix and suffix
globs, label selectors, deny rules, clearances, grants, source whitelists and time windows.
Measured in one run, same data:

(a) ``decide`` for one holder and one VM, median over distinct VMs (each VM's first decision
    on a freshly compiled index, so no per-name cache is warm), for a holder on each VM it may
    reach and for a refused holder on random VMs: ``decide`` (compiled
    index) vs ``decide_by_scanning`` (the reference evaluator, the code before the index); a
    refusal's reasons are written when first read, so the refusal is timed twice: the
    decision alone, and the decision with its reasons read (what an audit event of it pays);
(b) listing the VMs a holder may reach over the whole fleet (median of ``--list-runs``):
    ``reachable_vms`` vs the reference
    (the reference is timed on ``--baseline-vms`` VMs and scaled linearly, because the full
    listing takes about a minute);
(c) compiling the index (once per policy version).

Both evaluators' answers are compared on every sampled VM; a difference aborts the run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ca.attributes import AttributeSet, ClearanceLevel  # noqa: E402
from certgate.policy import (  # noqa: E402
    Policy,
    RequestContext,
    Subject,
    VMInfo,
    decide,
    load_policy,
    reachable_vms,
)
from certgate.policy.evaluate import decide_by_scanning, reachable_vms_by_scanning  # noqa: E402
from certgate.policy.index import PolicyIndex  # noqa: E402

TEAMS = 50
ROLES = ("web", "db", "cache", "batch")
ENVS = ("prod", "staging", "lab")


def fleet(count: int, rng: random.Random) -> list[VMInfo]:
    vms = []
    for n in range(count):
        team = n % TEAMS
        role = ROLES[(n // TEAMS) % len(ROLES)]
        vms.append(VMInfo(
            f"t{team:02d}-{role}-{n:05d}",
            {"env": rng.choice(ENVS), "team": f"t{team:02d}", "tier": str(n % 3)},
        ))
    return vms


def policy_text(count: int, vm_count: int, rng: random.Random) -> str:
    lines = ["version: 1", "rules:"]
    for i in range(count):
        team = f"t{rng.randrange(TEAMS):02d}"
        role = rng.choice(ROLES)
        kind = i % 10
        effect = "deny" if kind == 9 else "allow"
        lines += [f"  - name: r{i:04d}", f"    effect: {effect}"]
        if kind in (0, 1, 2, 3):
            lines.append(f"    vms: {{names: ['{team}-{role}-*']}}")
        elif kind in (4, 5):
            lines.append(f"    vms: {{labels: {{team: {team}, env: {rng.choice(ENVS)}}}}}")
        elif kind in (6, 7):
            names = ", ".join(
                f"'t{(n % TEAMS):02d}-{ROLES[(n // TEAMS) % len(ROLES)]}-{n:05d}'"
                for n in rng.sample(range(vm_count), 3))
            lines.append(f"    vms: {{names: [{names}]}}")
        elif kind == 8:
            lines.append(f"    vms: {{names: ['*-{role}-{rng.randrange(10)}*']}}")
        else:
            lines.append(f"    vms: {{labels: {{team: {team}, env: prod}}}}")
        require = [f"roles: [{team}-ops, {team}-{role}]"]
        if kind == 9:
            require = ["groups: [contractors]"]
        elif kind == 3:
            require.append("clearance: secret")
        elif kind == 5:
            require.append("grants: [oncall]")
        lines.append(f"    require: {{{', '.join(require)}}}")
        if kind == 2:
            lines.append("    when: {sources: ['10.0.0.0/8', '2001:db8::/32']}")
        if kind == 7:
            lines.append(
                "    when: {time: {days: [mon, tue, wed, thu, fri], hours: '07:00-19:00'}}")
        privilege = "console.view" if kind == 9 else rng.choice(
            ["console.view", "console.interact", "console.break"])
        lines.append(f"    privileges: [{privilege}]")
        if kind == 0:
            lines.append("    session: {max: 8h, idle: 30m}")
    return "\n".join(lines) + "\n"


def median_us(policy: Policy, subject: Subject, vms: list[VMInfo], context: RequestContext,
              evaluator: object) -> float:
    samples = []
    for vm in vms:
        start = time.perf_counter()
        evaluator(policy, subject, vm, context)  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=2_000,
                        help="VMs decided by the index (each once)")
    parser.add_argument("--baseline-samples", type=int, default=200,
                        help="VMs decided by the reference scan (each once)")
    parser.add_argument("--list-runs", type=int, default=5,
                        help="listings by the index (median reported)")
    parser.add_argument("--baseline-vms", type=int, default=1_000,
                        help="VMs listed by the reference scan (scaled to the fleet)")
    options = parser.parse_args()
    rng = random.Random(8)
    vms = fleet(options.vms, rng)
    text = policy_text(options.rules, options.vms, rng)
    policy = load_policy(text, "bench.yaml")
    context = RequestContext(ip_address("10.1.2.3"), datetime(2026, 11, 25, 10, tzinfo=UTC))
    # Team 7's operator (allowed on many VMs), and a contractor of no team (refused).
    allowed = Subject("alice", AttributeSet(roles=("t07-ops", "t07-web", "t12-db"),
                                            clearance=ClearanceLevel.SECRET, grants=("oncall",)))
    refused = Subject("mallory", AttributeSet(groups=("contractors",)))

    start = time.perf_counter()
    PolicyIndex(policy.rules)
    compile_ms = (time.perf_counter() - start) * 1000

    # Decide on VMs the allowed holder can reach, so (a) measures an allowed decision.
    reachable = [vm for vm, _ in reachable_vms(policy, allowed, vms, context)]
    order = rng.sample(vms, len(vms))
    allowed_vms = reachable[: options.samples]
    for vm in order[: options.baseline_samples] + allowed_vms[: options.baseline_samples]:
        for who in (allowed, refused):
            if decide(policy, who, vm, context) != decide_by_scanning(policy, who, vm, context):
                print(f"MISMATCH on {vm.name} for {who.identity}", file=sys.stderr)
                return 1

    def decide_and_read_reasons(policy: Policy, subject: Subject, vm: VMInfo,
                                context: RequestContext) -> object:
        return decide(policy, subject, vm, context).reasons

    results: dict[str, tuple[float, float]] = {}
    for label, subject, targets, evaluator in (
        ("allowed holder, VM it may reach", allowed, allowed_vms, decide),
        ("refused holder, random VM", refused, order, decide),
        ("refused holder, random VM, reasons read (what its audit event pays)", refused, order,
         decide_and_read_reasons),
    ):
        fresh = load_policy(text, "bench.yaml")  # a cold index: no per-name cache entries
        index_us = median_us(fresh, subject, targets[: options.samples], context, evaluator)
        scan_us = median_us(fresh, subject, targets[: options.baseline_samples], context,
                            decide_by_scanning)
        results[label] = (scan_us, index_us)

    fresh = load_policy(text, "bench.yaml")
    runs, cpu_runs = [], []
    for _ in range(options.list_runs):
        start, cpu_start = time.perf_counter(), time.thread_time()
        listing = reachable_vms(fresh, allowed, vms, context)
        runs.append((time.perf_counter() - start) * 1000)
        cpu_runs.append((time.thread_time() - cpu_start) * 1000)
    list_ms = statistics.median(runs)
    part = vms[: options.baseline_vms]
    start = time.perf_counter()
    reference = reachable_vms_by_scanning(policy, allowed, part, context)
    scan_list_ms = (time.perf_counter() - start) * 1000 * len(vms) / len(part)
    if reference != reachable_vms(policy, allowed, part, context):
        print("MISMATCH in the reachable listing", file=sys.stderr)
        return 1

    load = os.getloadavg()
    print(f"{options.vms} VMs x {options.rules} rules, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; index compiled in {compile_ms:.0f} ms; "
          f"holder reaches {len(listing)} VMs")
    print()
    print("| figure | rule-by-rule scan (before) | compiled index | speed-up | aim |")
    print("|---|---:|---:|---:|---|")
    for label, (scan_us, index_us) in results.items():
        print(f"| `decide` median, {label} | {scan_us:,.0f} µs | {index_us:,.1f} µs | "
              f"{scan_us / index_us:,.0f}x | "
              f"{'-' if 'reasons read' in label else '≤ 20 µs'} |")
    print(f"| list reachable VMs over {options.vms:,} VMs | {scan_list_ms / 1000:,.1f} s "
          f"(scaled from {len(part):,} VMs) | {list_ms:,.1f} ms (runs "
          f"{', '.join(f'{r:.0f}' for r in runs)}; CPU median "
          f"{statistics.median(cpu_runs):.0f} ms) | "
          f"{scan_list_ms / list_ms:,.0f}x | ≤ 50 ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How many attribute certificates certgate issues per second, database write included.

    python bench/ac_issue.py [--count N] [--rounds 5] [--postgres] [--profile]
                             [--before-tree DIR]

Measures, in one run and on the same installation, the operations taking turns in
``--rounds`` rounds (the disk's fsync time swings with the machine's other users):

* the baseline: building and signing an AC alone (``AttributeCertificateIssuer.issue``), no
  database;
* the commit floor: a one-row INSERT and COMMIT per transaction, with the installation's
  durability: what any one-AC transaction must pay at least;
* ``Installation.grant`` (``CAService.grant``): one AC per transaction, with its certificate
  row and audit event. This is the issue's "CLI path": ``certgate attr grant alice role=a
  group=b ...`` puts every attribute in one AC, so one user is one AC and one transaction;
* ``Installation.grant_many``: many ACs in one transaction (bulk issuance, what
  ``certgate attr grant alice,bob,... ATTR=VALUE...`` does: one AC per user, one commit).

* with ``--before-tree DIR`` (a checkout of another commit, e.g. ``git worktree add DIR
  6c60aca``): that tree's ``Installation.grant``, one AC per transaction, in a worker process
  (this script with ``PYTHONPATH=DIR``, on its own installation in the same temporary
  directory's file system), taking its turn in the same rounds: a before/after in one run.

Each row gives the rate (wall) and this thread's CPU per AC: for one AC per transaction the
difference is time spent waiting on fsync.

SQLite runs as certgate configures it (WAL, synchronous=FULL: every commit is fsynced).
PostgreSQL (``--postgres``) is a throwaway cluster from tests/pg.py, which runs with
fsync=off, so its numbers exclude the disk flush.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from cryptography import x509
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ca.attributes import AttributeSet
from ca.keys import generate_private_key
from certgate.ca_service import GrantRequest
from certgate.home import Home
from certgate.installation import Installation
from certgate.provisioning import InitOptions, create_installation

PASSPHRASE = b"bench passphrase"
ATTRIBUTES = AttributeSet(roles=("operator",), groups=("ops",), grants=("console.break",))
VALID_FOR = timedelta(hours=8)
TARGETS = ("vm1",)


@dataclass(frozen=True)
class Result:
    backend: str
    what: str
    count: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def installation(root: Path, database_url: str | None) -> Installation:
    home = Home(root / "home")
    create_installation(home, InitOptions(gateway_name="gw.bench", database_url=database_url),
                        passphrase=PASSPHRASE, actor="bench")
    inst = Installation(home, actor="bench", passphrase=lambda: PASSPHRASE)
    key = generate_private_key("ed25519")
    inst.ca.add_user("bench", email=None, public_key=key.public_key(), days=30)
    return inst


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """Wall seconds and this thread's CPU seconds (the rest is waiting: fsync, the lock)."""
    start, cpu = time.perf_counter(), time.thread_time()
    run()
    return time.perf_counter() - start, time.thread_time() - cpu


class BeforeTree:
    """Another checkout's ``Installation.grant`` in a worker process, run on request."""

    def __init__(self, tree: Path, scratch: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-grants", str(scratch)], env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready, _, source = self._read().partition(" ")
        if ready != "ready":
            raise RuntimeError(f"the worker for {tree} did not start")
        self.source = source  # where the worker's certgate came from, to check the tree

    def _read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def grant(self, count: int) -> tuple[float, float]:
        """Wall and CPU seconds the worker spent on ``count`` grants (its own clock)."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        wall, cpu = self._read().split()
        return float(wall), float(cpu)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(60)


def serve_grants(scratch: Path) -> int:
    """The worker side of ``--before-tree``: grants on request, one AC per transaction."""
    inst = installation(scratch, None)

    def grants(count: int) -> None:
        for _ in range(count):
            inst.ca.grant("bench", ATTRIBUTES, valid_for=VALID_FOR, targets=TARGETS)

    try:
        grants(1)  # warm up
        print(f"ready {Path(sys.modules['certgate'].__file__ or '?').parent}", flush=True)
        for line in sys.stdin:
            wall, cpu = timed(partial(grants, int(line)))
            print(f"{wall} {cpu}", flush=True)
    finally:
        inst.close()
    return 0


def measure(inst: Installation, backend: str, count: int, rounds: int,
            profile: bool, before: BeforeTree | None = None) -> list[Result]:
    with inst.database.read() as session:
        holder = x509.load_der_x509_certificate(inst.ca.current_identity(session, "bench").der)
    issuer = inst.ca.ac_issuer
    inst.ca.grant("bench", ATTRIBUTES, valid_for=VALID_FOR, targets=TARGETS)  # warm up

    def baseline(count: int) -> None:
        start = datetime.now(UTC).replace(microsecond=0)
        for _ in range(count):
            issuer.issue(holder, ATTRIBUTES, not_before=start, not_after=start + VALID_FOR,
                         targets=TARGETS, no_rev_avail=True)

    def one_per_transaction(count: int) -> None:
        for _ in range(count):
            inst.ca.grant("bench", ATTRIBUTES, valid_for=VALID_FOR, targets=TARGETS)

    def one_transaction(count: int) -> None:
        inst.ca.grant_many([GrantRequest("bench", ATTRIBUTES, VALID_FOR, TARGETS)] * count)

    def commit_floor(count: int) -> None:
        # What any one-AC transaction must pay at least: one row inserted and committed, with
        # the installation's durability (one fsync per commit on SQLite).
        for n in range(count):
            with inst.database.write() as session:
                session.execute(text("INSERT INTO bench_floor (n) VALUES (:n)"), {"n": n})

    with inst.database.write() as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS bench_floor (n INTEGER)"))
    systems: list[tuple[str, Callable[[int], None]]] = [
        ("sign only (AttributeCertificateIssuer.issue)", baseline),
        ("floor: 1-row INSERT + COMMIT per transaction", commit_floor),
        ("Installation.grant (1 AC per transaction)", one_per_transaction),
        ("Installation.grant_many (1 transaction)", one_transaction),
    ]
    before_name = "before tree: Installation.grant (1 AC per transaction, worker process)"
    if before is not None:
        systems.append((before_name, lambda count: None))
    # The disk's fsync time swings with the other users of the machine: the systems take
    # turns in ``rounds`` rounds (count / rounds ACs each time), and the totals are compared.
    totals = {name: [0.0, 0.0] for name, _ in systems}
    per_round = max(1, count // rounds)
    profiler = cProfile.Profile() if profile else None
    for round_ in range(rounds):
        shift = round_ % len(systems)
        for name, run in systems[shift:] + systems[:shift]:
            if name == before_name and before is not None:
                wall, cpu = before.grant(per_round)
                totals[name][0] += wall
                totals[name][1] += cpu
                continue
            if profiler is not None and run is one_per_transaction:
                profiler.enable()
            wall, cpu = timed(partial(run, per_round))
            if profiler is not None and run is one_per_transaction:
                profiler.disable()
            totals[name][0] += wall
            totals[name][1] += cpu
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return [Result(backend, name, per_round * rounds, wall, cpu)
            for name, (wall, cpu) in totals.items()]


def print_table(results: list[Result]) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load}, {os.cpu_count()} CPUs")
    print("| database | operation | ACs | seconds | ACs/s | CPU per AC | vs sign "
          "| vs commit floor |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    baseline: dict[str, float] = {}
    floor: dict[str, float] = {}
    for r in results:
        if r.what.startswith("sign only"):
            baseline[r.backend] = r.rate
        if r.what.startswith("floor"):
            floor[r.backend] = r.rate
        print(f"| {r.backend} | {r.what} | {r.count} | {r.seconds:.3f} | {r.rate:,.0f} | "
              f"{r.cpu_seconds / r.count * 1000:.2f} ms | "
              f"{r.rate / baseline[r.backend]:.2f}x | "
              f"{r.rate / floor[r.backend] if r.backend in floor else 0:.2f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="ACs per measurement")
    parser.add_argument("--postgres", action="store_true",
                        help="also measure on a throwaway PostgreSQL cluster (fsync=off)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds in which the operations take turns")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of Installation.grant")
    parser.add_argument("--before-tree", type=Path, metavar="DIR",
                        help="also run another checkout's grant (SQLite) in the same rounds")
    parser.add_argument("--serve-grants", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_grants is not None:
        return serve_grants(args.serve_grants)

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="certgate-bench-") as tmp:
        inst = installation(Path(tmp), None)
        before = None
        try:
            if args.before_tree is not None:
                (Path(tmp) / "before").mkdir()
                before = BeforeTree(args.before_tree.resolve(), Path(tmp) / "before")
                print(f"before tree: certgate imported from {before.source}")
            results += measure(inst, "SQLite (WAL, synchronous=FULL)", args.count, args.rounds,
                               args.profile, before)
        finally:
            if before is not None:
                before.close()
            inst.close()
    if args.postgres:
        from pg import PostgresUnavailable, start_cluster

        try:
            cluster = start_cluster()
        except PostgresUnavailable as exc:
            print(f"PostgreSQL skipped: {exc}")
        else:
            try:
                with tempfile.TemporaryDirectory(prefix="certgate-bench-") as tmp:
                    inst = installation(Path(tmp), cluster.create_database())
                    try:
                        results += measure(inst, "PostgreSQL (throwaway, fsync=off)",
                                           args.count, args.rounds, args.profile)
                    finally:
                        inst.close()
            finally:
                cluster.stop()
    print_table(results)
    print("Ed25519 attribute authority; each grant writes the AC row and its audit event.")
    if args.postgres:
        print("The PostgreSQL cluster runs with fsync=off: its commits are not flushed to disk.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How many attribute certificates certgate issues per second, database write included.

    python bench/ac_issue.py [--count N] [--postgres] [--profile]

Measures, in one run and on the same installation:

* the baseline: building and signing an AC alone (``AttributeCertificateIssuer.issue``), no
  database;
* ``Installation.grant``: one AC per transaction, with its certificate row and audit event,
  which is what ``certgate attr grant`` does;
* ``Installation.grant_many``: many ACs in one transaction (bulk issuance).

SQLite runs as certgate configures it (WAL, synchronous=FULL: every commit is fsynced).
PostgreSQL (``--postgres``) is a throwaway cluster from tests/pg.py, which runs with
fsync=off, so its numbers exclude the disk flush.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


def timed(count: int, run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(inst: Installation, backend: str, count: int, profile: bool) -> list[Result]:
    with inst.database.read() as session:
        holder = x509.load_der_x509_certificate(inst.ca.current_identity(session, "bench").der)
    issuer = inst.ca.ac_issuer
    inst.ca.grant("bench", ATTRIBUTES, valid_for=VALID_FOR, targets=TARGETS)  # warm up

    def baseline() -> None:
        start = datetime.now(UTC).replace(microsecond=0)
        for _ in range(count):
            issuer.issue(holder, ATTRIBUTES, not_before=start, not_after=start + VALID_FOR,
                         targets=TARGETS, no_rev_avail=True)

    def one_per_transaction() -> None:
        for _ in range(count):
            inst.ca.grant("bench", ATTRIBUTES, valid_for=VALID_FOR, targets=TARGETS)

    def one_transaction() -> None:
        inst.ca.grant_many([GrantRequest("bench", ATTRIBUTES, VALID_FOR, TARGETS)] * count)

    def commit_floor() -> None:
        # What any one-AC transaction must pay at least: one row inserted and committed, with
        # the installation's durability (one fsync per commit on SQLite).
        for n in range(count):
            with inst.database.write() as session:
                session.execute(text("INSERT INTO bench_floor (n) VALUES (:n)"), {"n": n})

    with inst.database.write() as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS bench_floor (n INTEGER)"))
    results = [Result(backend, "sign only (AttributeCertificateIssuer.issue)", count,
                      timed(count, baseline)),
               Result(backend, "floor: 1-row INSERT + COMMIT per transaction", count,
                      timed(count, commit_floor))]
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
    results.append(Result(backend, "Installation.grant (1 AC per transaction)", count,
                          timed(count, one_per_transaction)))
    if profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    results.append(Result(backend, "Installation.grant_many (1 transaction)", count,
                          timed(count, one_transaction)))
    return results


def print_table(results: list[Result]) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load}, {os.cpu_count()} CPUs")
    print("| database | operation | ACs | seconds | ACs/s | vs sign | vs commit floor |")
    print("|---|---|---:|---:|---:|---:|---:|")
    baseline: dict[str, float] = {}
    floor: dict[str, float] = {}
    for r in results:
        if r.what.startswith("sign only"):
            baseline[r.backend] = r.rate
        if r.what.startswith("floor"):
            floor[r.backend] = r.rate
        print(f"| {r.backend} | {r.what} | {r.count} | {r.seconds:.3f} | {r.rate:,.0f} | "
              f"{r.rate / baseline[r.backend]:.2f}x | "
              f"{r.rate / floor[r.backend] if r.backend in floor else 0:.2f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="ACs per measurement")
    parser.add_argument("--postgres", action="store_true",
                        help="also measure on a throwaway PostgreSQL cluster (fsync=off)")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of Installation.grant")
    args = parser.parse_args()

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="certgate-bench-") as tmp:
        inst = installation(Path(tmp), None)
        try:
            results += measure(inst, "SQLite (WAL, synchronous=FULL)", args.count, args.profile)
        finally:
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
                                           args.count, args.profile)
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

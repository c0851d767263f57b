"""How many audit events per second can certgate make durable?

    python bench/audit_append.py [--seconds N] [--batch 100] [--no-postgres]

For each database — SQLite (WAL, synchronous=FULL), a throwaway PostgreSQL with fsync=on
(durable) and one with fsync=off (the test clusters' setting, for comparison) — it measures:

  single   one event per transaction (``AuditLog.record``)
  group    ``record_many`` batches of --batch events (one commit per batch)
  writer   ``AuditWriter`` with 200 concurrent producers (what the gateway can use)

against a baseline measured in the same run on the same kind of database: plain INSERTs of
the same rows, one per transaction or --batch per transaction, without hashing or head lock.
An event counts only once the call that wrote it returned, i.e. after its commit.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pg import PostgresCluster, PostgresUnavailable, start_cluster

from certgate.audit.chain import AuditEvent
from certgate.audit.log import AuditLog
from certgate.audit.writer import AuditWriter
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow

PRODUCERS = 200


def event(n: int) -> AuditEvent:
    return AuditEvent("console.attach", "gateway:bench", outcome="allow", user=f"user{n % 50}",
                      vm=f"vm{n % 20}", serial="4f0c1a9b22", source="192.0.2.10:51022",
                      session_id="8c9a7d0e-0a4b-4f5e-9d3c-1b2a3c4d5e6f",
                      details={"n": n, "privileges": ["console.write"]})


def raw_row(seq: int) -> dict[str, object]:
    e = event(seq)
    return {"seq": seq, "ts": datetime.now(UTC), "event_type": e.event_type, "actor": e.actor,
            "outcome": e.outcome, "user_name": e.user, "vm": e.vm, "serial": e.serial,
            "source": e.source, "session_id": e.session_id,
            "details": f'{{"n":{seq},"privileges":["console.write"]}}',
            "prev_hash": "0" * 64, "entry_hash": "f" * 64}


def timed(seconds: float, step: Callable[[int], int]) -> float:
    """Run ``step(next_n)`` (returns events committed) until ``seconds`` pass; events/s."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step(done)
    return done / elapsed


def baseline(database: Database, seconds: float, batch: int) -> float:
    def step(n: int) -> int:
        with database.write() as session:
            session.execute(insert(AuditEventRow), [raw_row(n + i + 1) for i in range(batch)])
        return batch

    return timed(seconds, step)


def chain_single(database: Database, seconds: float) -> float:
    log = AuditLog(database)
    return timed(seconds, lambda n: (log.record(event(n)), 1)[1])


def chain_group(database: Database, seconds: float, batch: int) -> float:
    log = AuditLog(database)
    return timed(seconds, lambda n: len(log.record_many([event(n + i) for i in range(batch)])))


def chain_writer(database: Database, seconds: float) -> float:
    async def run() -> float:
        done = 0
        async with AuditWriter(AuditLog(database)) as writer:
            start = time.perf_counter()
            deadline = start + seconds

            async def producer(k: int) -> None:
                nonlocal done
                n = k
                while time.perf_counter() < deadline:
                    await writer.append(event(n))
                    done += 1
                    n += PRODUCERS

            await asyncio.gather(*(producer(k) for k in range(PRODUCERS)))
            return done / (time.perf_counter() - start)

    return asyncio.run(run())


@contextmanager
def fresh(make_url: Callable[[], str]) -> Iterator[Database]:
    database = Database(make_url())
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


def measure(name: str, make_url: Callable[[], str], seconds: float,
            batch: int) -> list[tuple[str, str, float, float]]:
    rows = []
    with fresh(make_url) as db:
        base_single = baseline(db, seconds, 1)
    with fresh(make_url) as db:
        base_group = baseline(db, seconds, batch)
    with fresh(make_url) as db:
        rows.append((name, "single", chain_single(db, seconds), base_single))
    with fresh(make_url) as db:
        rows.append((name, f"group {batch}", chain_group(db, seconds, batch), base_group))
    with fresh(make_url) as db:
        rows.append((name, f"writer x{PRODUCERS}", chain_writer(db, seconds), base_group))
    for row in rows:
        print(f"  {row[0]:<22} {row[1]:<12} {row[2]:>9.0f}/s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    results: list[tuple[str, str, float, float]] = []
    scratch = Path(tempfile.mkdtemp(prefix="certgate-bench-"))
    clusters: list[PostgresCluster] = []
    try:
        counter = iter(range(1_000_000))
        results += measure("sqlite (FULL, WAL)",
                           lambda: f"sqlite:///{scratch}/b{next(counter)}.db",
                           args.seconds, args.batch)
        if not args.no_postgres:
            for label, durable in (("postgres fsync=on", True), ("postgres fsync=off", False)):
                try:
                    cluster = start_cluster(fsync=durable)
                except PostgresUnavailable as exc:
                    print(f"skipping PostgreSQL: {exc}", file=sys.stderr)
                    break
                clusters.append(cluster)
                results += measure(label, cluster.create_database, args.seconds, args.batch)
    finally:
        for cluster in clusters:
            cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\naudit appends, {args.seconds:g} s per measurement "
          "(baseline: plain INSERTs, same durability, same rows per commit)\n")
    print("| database | mode | chain events/s | baseline events/s | chain / baseline |")
    print("|---|---|---:|---:|---:|")
    for name, mode, rate, base in results:
        print(f"| {name} | {mode} | {rate:,.0f} | {base:,.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()

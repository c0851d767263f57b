"""How many audit events per second can certgate make durable?

    python bench/audit_append.py [--seconds 1] [--rounds 4] [--batch 100] [--no-postgres]

For each database — SQLite (WAL, synchronous=FULL), a throwaway PostgreSQL with fsync=on
(durable) and one with fsync=off (the test clusters' setting, for comparison) — it measures:

  single   one event per transaction (``AuditLog.record``)
  group    ``record_many`` batches of --batch events (one commit per batch)
  writer   ``AuditWriter`` with 200 concurrent producers (what the gateway can use)

against a baseline measured in the same run on the same kind of database: plain INSERTs of
the same rows, one per transaction or --batch per transaction, without hashing or head lock;
for the writer, the same ``AuditWriter`` and producers whose batches are plain INSERTs.
An event counts only once the call that wrote it returned, i.e. after its commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def timed(seconds: float, step: Callable[[int], int], start_n: int = 0) -> tuple[int, float]:
    """Run ``step(next_n)`` (returns events committed) until ``seconds`` pass."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step(start_n + done)
    return done, elapsed


_PLAIN_INSERT = insert(AuditEventRow.__table__)  # type: ignore[arg-type]


def baseline_step(database: Database, batch: int) -> Callable[[int], int]:
    """Plain INSERTs of the same rows, the cheapest way SQLAlchemy offers (a Core executemany,
    as the chain uses), so the ratio shows what the chain itself costs."""
    def step(n: int) -> int:
        with database.write() as session:
            rows = [raw_row(n + i + 1) for i in range(batch)]
            session.connection().execute(_PLAIN_INSERT, rows)
        return batch

    return step


def chain_step(database: Database, batch: int) -> Callable[[int], int]:
    log = AuditLog(database)
    if batch == 1:
        return lambda n: (log.record(event(n)), 1)[1]
    return lambda n: len(log.record_many([event(n + i) for i in range(batch)]))


def plain_writer_commit(database: Database) -> Callable[..., Awaitable[list[Any]]]:
    """For the writer row's baseline: the same ``AuditWriter`` and producers, whose batches
    are plain INSERTs of the same rows (so the row compares the chain, not the producers'
    asyncio costs against a synchronous loop)."""
    next_seq = [0]

    def insert_rows(count: int) -> None:
        with database.write() as session:
            first, next_seq[0] = next_seq[0], next_seq[0] + count
            session.connection().execute(_PLAIN_INSERT,
                                         [raw_row(first + i + 1) for i in range(count)])

    async def commit(events: Sequence[AuditEvent], before: Sequence[object] = ()) -> list[Any]:
        await asyncio.to_thread(insert_rows, len(events))
        return [None] * len(events)

    return commit


def chain_writer(database: Database, seconds: float,
                 commit: Callable[..., Awaitable[list[Any]]] | None = None) -> tuple[int, float]:
    """``AuditWriter`` fed by ``PRODUCERS`` concurrent producers for ``seconds``; ``commit``
    replaces its chained commit (the baseline)."""
    async def run() -> tuple[int, float]:
        done = 0
        async with AuditWriter(AuditLog(database), commit=commit) as writer:
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
            return done, time.perf_counter() - start

    return asyncio.run(run())


@contextmanager
def fresh(make_url: Callable[[], str]) -> Iterator[Database]:
    database = Database(make_url())
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


def measure(name: str, make_url: Callable[[], str], seconds: float, batch: int,
            rounds: int) -> list[tuple[str, str, float, float]]:
    """Chain and baseline alternate, ``rounds`` times ``seconds`` each, on two databases that
    live through all rounds; rates are events over time summed over the rounds."""
    rows = []
    for mode, size in (("single", 1), (f"group {batch}", batch), (f"writer x{PRODUCERS}", batch)):
        with fresh(make_url) as base_db, fresh(make_url) as chain_db:
            base_step = baseline_step(base_db, size)
            base_commit = plain_writer_commit(base_db)
            step = chain_step(chain_db, size)
            totals = {"base": [0, 0.0], "chain": [0, 0.0]}
            for round_ in range(rounds):
                order = ("base", "chain") if round_ % 2 == 0 else ("chain", "base")
                for system in order:
                    if system == "base" and mode.startswith("writer"):
                        done, elapsed = chain_writer(base_db, seconds, base_commit)
                    elif system == "base":
                        done, elapsed = timed(seconds, base_step, totals["base"][0])
                    elif mode.startswith("writer"):
                        done, elapsed = chain_writer(chain_db, seconds)
                    else:
                        done, elapsed = timed(seconds, step, totals["chain"][0])
                    totals[system][0] += done
                    totals[system][1] += elapsed
            rate = totals["chain"][0] / totals["chain"][1]
            base = totals["base"][0] / totals["base"][1]
        rows.append((name, mode, rate, base))
        print(f"  {name:<22} {mode:<12} {rate:>9.0f}/s  baseline {base:>9.0f}/s",
              file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="per round and system")
    parser.add_argument("--rounds", type=int, default=4)
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
                           args.seconds, args.batch, args.rounds)
        if not args.no_postgres:
            for label, durable in (("postgres fsync=on", True), ("postgres fsync=off", False)):
                try:
                    cluster = start_cluster(fsync=durable)
                except PostgresUnavailable as exc:
                    print(f"skipping PostgreSQL: {exc}", file=sys.stderr)
                    break
                clusters.append(cluster)
                results += measure(label, cluster.create_database, args.seconds, args.batch,
                                   args.rounds)
    finally:
        for cluster in clusters:
            cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\naudit appends, {args.rounds} alternating rounds of {args.seconds:g} s per system "
          f"(baseline: plain INSERTs, same durability, same rows per commit); load average "
          f"{load}\n")
    print("| database | mode | chain events/s | baseline events/s | chain / baseline |")
    print("|---|---|---:|---:|---:|")
    for name, mode, rate, base in results:
        print(f"| {name} | {mode} | {rate:,.0f} | {base:,.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()

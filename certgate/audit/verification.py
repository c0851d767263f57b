"""Verifying the stored audit chain end to end: links, hashes, the head row and checkpoints.

The chain is streamed in batches (one short read transaction each), so verifying millions of
entries needs constant memory and never holds a lock the gateway's appends would wait on.
Entries appended while the walk runs are outside its snapshot of the head and are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from certgate.audit.chain import ChainEntry, walk
from certgate.audit.checkpoints import Checkpoint, CheckpointVerifier, list_checkpoints
from certgate.audit.log import stream_entries
from certgate.errors import AuditError
from certgate.store.database import Database
from certgate.store.schema import AuditHeadRow

PRUNE_EVENT = "audit.prune"


@dataclass(frozen=True)
class VerificationReport:
    """What ``certgate audit verify`` prints: the first problem, or how much was checked."""

    entries_checked: int
    checkpoints_checked: int
    base_seq: int
    head_seq: int
    problem: str | None = None
    failed_seq: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem:
            return self.problem
        return (f"audit chain intact: {self.entries_checked} entries checked, "
                f"{self.checkpoints_checked} checkpoints")


@dataclass(frozen=True)
class _Head:
    seq: int
    entry_hash: str
    base_seq: int
    base_hash: str


def _read_head(database: Database) -> tuple[_Head, list[Checkpoint]]:
    # Checkpoints first: a checkpoint written after this read cannot then name a seq beyond
    # the head read next (PostgreSQL's READ COMMITTED gives each statement its own snapshot).
    with database.read() as session:
        checkpoints = list_checkpoints(session)
        row = session.get(AuditHeadRow, 1)
        if row is None:
            raise AuditError("the audit chain has no head row: the database was not initialised")
        head = _Head(row.seq, row.entry_hash, row.base_seq, row.base_hash)
    return head, checkpoints


class _Observer:
    """Watches entries as the walk consumes them: checkpoint hashes and the prune record."""

    def __init__(self, head: _Head, by_seq: dict[int, list[Checkpoint]],
                 progress: Callable[[int], None] | None) -> None:
        self.head = head
        self.by_seq = by_seq
        self.progress = progress
        self.mismatch: tuple[int, str] | None = None
        self.prune_recorded = head.base_seq == 0

    def watch(self, entries: Iterable[ChainEntry]) -> Iterator[ChainEntry]:
        for count, entry in enumerate(entries, 1):
            for checkpoint in self.by_seq.get(entry.seq, ()):
                if checkpoint.entry_hash != entry.entry_hash and self.mismatch is None:
                    self.mismatch = (entry.seq, (
                        f"entry {entry.seq} does not match checkpoint {checkpoint.id}: the chain "
                        f"was rewritten at or before entry {entry.seq} after it was signed"))
            if not self.prune_recorded and entry.event_type == PRUNE_EVENT:
                self.prune_recorded = self._names_base(entry)
            if self.progress is not None and count % 1000 == 0:
                self.progress(1000)
            yield entry

    def _names_base(self, entry: ChainEntry) -> bool:
        try:
            details = json.loads(entry.details_json)
        except ValueError:
            return False
        return bool(details.get("base_seq") == self.head.base_seq
                    and details.get("base_hash") == self.head.base_hash)


def verify_chain(
    database: Database,
    verifier: CheckpointVerifier,
    *,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> VerificationReport:
    """Walk the retained chain and check the head row and every checkpoint.

    ``progress`` is called with the number of entries checked since its last call.
    """
    head, checkpoints = _read_head(database)
    base_seq = head.base_seq

    def report(checked: int, problem: str | None = None,
               failed: int | None = None) -> VerificationReport:
        return VerificationReport(checked, len(checkpoints), base_seq, head.seq, problem, failed)

    by_seq: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        problem = verifier.problem(checkpoint)
        if problem:
            return report(0, problem)
        if checkpoint.seq == base_seq and checkpoint.entry_hash != head.base_hash:
            return report(0, f"checkpoint {checkpoint.id} signed entry {checkpoint.seq} with "
                             "another hash than the retained chain starts from (the prune "
                             "base was altered)", checkpoint.seq)
        if checkpoint.seq > base_seq:
            by_seq.setdefault(checkpoint.seq, []).append(checkpoint)

    observer = _Observer(head, by_seq, progress)
    verdict = walk(
        observer.watch(stream_entries(database, after_seq=base_seq, up_to_seq=head.seq,
                                      batch=batch)),
        base_seq=base_seq,
        base_hash=head.base_hash,
    )
    mismatch = observer.mismatch
    if mismatch and (verdict.failed_seq is None or mismatch[0] < verdict.failed_seq):
        return report(verdict.checked, mismatch[1], mismatch[0])
    if not verdict.intact:
        return report(verdict.checked, verdict.reason, verdict.failed_seq)

    end = verdict.last_seq
    beyond = [c for c in checkpoints if c.seq > end]
    if beyond:
        first = beyond[0]
        return report(verdict.checked, f"chain ends at {end} but checkpoint {first.id} signed "
                                       f"entry {first.seq}: the tail was cut", end + 1)
    if end < head.seq:
        return report(verdict.checked, f"chain ends at {end} but the head row records entry "
                                       f"{head.seq}: the tail was cut", end + 1)
    if verdict.last_hash != head.entry_hash:
        return report(verdict.checked, f"entry {end} does not match the head row (the head "
                                       "row or the last entry was altered)", end)
    if not observer.prune_recorded:
        return report(verdict.checked, f"the chain starts after entry {base_seq} but no "
                                       f"{PRUNE_EVENT} event records that base (entries were "
                                       "deleted from the start)", base_seq)
    return report(verdict.checked)

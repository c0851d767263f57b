"""Console log segments in the audit chain: the seal and expiry events, and their check.

Each sealed segment is recorded as a ``console.log.seal`` audit event carrying its SHA-256
and its predecessor's; retention records ``console.log.expire``. The audit chain is itself
tamper-evident, so verification only has to compare the files on disk with those events:
an edited segment no longer matches its hash, a removed one is missing without an expiry,
and a segment slipped in or replaced breaks the ``previous_sha256`` links.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from certgate.audit.chain import AuditEvent, ChainEntry
from certgate.audit.log import stream_entries
from certgate.consolelog.writer import (
    GENESIS_SHA256,
    SEGMENT_NAME,
    ExpiredSegment,
    LogRecord,
    SealedSegment,
    file_sha256,
)
from certgate.store.database import Database
from certgate.store.schema import AuditEventRow

SEAL_EVENT = "console.log.seal"
EXPIRE_EVENT = "console.log.expire"


def audit_event(record: LogRecord, actor: str) -> AuditEvent:
    if isinstance(record, SealedSegment):
        return AuditEvent(SEAL_EVENT, actor, outcome="ok", vm=record.vm, details={
            "segment": record.name, "sha256": record.sha256,
            "previous_sha256": record.previous_sha256, "bytes": record.size,
            "started": round(record.started, 3), "ended": round(record.ended, 3),
            "recovered": record.recovered,
        })
    return AuditEvent(EXPIRE_EVENT, actor, outcome="ok", vm=record.vm,
                      details={"segment": record.name, "reason": record.reason})


def _log_entries(database: Database, vm: str | None = None) -> Iterator[ChainEntry]:
    query = select(AuditEventRow).where(
        AuditEventRow.event_type.in_([SEAL_EVENT, EXPIRE_EVENT]))
    if vm is not None:
        query = query.where(AuditEventRow.vm == vm)
    return stream_entries(database, query=query)


def anchored_segments(database: Database) -> dict[str, dict[str, str]]:
    """Per VM, the segments already sealed in the audit chain and their SHA-256 (one scan)."""
    found: dict[str, dict[str, str]] = {}
    for entry in _log_entries(database):
        if entry.event_type == SEAL_EVENT:
            details = entry.details
            found.setdefault(entry.vm or "", {})[str(details.get("segment"))] = str(
                details.get("sha256"))
    return found


@dataclass
class _VmLog:
    sealed: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (sha, seq)
    expired: set[str] = field(default_factory=set)
    last_sha: str = GENESIS_SHA256


@dataclass(frozen=True)
class LogVerification:
    segments_checked: int
    problems: tuple[str, ...]

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.problems:
            return self.problems[0]
        return f"console logs intact: {self.segments_checked} sealed segments checked"


def verify_console_logs(database: Database, logs_dir: Path) -> LogVerification:
    """Compare every sealed, unexpired segment on disk with its audit record."""
    logs: dict[str, _VmLog] = {}
    problems: list[str] = []
    for entry in _log_entries(database):
        vm = entry.vm or ""
        log = logs.setdefault(vm, _VmLog())
        details = entry.details
        name = str(details.get("segment"))
        if entry.event_type == EXPIRE_EVENT:
            log.expired.add(name)
            continue
        previous = str(details.get("previous_sha256"))
        if previous != log.last_sha and log.sealed:
            problems.append(f"console log of {vm}: segment {name} (audit entry {entry.seq}) "
                            "does not follow the previous sealed segment")
        log.sealed[name] = (str(details.get("sha256")), entry.seq)
        log.last_sha = str(details.get("sha256"))
    checked = 0
    for vm, log in sorted(logs.items()):
        directory = logs_dir / vm
        for name, (sha, seq) in log.sealed.items():
            if name in log.expired:
                continue
            path = directory / name
            if SEGMENT_NAME.fullmatch(name) is None or not path.is_file():
                problems.append(f"console log of {vm}: segment {name} sealed in audit entry "
                                f"{seq} is missing (cut without a retention record)")
                continue
            checked += 1
            if file_sha256(path) != sha:
                problems.append(f"console log of {vm}: segment {name} was altered after it "
                                f"was sealed (audit entry {seq})")
    return LogVerification(checked, tuple(problems))


__all__ = [
    "EXPIRE_EVENT",
    "SEAL_EVENT",
    "ExpiredSegment",
    "LogVerification",
    "anchored_segments",
    "audit_event",
    "verify_console_logs",
]

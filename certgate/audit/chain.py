"""The audit hash chain as pure functions: encoding, linking and checking entries.

Each entry's hash covers its own canonical encoding, which includes the previous entry's hash;
changing, removing or reordering any entry therefore breaks every hash after it. The encoding
is JSON with sorted keys and no insignificant white space, so any implementation can recompute
it from the stored columns.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring as _string  # what json.dumps uses for str
from typing import Any

GENESIS_HASH = "0" * 64
OUTCOMES = ("allow", "deny", "ok", "error")

# Widths of the audit_events columns (certgate.store.schema), enforced identically on SQLite
# and PostgreSQL by CHECK constraints. Values arrive from strangers (a 1,023-byte SSH login
# name, say): ``bounded`` makes every one fit, so no client-supplied value can fail a batch.
COLUMN_WIDTHS: dict[str, int] = {
    "event_type": 64,
    "actor": 128,
    "outcome": 16,
    "user": 64,
    "vm": 64,
    "serial": 48,
    "source": 64,
    "session_id": 36,
}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_HASH_SUFFIX = 17  # "~" and 16 hex digits of SHA-256


def _escape_unsafe(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def bounded(value: str | None, width: int) -> str | None:
    """``value`` made storable in a column of ``width`` characters, recognisably.

    Control characters (NUL included, which PostgreSQL text cannot hold) become ``\\xNN``
    escapes; an over-long value keeps its head and gains ``~`` plus 16 hex digits of the
    SHA-256 of the original, so repeated attempts with one long name still group together.
    """
    if value is None:
        return None
    clean = _UNSAFE.sub(_escape_unsafe, value)
    if len(clean) <= width:
        return clean
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{clean[:width - _HASH_SUFFIX]}~{digest}"


@dataclass(frozen=True)
class AuditEvent:
    """What happened, as a caller reports it; the chain adds sequence, time and hashes."""

    event_type: str
    actor: str
    outcome: str | None = None
    user: str | None = None
    vm: str | None = None
    serial: str | None = None
    source: str | None = None
    session_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {self.outcome!r}")
        for name, width in COLUMN_WIDTHS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"audit field {name} must be text, not {type(value).__name__}")
            if len(value) <= width and value.isascii() and value.isprintable():
                continue  # the common case, kept cheap: appends are on the login path
            fitted = bounded(value, width)
            if fitted != value:
                object.__setattr__(self, name, fitted)


@dataclass(frozen=True)
class ChainEntry:
    """One stored link of the chain, exactly as its hash was computed."""

    seq: int
    ts: datetime
    event_type: str
    actor: str
    outcome: str | None
    user: str | None
    vm: str | None
    serial: str | None
    source: str | None
    session_id: str | None
    details_json: str
    prev_hash: str
    entry_hash: str

    @property
    def details(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.details_json)
        return loaded

    def encoding(self) -> bytes:
        return encode_entry(
            seq=self.seq,
            ts=self.ts,
            event_type=self.event_type,
            actor=self.actor,
            outcome=self.outcome,
            user=self.user,
            vm=self.vm,
            serial=self.serial,
            source=self.source,
            session_id=self.session_id,
            details_json=self.details_json,
            prev_hash=self.prev_hash,
        )


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def format_ts(ts: datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return ts.isoformat(timespec="microseconds")


def encode_entry(
    *,
    seq: int,
    ts: datetime,
    event_type: str,
    actor: str,
    outcome: str | None,
    user: str | None,
    vm: str | None,
    serial: str | None,
    source: str | None,
    session_id: str | None,
    details_json: str,
    prev_hash: str,
) -> bytes:
    return _encode(
        seq, format_ts(ts), event_type, actor, outcome, user, vm, serial, source, session_id,
        details_json, prev_hash,
    )


def _encode(
    seq: int,
    ts_text: str,
    event_type: str,
    actor: str,
    outcome: str | None,
    user: str | None,
    vm: str | None,
    serial: str | None,
    source: str | None,
    session_id: str | None,
    details_json: str,
    prev_hash: str,
) -> bytes:
    """``canonical_json`` of the entry's record, spelled out: the same bytes without
    json.dumps's per-call set-up and key sorting (most of an append's CPU).
    tests/audit/test_audit_chain.py checks that the two agree."""
    if type(seq) is int:
        try:
            return (
                '{"actor":' + _string(actor)
                + ',"details":' + _string(details_json)
                + ',"outcome":' + _optional(outcome)
                + ',"prev":' + _string(prev_hash)
                + ',"seq":' + str(seq)
                + ',"serial":' + _optional(serial)
                + ',"session":' + _optional(session_id)
                + ',"source":' + _optional(source)
                + ',"ts":' + _string(ts_text)
                + ',"type":' + _string(event_type)
                + ',"user":' + _optional(user)
                + ',"vm":' + _optional(vm)
                + "}"
            ).encode("utf-8")
        except TypeError:  # a value that is not a string: json.dumps says how it encodes
            pass
    record = _record(
        seq=seq, ts_text=ts_text, event_type=event_type, actor=actor, outcome=outcome,
        user=user, vm=vm, serial=serial, source=source, session_id=session_id,
        details_json=details_json, prev_hash=prev_hash,
    )
    return canonical_json(record).encode("utf-8")


def _record(
    *,
    seq: int,
    ts_text: str,
    event_type: str,
    actor: str,
    outcome: str | None,
    user: str | None,
    vm: str | None,
    serial: str | None,
    source: str | None,
    session_id: str | None,
    details_json: str,
    prev_hash: str,
) -> dict[str, Any]:
    """The record whose canonical JSON is hashed (the definition of the encoding)."""
    return {
        "seq": seq,
        "ts": ts_text,
        "type": event_type,
        "actor": actor,
        "outcome": outcome,
        "user": user,
        "vm": vm,
        "serial": serial,
        "source": source,
        "session": session_id,
        "details": details_json,
        "prev": prev_hash,
    }


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def link(
    event: AuditEvent, *, seq: int, ts: datetime, prev_hash: str, ts_text: str | None = None
) -> ChainEntry:
    """Make the entry that follows ``prev_hash`` at position ``seq``.

    ``ts_text`` is ``format_ts(ts)`` when the caller already has it (a batch shares one time).
    """
    details_json = _CANONICAL.encode(dict(event.details)) if event.details else "{}"
    encoded = _encode(
        seq, ts_text or format_ts(ts), event.event_type, event.actor, event.outcome, event.user,
        event.vm, event.serial, event.source, event.session_id, details_json, prev_hash,
    )
    return ChainEntry(
        seq, ts, event.event_type, event.actor, event.outcome, event.user, event.vm,
        event.serial, event.source, event.session_id, details_json, prev_hash,
        hashlib.sha256(encoded).hexdigest(),
    )


@dataclass(frozen=True)
class ChainVerdict:
    """The outcome of walking the chain: intact, or where and why it first breaks."""

    checked: int
    last_seq: int
    last_hash: str
    failed_seq: int | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.reason is None


def walk(entries: Iterable[ChainEntry], *, base_seq: int, base_hash: str) -> ChainVerdict:
    """Check links and hashes in order, starting after (base_seq, base_hash)."""
    expected_seq, prev_hash, checked = base_seq + 1, base_hash, 0
    for entry in entries:
        if entry.seq != expected_seq:
            return ChainVerdict(
                checked, expected_seq - 1, prev_hash, expected_seq,
                f"entry {expected_seq} is missing (next stored entry is {entry.seq})",
            )
        if entry.prev_hash != prev_hash:
            return ChainVerdict(
                checked, entry.seq - 1, prev_hash, entry.seq,
                f"entry {entry.seq} does not link to entry {entry.seq - 1} "
                "(an entry was removed, reordered or edited)",
            )
        recomputed = hashlib.sha256(entry.encoding()).hexdigest()
        if recomputed != entry.entry_hash:
            return ChainVerdict(
                checked, entry.seq - 1, prev_hash, entry.seq,
                f"entry {entry.seq} was altered (its content does not match its hash)",
            )
        checked += 1
        expected_seq, prev_hash = entry.seq + 1, entry.entry_hash
    return ChainVerdict(checked, expected_seq - 1, prev_hash)

"""The chain's encoding and the guessed-head append path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from certgate.audit.chain import AuditEvent, _record, canonical_json, encode_entry
from certgate.audit.log import AuditLog
from certgate.audit.verification import VerificationReport
from certgate.installation import Installation
from certgate.store.database import Database

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
optional = st.none() | texts


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(min_value=0, max_value=2**62),
    micros=st.integers(min_value=0, max_value=10**15),
    event_type=texts, actor=texts, outcome=optional, user=optional, vm=optional,
    serial=optional, source=optional, session_id=optional, details_json=texts,
    prev_hash=texts,
)
def test_entry_encoding_is_the_canonical_json_of_its_record(
    seq: int, micros: int, event_type: str, actor: str, outcome: str | None, user: str | None,
    vm: str | None, serial: str | None, source: str | None, session_id: str | None,
    details_json: str, prev_hash: str,
) -> None:
    ts = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    fields = dict(event_type=event_type, actor=actor, outcome=outcome, user=user, vm=vm,
                  serial=serial, source=source, session_id=session_id,
                  details_json=details_json, prev_hash=prev_hash)
    expected = canonical_json(_record(seq=seq, ts_text=ts.isoformat(timespec="microseconds"),
                                      **fields)).encode()
    assert encode_entry(seq=seq, ts=ts, **fields) == expected


def test_writers_that_interleave_never_fork_the_chain(
        installation: Installation, verify: Callable[[], VerificationReport]) -> None:
    # Two databases objects on one file: each one's guess of the head goes stale whenever the
    # other appends, and the append must then start again from the locked head.
    other = Database(installation.database.url)
    try:
        logs = [AuditLog(installation.database), AuditLog(other)]
        seqs = []
        for n in range(30):
            writer = logs[(n // 3) % 2]
            batch = [AuditEvent("test.append", f"writer:{n}", outcome="ok")] * (1 + n % 2)
            seqs += [entry.seq for entry in writer.record_many(batch)]
    finally:
        other.dispose()
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    report = verify()
    assert report.intact, report.problem

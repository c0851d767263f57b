"""A console login costs one commit before the first byte, and every guarantee stays.

The ``auth.login`` event is committed while the client opens its session channel, and
nothing is served on the connection until it is durable. The allowing ``access.decide``
event, the session row and ``session.start`` are then committed together, in one
transaction, before the console is attached: no console byte reaches the user unless the
decision is durably audited.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import asyncssh
import pytest
from gateway_inprocess import InProcessGateway, gateway_with_console
from gateway_testing import default_policy

from certgate.audit.chain import AuditEvent, ChainEntry
from certgate.audit.sessions import list_sessions
from certgate.errors import AuditError


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    with gateway_with_console(tmp_path_factory.mktemp("commits"), ("vm01",)) as gateway:
        yield gateway


def test_the_decision_and_the_session_start_are_one_commit_made_before_the_first_byte(
    harness: InProcessGateway,
) -> None:
    pia = harness.add_person("pia", "role=operator")
    head = harness.audit_head()
    session = harness.session(pia, "vm01")

    harness.run(session.read_until(b"recording console ready"))
    # Read the chain the moment the console's first byte arrived: it must already be there.
    seen = [e for e in harness.audit(after=head) if e.user == "pia"]

    kinds = [e.event_type for e in seen]
    assert kinds[:3] == ["auth.login", "access.decide", "session.start"]
    login, decision, start = seen[:3]
    assert decision.outcome == "allow" and decision.vm == "vm01"
    assert start.seq == decision.seq + 1
    assert start.ts == decision.ts  # the events of one append share its timestamp
    assert login.seq < decision.seq
    live = [s for s in list_sessions(harness.inst.database, live_only=True) if s.user == "pia"]
    assert [s.id for s in live] == [start.session_id]
    session.conn.close()


def test_a_login_whose_audit_event_cannot_be_written_is_served_nothing(
    harness: InProcessGateway,
) -> None:
    quin = harness.add_person("quin", "role=operator")
    head = harness.audit_head()
    writer = harness.gateway.audit_writer
    real_commit = writer._commit

    async def refusing_quins_login(events: Sequence[AuditEvent],
                                   **kwargs: Any) -> list[ChainEntry]:
        if any(e.event_type == "auth.login" and e.user == "quin" for e in events):
            raise AuditError("cannot write the audit log: disk full")
        return await real_commit(events, **kwargs)

    writer._commit = refusing_quins_login  # type: ignore[method-assign]
    try:
        output = harness.run(_try_console(harness, quin))
    finally:
        writer._commit = real_commit  # type: ignore[method-assign]

    assert output in (b"", b"certgate: the audit log cannot be written; no session is opened\r\n")
    after = [e for e in harness.audit(after=head) if e.user == "quin"]
    assert [e.event_type for e in after] == []
    assert not [s for s in list_sessions(harness.inst.database) if s.user == "quin"]


async def _try_console(harness: InProcessGateway, person: Any) -> bytes:
    """Whatever the client gets: the connection may be closed before or after the channel
    opens, depending on when the failed commit is noticed."""
    try:
        session = await harness.open(person, "vm01")
    except (asyncssh.Error, OSError):
        return b""
    try:
        output, _ = await session.finish(timeout=10)
    except (TimeoutError, asyncssh.Error, OSError):
        output = session.output
    return output


EXCLUSIVE = """version: 1
rules:
  - name: operators
    effect: allow
    vms: {names: ["vm*"]}
    require: {roles: [operator]}
    privileges: [console.view, console.interact]
    session: {write_mode: exclusive}
"""


def test_a_login_reads_the_write_mode_once_per_policy_version_and_follows_a_change(
    harness: InProcessGateway,
) -> None:
    rae = harness.add_person("rae", "role=operator")
    access = harness.gateway.access
    real = access.current_policy
    reads: list[int] = []

    def counted() -> Any:
        reads.append(1)
        return real()

    access.current_policy = counted  # type: ignore[method-assign]
    try:
        for _ in range(2):
            session = harness.session(rae, "vm01")
            harness.run(session.read_until(b"recording console ready"))
            session.conn.close()
        assert len(reads) <= 1  # at most the first login under this policy version

        harness.apply_policy(EXCLUSIVE)
        session = harness.session(rae, "vm01")
        harness.run(session.read_until(b"recording console ready"))
    finally:
        access.current_policy = real  # type: ignore[method-assign]
        harness.apply_policy(default_policy())
    assert b"exclusive console: you have the keyboard" in harness.run(
        _more(session, b"exclusive console"))
    assert harness.gateway.hubs["vm01"]._write_mode == "exclusive"
    session.conn.close()


async def _more(session: Any, text: bytes) -> bytes:
    try:
        return bytes(await session.read_until(text, timeout=10))
    except (AssertionError, asyncssh.Error, OSError):
        return bytes(session.output)

"""If the audit log cannot be written, no session opens: not a byte reaches the console."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ca.attributes import AttributeSet
from certgate.access import Approval, Credential, Grant, Identity
from certgate.audit.chain import AuditEvent, ChainEntry
from certgate.audit.log import AuditLog
from certgate.audit.writer import AuditWriter
from certgate.errors import AuditError
from certgate.gateway.session import SessionEnvironment, run_console_session
from certgate.policy import Decision
from certgate.store import repositories as repo
from certgate.store.database import Database


class _Output:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data


class _Process:
    def __init__(self) -> None:
        self.stdout = _Output()

    def get_terminal_size(self) -> tuple[int, int, int, int]:
        return 80, 24, 0, 0

    def get_terminal_type(self) -> str:
        return "xterm"


class _HubThatMustNotBeTouched:
    attached = False

    async def attach(self, *args: Any, **kwargs: Any) -> None:
        self.attached = True
        raise AssertionError("the console was attached without an audited session start")


def _grant() -> Grant:
    now = datetime.now(UTC)
    return Grant(
        identity=Identity("alice", "0a", now, Credential("key", "00", "SHA256:x")),
        vm=repo.VM("vm01", "unix:/nonexistent", {}, now),
        approval=Approval(AttributeSet(roles=("operator",)), ("0b",), (), None),
        decision=Decision(True, frozenset({"console.view", "console.interact"}),
                          ("operators",), ()),
        policy_version=1,
        decided_at=now,
    )


def test_no_console_is_attached_when_the_session_start_cannot_be_audited(
    tmp_path: Path,
) -> None:
    unwritable = Database(f"sqlite:///{tmp_path / 'no-such-dir' / 'certgate.db'}")
    grant = _grant()
    hub = _HubThatMustNotBeTouched()
    process = _Process()
    live: dict[str, Any] = {}

    status = asyncio.run(run_console_session(
        process, hub, grant, interactive=True, source="127.0.0.1",  # type: ignore[arg-type]
        env=SessionEnvironment(unwritable, tmp_path, "gw", live),
    ))

    assert status == 1
    assert not hub.attached
    assert b"the audit log cannot be written; no session is opened" in process.stdout.written
    assert live == {}
    assert not list(tmp_path.glob("*.cast"))


def test_through_the_group_commit_writer_a_refused_decision_and_start_attach_nothing(
    tmp_path: Path,
) -> None:
    """The gateway commits its allowing decision with the session start: if that one
    commit fails, neither is recorded and the console is never attached."""
    committed: list[list[str]] = []

    async def refusing(events: Sequence[AuditEvent], **kwargs: Any) -> list[ChainEntry]:
        committed.append([e.event_type for e in events])
        raise AuditError("cannot write the audit log: disk full")

    hub = _HubThatMustNotBeTouched()
    process = _Process()
    live: dict[str, Any] = {}
    decision = AuditEvent("access.decide", "gateway:gw", outcome="allow", user="alice")

    async def scenario() -> int:
        writer = AuditWriter(AuditLog(Database(f"sqlite:///{tmp_path / 'unused.db'}")),
                             commit=refusing)
        async with writer:
            return await run_console_session(
                process, hub, _grant(), interactive=True,  # type: ignore[arg-type]
                source="127.0.0.1", decision_event=decision,
                env=SessionEnvironment(writer._log.database, tmp_path, "gw", live,
                                       audit_writer=writer))

    status = asyncio.run(scenario())

    assert status == 1
    assert committed == [["access.decide", "session.start"]]
    assert not hub.attached
    assert b"the audit log cannot be written; no session is opened" in process.stdout.written
    assert live == {}
    assert not list(tmp_path.glob("*.cast"))

"""One console session: from an allowed decision to bytes flowing, and a clean end.

Order matters for the audit promise: the decision that allowed the session, the session row
and its ``session.start`` event are committed -- together, in one commit -- before the
console is attached, so no byte reaches the user or the guest unless the decision is durably
audited; if that commit fails, the session never opens. The end is recorded whichever way
the session ends: the user leaves, the guest hangs up, the client vanishes, a limit or a
revocation ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncssh

from certgate.access import SYSTEM_CLOCK, Clock, Grant
from certgate.audit import sessions as session_log
from certgate.audit.chain import AuditEvent
from certgate.audit.log import AuditLog
from certgate.audit.recording import AsciicastWriter, recording_path
from certgate.audit.writer import AuditWriter
from certgate.consoles.errors import ConsoleError
from certgate.consoles.escape import (
    DEFAULT_ESCAPE,
    DEFAULT_REPLAY,
    Command,
    EscapeParser,
    EscapeSequence,
    Forward,
    MenuCommand,
    UnknownCommand,
    help_text,
)
from certgate.consoles.hub import Attachment, ConsoleHub
from certgate.consoles.mux import Moderation, ObserverLeft, SessionStats
from certgate.errors import CertgateError
from certgate.gateway.memory import MemoryReleaser
from certgate.observability.observer import GatewayObserver
from certgate.policy import BREAK, FORCE, INTERACT, Subject, subject_tags
from certgate.store.database import Database

log = logging.getLogger(__name__)

#: Returns what ended sessions freed to the system once sessions stop ending for a moment.
_memory = MemoryReleaser()

DETACH_KEY = b"\x1d"  # Ctrl-]: as with telnet and virsh console
READ_SIZE = 65536
FLUSH_AFTER = 1.0
"""Seconds after which recorded events reach the file even if the session goes quiet."""


class EndSignal:
    """Set once when a session must end; its pump waits for it. What ``asyncio.Event`` did
    here, without the deque (~0.6 KiB) an Event holds for every live session: a future is
    made only while someone waits."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        """Done once set. One waiter, the session's pump (a plain future: no coroutine per
        session); a cancelled wait leaves the signal usable."""
        waiter = self._waiter
        if waiter is None or waiter.cancelled():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            if self._set:
                waiter.set_result(None)
        return waiter


@dataclass(slots=True)
class LiveSession:
    """What the gateway's re-check loop needs to know about a running session, and its off
    switch. Times come from the gateway's clock, so tests move them without sleeping."""

    session_id: str
    grant: Grant
    source: str | None
    interactive: bool
    clock: Clock = SYSTEM_CLOCK
    started_at: datetime = field(init=False)
    last_input: datetime = field(init=False)
    end_reason: str | None = None
    backend_exit_status: int | None = None
    ended: EndSignal = field(default_factory=EndSignal)

    def __post_init__(self) -> None:
        self.started_at = self.last_input = self.clock.now()

    def terminate(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self.ended.set()

    def touch(self) -> None:
        self.last_input = self.clock.now()

    def deadline(self) -> datetime | None:
        """The next instant this session must be looked at again by time alone."""
        decision = self.grant.decision
        times = [self.grant.valid_until]
        if decision.max_session:
            times.append(self.started_at + decision.max_session)
        if decision.idle_timeout:
            times.append(self.last_input + decision.idle_timeout)
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def limit_reached(self, now: datetime) -> str | None:
        decision = self.grant.decision
        if decision.max_session and now - self.started_at >= decision.max_session:
            return f"maximum session length {decision.max_session} reached"
        if decision.idle_timeout and now - self.last_input >= decision.idle_timeout:
            return f"idle for {decision.idle_timeout}"
        return None


@dataclass(frozen=True)
class SessionEnvironment:
    """The gateway-wide things a session needs."""

    database: Database
    recordings_dir: Path
    gateway_id: str
    live: dict[str, LiveSession]
    observer: GatewayObserver = field(default_factory=GatewayObserver)
    max_recording_bytes: int | None = None
    clock: Clock = SYSTEM_CLOCK
    on_new_session: Callable[[], None] = lambda: None
    """Called when a session goes live, so the re-check loop learns its deadline."""
    audit_writer: AuditWriter | None = None
    """The gateway's group-commit writer; without one, the start is committed directly."""

    async def commit_start(self, start: session_log.SessionStart,
                           preceding: Sequence[AuditEvent]) -> None:
        """One commit: ``preceding`` (the decision), the session row, ``session.start``."""
        events = [*preceding, start.event]
        if self.audit_writer is not None:
            await self.audit_writer.append_many(events, before=[start.insert])
        else:
            await asyncio.to_thread(AuditLog(self.database).record_many, events,
                                    before=[start.insert])

    async def commit_end(self, end: session_log.SessionEnd) -> None:
        """The session row closed and ``session.end`` appended, in one commit."""
        if self.audit_writer is not None and self.audit_writer.running:
            await self.audit_writer.append_many([end.event], before=[end.update])
        else:
            await asyncio.to_thread(AuditLog(self.database).record_many, [end.event],
                                    before=[end.update])


def _say(process: asyncssh.SSHServerProcess[bytes], text: str) -> None:
    with contextlib.suppress(Exception):
        process.stdout.write(f"\r\ncertgate: {text}\r\n".encode())


async def run_console_session(
    process: asyncssh.SSHServerProcess[bytes],
    hub: ConsoleHub,
    grant: Grant,
    *,
    interactive: bool,
    source: str | None,
    env: SessionEnvironment,
    decision_event: AuditEvent | None = None,
) -> int:
    """Pass the session through; returns the exit status for the SSH client.

    ``decision_event`` (the gateway's ``access.decide``) is committed with the session start,
    in the same transaction: both or neither."""
    assert grant.vm is not None
    cols, rows = _terminal_size(process)
    session_id = str(uuid.uuid4())
    privileges = sorted(grant.decision.privileges) if interactive else ["console.view"]
    cast_path = recording_path(env.recordings_dir, session_id)
    start = session_log.SessionStart.new(
        user=grant.identity.user, vm=grant.vm.name, identity_serial=grant.identity.serial,
        source=source, privileges=privileges, gateway_id=env.gateway_id,
        recording_path=str(cast_path), session_id=session_id)
    try:
        await env.commit_start(start, [decision_event] if decision_event is not None else [])
        decision_event = None  # committed: not held for the session's lifetime
    except CertgateError as exc:
        env.observer.database_error("session start", exc)
        _say(process, "the audit log cannot be written; no session is opened")
        return 1
    env.observer.session_started(session_id, user=grant.identity.user, vm=grant.vm.name,
                                 source=source,
                                 mode="interactive" if interactive else "view")
    started = time.monotonic()

    live = LiveSession(session_id, grant, source, interactive, clock=env.clock)
    env.live[session_id] = live
    env.on_new_session()
    recorder = AsciicastWriter(
        cast_path, width=cols, height=rows, term=process.get_terminal_type() or "xterm",
        title=f"{grant.identity.user}@{grant.vm.name}",
        record_input=grant.decision.record_input,
        max_bytes=env.max_recording_bytes,
    )
    attachment: Attachment | None = None
    status = 0
    try:
        try:
            decision = grant.decision
            attachment = await hub.attach(
                session_id,
                can_interact=interactive,
                can_break=interactive and BREAK in decision.privileges,
                can_force=interactive and FORCE in decision.privileges,
                user=grant.identity.user,
                tags=subject_tags(Subject(grant.identity.user, grant.attributes)),
                moderation=Moderation(decision.observer, ObserverLeft(
                    decision.on_observer_leave)) if decision.observer else None,
                cols=cols,
                rows=rows,
            )
        except ConsoleError as exc:
            # The URI and the backend's error are for the audit log (the session's end
            # reason), never for the SSH user.
            live.terminate(f"console unavailable: {exc}")
            _say(process, f"{grant.vm.name}: console unavailable")
            return 1
        mode = "interactive" if interactive else "view-only"
        escape = EscapeSequence.parse(grant.vm.escape or DEFAULT_ESCAPE)
        process.stdout.write(
            f"certgate: connected to {grant.vm.name} ({mode}); Ctrl-] leaves, "
            f"{escape.spec}? for the menu\r\n".encode()
        )
        if process.get_terminal_type() is None:
            process.stdout.write(
                b"certgate: no terminal requested: your own terminal echoes and line-buffers "
                b"what you type (Ctrl-] then needs Enter); use ssh -t\r\n")
        status = await _pump(process, attachment, live, recorder, EscapeParser(escape))
    finally:
        try:
            stats = await _record_end(attachment, recorder, live, start, env)
        finally:
            # Out of the live set only now: the gateway's shutdown waits for the live set to
            # empty, so the end is committed before the audit writer stops.
            env.live.pop(session_id, None)
        env.observer.session_ended(
            session_id, user=grant.identity.user, vm=grant.vm.name,
            reason=live.end_reason or "session ended",
            duration_seconds=time.monotonic() - started,
            bytes_in=stats.bytes_to_guest if stats else 0,
            bytes_out=stats.bytes_from_guest if stats else 0)
        _memory.session_ended()
    return status


async def _record_end(attachment: Attachment | None, recorder: AsciicastWriter,
                      live: LiveSession, start: session_log.SessionStart,
                      env: SessionEnvironment) -> SessionStats | None:
    """Detach, close the recording, commit the session's end; the session's counters."""
    stats = None
    if attachment is not None:
        with contextlib.suppress(Exception):
            stats = await attachment.detach()
    digest = await asyncio.to_thread(recorder.close)
    reason = live.end_reason or "session ended"
    if recorder.limit_reached:
        reason += f" (recording stopped at its limit of {recorder.max_bytes} bytes)"
        live.end_reason = reason
    try:
        await env.commit_end(session_log.SessionEnd(
            start.session, reason,
            bytes_in=stats.bytes_to_guest if stats else 0,
            bytes_out=stats.bytes_from_guest if stats else 0,
            recording_sha256=digest, now=datetime.now(UTC)))
    except CertgateError as exc:
        env.observer.database_error(f"recording the end of session {start.session.id}", exc)
    return stats


MAX_TERMINAL = 4096
"""Columns or rows; SSH lets a client claim up to 2**32-1, no terminal has more than this."""


def _bounded_size(cols: int, rows: int) -> tuple[int, int]:
    return min(cols or 80, MAX_TERMINAL), min(rows or 24, MAX_TERMINAL)


def _terminal_size(process: asyncssh.SSHServerProcess[bytes]) -> tuple[int, int]:
    cols, rows, *_ = process.get_terminal_size()
    return _bounded_size(cols, rows)


def user_facing_reason(reason: str) -> str:
    """What the SSH user is told: backend details (URIs, errors) stay in the audit log."""
    for prefix, shown in (("console closed", "console closed"),
                          ("connection lost", "console unavailable"),
                          ("console unavailable", "console unavailable"),
                          ("internal error", "internal error")):
        if reason.startswith(prefix):
            return shown
    return reason


async def _pump(
    process: asyncssh.SSHServerProcess[bytes],
    attachment: Attachment,
    live: LiveSession,
    recorder: AsciicastWriter,
    escapes: EscapeParser,
) -> int:
    flusher = _RecordingFlush(recorder)

    async def guest_to_user() -> None:
        async for chunk in attachment:
            recorder.output(chunk)
            flusher.arm()
            process.stdout.write(chunk)
            await process.stdout.drain()
        live.backend_exit_status = attachment.exit_status
        live.terminate(f"console closed: {attachment.end_reason or 'backend hung up'}")

    async def user_to_guest() -> None:
        while True:
            try:
                data = await process.stdin.read(READ_SIZE)
            except asyncssh.TerminalSizeChanged as change:
                cols, rows = _bounded_size(change.width, change.height)
                recorder.resize(cols, rows)
                flusher.arm()
                await attachment.resize(cols, rows)
                continue
            except asyncssh.BreakReceived:
                if not await attachment.send_break():
                    process.stdout.write(b"\r\ncertgate: break not sent (not permitted or "
                                         b"not supported by this console)\r\n")
                continue
            if not data:
                live.terminate("client closed the session")
                return
            detach = DETACH_KEY in data
            if detach:
                data = data.split(DETACH_KEY, 1)[0]
            live.touch()
            for action in escapes.feed(data):
                if isinstance(action, Forward):
                    if live.interactive:
                        recorder.input(action.data)
                        flusher.arm()
                    await attachment.send(action.data)
                elif await menu_action(attachment, action, escapes):
                    detach = True
                    break
            if detach:
                live.terminate("user detached")
                return

    def stopped(task: asyncio.Task[None]) -> None:
        """A copy loop stopped: the session ends (a loop that returns has said why). A loop
        cancelled from anywhere but this pump's own ending also ends it, never leaving the
        pump waiting with one direction dead."""
        if task.cancelled():
            live.ended.set()
            return
        exc = task.exception()
        if exc is None:
            live.ended.set()
        elif isinstance(exc, asyncssh.Error | ConnectionError | OSError | ConsoleError):
            live.terminate(f"connection lost: {exc}")
        else:
            live.terminate(f"internal error: {type(exc).__name__}")
            log.error("session pump failed", exc_info=exc)

    # The two copy loops end the session through a done-callback, so this coroutine waits on
    # the session's end signal alone: no waiter task and no asyncio.wait per live session.
    tasks = [asyncio.create_task(t) for t in (guest_to_user(), user_to_guest())]
    for task in tasks:
        task.add_done_callback(stopped)
    try:
        await live.ended.wait()
    finally:
        flusher.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    reason = live.end_reason or "session ended"
    if reason not in ("user detached", "client closed the session"):
        _say(process, f"session ended: {user_facing_reason(reason)}")
    if reason.startswith("console closed:") and live.backend_exit_status is not None:
        return live.backend_exit_status
    return 0 if reason in ("user detached", "client closed the session") else 1


async def menu_action(attachment: Attachment, action: MenuCommand | UnknownCommand,
                      escapes: EscapeParser) -> bool:
    """Carry out one escape menu command; True when the user asked to detach."""
    if isinstance(action, UnknownCommand):
        attachment.notice(f"unknown escape command {chr(action.key)!r}; "
                          f"{escapes.sequence.spec}? for help")
        return False
    command = action.command
    if command is Command.DETACH:
        return True
    if command is Command.HELP:
        for line in help_text(escapes.sequence):
            attachment.notice(line)
    elif command is Command.WHO:
        for person in attachment.who():
            me = " (you)" if person.session_id == attachment.session_id else ""
            attachment.notice(f"{person.user:<16} {person.mode}{me}")
    elif command is Command.REPLAY:
        attachment.replay(action.count or DEFAULT_REPLAY)
    elif command is Command.BREAK:
        if not await attachment.send_break():
            attachment.notice("break not sent (not permitted, or not supported by this console)")
    elif command is Command.TAKE:
        attachment.take(force=False)
    elif command is Command.FORCE:
        attachment.take(force=True)
    elif command is Command.HAND_BACK:
        attachment.hand_back()
    elif command is Command.SHARE:
        attachment.share()
    return False


class _RecordingFlush:
    """Writes the recording out at most a second after new events, and only then: a quiet
    session costs no timer at all (no per-session ticking)."""

    def __init__(self, recorder: AsciicastWriter) -> None:
        self.recorder = recorder
        self.handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_later(FLUSH_AFTER, self._flush)

    def _flush(self) -> None:
        self.handle = None
        self.recorder.tick()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def wants_interaction(grant: Grant, command: str | None) -> bool | None:
    """True for interactive, False for view-only, None when neither is granted."""
    privileges = grant.decision.privileges
    if command == "view":
        return False if "console.view" in privileges else None
    if INTERACT in privileges:
        return True
    if "console.view" in privileges:
        return False
    return None

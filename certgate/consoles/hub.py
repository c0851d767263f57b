"""ConsoleHub: the async glue that shares one VM console among gateway sessions.

QEMU (and ``virsh console``) serve one client per console, so the hub owns the single
backend connection and fans it out; every decision -- who may type, who may send a break,
what a newcomer is replayed, who fell behind, who is told what -- is the multiplexer's
(``mux.py``). This module only moves bytes between the backend, the console log and
per-session queues.

Lifetime, per VM (``keep``):

* **kept** (``always``, the default for ``unix:``/``tcp:`` consoles): ``start_keeping`` opens
  the backend when the gateway starts and holds it for as long as the VM is registered,
  logging everything it prints whether or not anyone watches. When the backend goes away
  (the VM restarts) sessions stay attached and are told; the keeper reconnects with
  backoff and notes the gap in the console log and through ``on_event`` in the audit chain
  (``on_event`` also records forced takeovers and moderation changes).
* **on demand**: opened on the first attach, closed when the last session detaches (what
  ``exec:`` consoles need, where holding ``virsh console`` open would lock others out).

``ssh://`` targets are different: each session gets its own upstream connection and its own
multiplexer, because a login shell belongs to one person and must not be shared (nor logged
here: its session recording covers it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from certgate.consoles.backends import ConsoleConnection, UpstreamSshOptions, open_console
from certgate.consoles.errors import ConsoleClosed, ConsoleError, ConsoleUnavailable
from certgate.consoles.keeper import Backoff
from certgate.consoles.mux import (
    DEFAULT_MAX_LAG,
    DEFAULT_PAUSE_LAG,
    DEFAULT_REPLAY_LINES,
    DEFAULT_SCROLLBACK,
    Attendee,
    ConsoleMux,
    EndReason,
    Moderation,
    Notice,
    Privileges,
    SessionEnd,
    SessionStats,
    WriteMode,
)
from certgate.consoles.uri import ConsoleTarget, SshConsole

log = logging.getLogger(__name__)

Opener = Callable[..., Awaitable[ConsoleConnection]]
EventReporter = Callable[[str, dict[str, Any]], Awaitable[None]]


class ConsoleLog(Protocol):
    """What the hub needs of a console log (``certgate.consolelog.writer``)."""

    def output(self, data: bytes) -> None: ...

    def note(self, text: str) -> None: ...


def render_notice(text: str) -> bytes:
    """A notice as the user's terminal shows it: its own line, marked as the gateway's."""
    return f"\r\n[certgate: {text}]\r\n".encode()


class _Inbox:
    """A first-in first-out hand-over to one reader: what ``asyncio.Queue`` does here, without
    the four deques (~2.5 KiB) it holds even when empty, for every live session. The reader
    waits on a future made only while it waits; consumed items are released at once."""

    __slots__ = ("_items", "_next", "_waiter")

    def __init__(self) -> None:
        self._items: list[tuple[bytes, bool] | None] = []
        self._next = 0
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: tuple[bytes, bool] | None) -> None:
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def ready(self) -> bool:
        return self._next < len(self._items)

    def arrival(self) -> asyncio.Future[None]:
        """Done when the next item is put (awaited directly: no coroutine per session)."""
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    def take(self) -> tuple[bytes, bool] | None:
        """The oldest item; only when ``ready()``."""
        items, index = self._items, self._next
        item = items[index]
        if index + 1 == len(items):
            items.clear()
            self._next = 0
        else:
            items[index] = None  # released now, not when the backlog is drained
            self._next = index + 1
        return item


class Attachment:
    """One session's view of a console: ``async for chunk in attachment`` yields what to show.

    Iteration ends when the attachment ends (detach, backend hang-up, too slow, a moderated
    session's observer leaving); then ``end_reason`` says why in one line.
    """

    def __init__(self, channel: _Channel, session_id: str, privileges: Privileges) -> None:
        self._channel = channel
        self.session_id = session_id
        self.privileges = privileges
        self._queue = _Inbox()
        self._stats = channel.mux.stats(session_id)
        self.end_reason: str | None = None

    @property
    def stats(self) -> SessionStats:
        return self._stats

    @property
    def ended(self) -> bool:
        return self.end_reason is not None

    @property
    def exit_status(self) -> int | None:
        """The console program's exit status (``exec:``/``ssh://``) once it ended, else None."""
        connection = self._channel.connection
        return connection.exit_status if connection is not None else None

    @property
    def may_type(self) -> bool:
        return not self.ended and self._channel.mux.may_type(self.session_id)

    def __aiter__(self) -> Attachment:
        return self

    async def __anext__(self) -> bytes:
        inbox = self._queue
        while not inbox.ready():
            await inbox.arrival()
        item = inbox.take()
        if item is None:
            self._queue.put(None)  # later iterations end too
            raise StopAsyncIteration
        data, from_guest = item
        if from_guest:
            self._channel.mux.delivered(self.session_id, len(data))
            self._channel.progress.set()
        return data

    async def send(self, data: bytes) -> None:
        """Pass input to the guest if this session may type now; otherwise it is dropped."""
        if self.ended:
            raise ConsoleClosed(f"console session ended: {self.end_reason}")
        forward = self._channel.mux.session_input(self.session_id, data)
        connection = self._channel.connection
        if forward and connection is not None:
            async with self._channel.write_lock:
                await connection.write(forward)

    async def send_break(self) -> bool:
        """Send a serial break if allowed and the backend can; True when delivered."""
        if self.ended or not self._channel.mux.request_break(self.session_id):
            return False
        connection = self._channel.connection
        return connection is not None and await connection.send_break()

    async def resize(self, cols: int, rows: int) -> None:
        if self.ended:
            return
        size = self._channel.mux.request_resize(self.session_id, cols, rows)
        if size is not None and self._channel.connection is not None:
            await self._channel.connection.resize(*size)

    # -- the escape menu's actions -----------------------------------------------------------

    def who(self) -> list[Attendee]:
        return self._channel.mux.who() if not self.ended else []

    def replay(self, lines: int) -> None:
        """Queue the console's last ``lines`` lines for this session."""
        if not self.ended:
            data = self._channel.mux.replay(self.session_id, lines)
            self.notice(f"the last {lines} lines:")
            self._push(data)

    def take(self, *, force: bool) -> None:
        self._keyboard(self._channel.mux.take(self.session_id, force=force))

    def hand_back(self) -> None:
        self._keyboard(self._channel.mux.hand_back(self.session_id))

    def share(self) -> None:
        self._keyboard(self._channel.mux.share(self.session_id))

    def notice(self, text: str) -> None:
        """A line for this session's user only."""
        self._push(render_notice(text), from_guest=False)

    def _keyboard(self, refusal: str | None) -> None:
        if refusal is not None:
            self.notice(refusal)
        self._channel.hub._dispatch(self._channel)

    async def detach(self) -> SessionStats:
        """Leave the console (idempotent); returns the session's final counters."""
        if not self.ended:
            await self._channel.hub._detach(self._channel, self.session_id)
        return self._stats

    def _push(self, data: bytes, *, from_guest: bool = True) -> None:
        if not self.ended and data:
            self._queue.put((data, from_guest))

    def _finish(self, reason: str) -> None:
        if not self.ended:
            self.end_reason = reason
            self._queue.put(None)


@dataclass(eq=False)
class _Channel:
    hub: ConsoleHub
    connection: ConsoleConnection | None
    mux: ConsoleMux
    attachments: dict[str, Attachment] = field(default_factory=dict)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None


class ConsoleHub:
    """All gateway sessions on one VM console."""

    def __init__(
        self,
        target: ConsoleTarget,
        *,
        term_type: str = "xterm",
        ssh_options: UpstreamSshOptions | None = None,
        connect_timeout: float = 5.0,
        scrollback_limit: int = DEFAULT_SCROLLBACK,
        max_lag: int = DEFAULT_MAX_LAG,
        pause_lag: int = DEFAULT_PAUSE_LAG,
        replay_lines: int = DEFAULT_REPLAY_LINES,
        write_mode: WriteMode = WriteMode.SHARED,
        console_log: ConsoleLog | None = None,
        on_event: EventReporter | None = None,
        backoff: Backoff | None = None,
        opener: Opener = open_console,
    ) -> None:
        self.target = target
        self._term_type = term_type
        self._ssh_options = ssh_options
        self._connect_timeout = connect_timeout
        self._scrollback_limit = scrollback_limit
        self._max_lag = max_lag
        self._pause_lag = pause_lag
        self._replay_lines = replay_lines
        self._write_mode = write_mode
        self.console_log = console_log
        self._on_event = on_event
        self._reports: set[asyncio.Task[None]] = set()
        self._backoff = backoff or Backoff()
        self._opener = opener
        self._shared: _Channel | None = None
        self._private: dict[str, _Channel] = {}
        self._lock = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None
        self._unavailable = f"vm console {target}: not connected yet"
        self.connected = asyncio.Event()
        """Set while a kept console's backend is connected (tests and the demo wait on it)."""

    @property
    def per_session_backend(self) -> bool:
        return isinstance(self.target, SshConsole)

    @property
    def keeping(self) -> bool:
        return self._keeper is not None

    @property
    def session_ids(self) -> tuple[str, ...]:
        ids = list(self._private)
        if self._shared is not None:
            ids.extend(self._shared.attachments)
        return tuple(ids)

    @property
    def backend_open(self) -> bool:
        shared = self._shared is not None and self._shared.connection is not None
        return shared or bool(self._private)

    def set_write_mode(self, mode: WriteMode) -> None:
        """A policy change: applies to the shared console now and to later backends."""
        self._write_mode = mode
        if self._shared is not None:
            self._shared.mux.set_write_mode(mode)
            self._dispatch(self._shared)

    async def attach(
        self,
        session_id: str,
        *,
        can_interact: bool,
        can_break: bool = False,
        can_force: bool = False,
        user: str | None = None,
        tags: Iterable[str] = (),
        moderation: Moderation | None = None,
        cols: int = 80,
        rows: int = 24,
    ) -> Attachment:
        """Join the console; the first attach opens an on-demand backend. Raises
        ConsoleUnavailable when the backend cannot be opened, or a kept one is away (sessions
        already attached stay through a reconnection and are told)."""
        privileges = Privileges(interact=can_interact, send_break=can_break, force=can_force)
        async with self._lock:
            if session_id in self.session_ids:
                raise ValueError(f"session {session_id!r} is already attached")
            if self.per_session_backend:
                channel = await self._open_channel(cols, rows)
                self._private[session_id] = channel
            else:
                if self._shared is None:
                    self._shared = await self._open_channel(cols, rows)
                channel = self._shared
                if channel.connection is None:  # kept, and away right now
                    raise ConsoleUnavailable(self._unavailable)
            replay = channel.mux.attach(session_id, privileges, user=user, tags=tags,
                                        moderation=moderation)
            attachment = Attachment(channel, session_id, privileges)
            channel.attachments[session_id] = attachment
            attachment._push(replay)
            self._dispatch(channel)
        if can_interact and not self.per_session_backend:
            await attachment.resize(cols, rows)
        return attachment

    async def start_keeping(self) -> None:
        """Hold the backend from now on, reconnecting with backoff (shared consoles only)."""
        if self.per_session_backend:
            raise ValueError(f"{self.target}: per-session consoles cannot be kept")
        async with self._lock:
            if self._keeper is not None:
                return
            if self._shared is None:
                self._shared = self._new_channel(None, 80, 24)
                self._shared.mux.backend_lost("not connected yet")
            elif self._shared.pump is not None:
                # An on-demand backend is already open: the keeper takes over its pump.
                self._shared.pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._shared.pump
                self._shared.pump = None
            self._keeper = asyncio.create_task(self._keep(self._shared),
                                               name=f"keeper {self.target}")

    async def close(self, reason: str = "console gateway shutting down") -> None:
        """End every attachment with ``reason``, stop keeping and close all backends."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        async with self._lock:
            channels = list(self._private.values())
            if self._shared is not None:
                channels.append(self._shared)
            for channel in channels:
                for end in channel.mux.backend_closed(reason):
                    channel.attachments.pop(end.session_id)._finish(end.reason)
                await self._retire(channel)
        self.connected.clear()

    # -- internals ----------------------------------------------------------------------------

    def _new_channel(self, connection: ConsoleConnection | None, cols: int,
                     rows: int) -> _Channel:
        mux = ConsoleMux(
            scrollback_limit=self._scrollback_limit,
            max_lag=self._max_lag,
            pause_lag=self._pause_lag,
            window_size=(cols, rows),
            write_mode=self._write_mode if not self.per_session_backend else WriteMode.SHARED,
            replay_lines=self._replay_lines,
        )
        return _Channel(hub=self, connection=connection, mux=mux)

    async def _connect(self, cols: int, rows: int) -> ConsoleConnection:
        return await self._opener(
            self.target,
            term_type=self._term_type,
            cols=cols,
            rows=rows,
            ssh_options=self._ssh_options,
            connect_timeout=self._connect_timeout,
        )

    async def _open_channel(self, cols: int, rows: int) -> _Channel:
        channel = self._new_channel(await self._connect(cols, rows), cols, rows)
        channel.pump = asyncio.create_task(self._pump(channel), name=f"console {self.target}")
        return channel

    def _dispatch(self, channel: _Channel) -> None:
        """Deliver the multiplexer's notices and carry out the ends it decided."""
        for event in channel.mux.drain_events():
            if isinstance(event, Notice):
                if event.audit is not None and self._on_event is not None:
                    task = asyncio.get_running_loop().create_task(
                        self._report(event.audit, dict(event.details)))
                    self._reports.add(task)
                    task.add_done_callback(self._reports.discard)
                for session_id in event.session_ids:
                    attachment = channel.attachments.get(session_id)
                    if attachment is not None:
                        attachment.notice(event.text)
            elif isinstance(event, SessionEnd):
                attachment = channel.attachments.pop(event.session_id, None)
                if attachment is not None:
                    attachment._finish(event.reason)

    def _log_output(self, channel: _Channel, data: bytes) -> None:
        if self.console_log is not None and channel is self._shared:
            try:
                self.console_log.output(data)
            except OSError as exc:  # a full disk must not take the console down with it
                log.error("console log of %s: %s", self.target, exc)

    def _note(self, text: str) -> None:
        if self.console_log is not None:
            with contextlib.suppress(OSError):
                self.console_log.note(text)

    async def _copy_output(self, channel: _Channel, connection: ConsoleConnection) -> bool:
        """Copy backend output to the log and the sessions; True when the channel emptied
        because every session was too slow (on-demand consoles then close)."""
        while True:
            data = await connection.read()
            if not data:
                return False
            self._log_output(channel, data)
            fanout = channel.mux.backend_output(data)
            for session_id in fanout.session_ids:
                channel.attachments[session_id]._push(fanout.data)
            for session_id in fanout.too_slow:
                channel.mux.detach(session_id)
                channel.attachments.pop(session_id)._finish(EndReason.TOO_SLOW.value)
            if fanout.too_slow:
                self._dispatch(channel)
                if not channel.attachments and not self.keeping:
                    return True
            while channel.mux.should_pause():
                channel.progress.clear()
                await channel.progress.wait()

    async def _pump(self, channel: _Channel) -> None:
        """On-demand: copy backend output until the backend hangs up, then end everyone."""
        assert channel.connection is not None
        reason: str | None = None
        try:
            if await self._copy_output(channel, channel.connection):
                self._forget(channel)
                await channel.connection.close()
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("console %s: backend read failed: %r", self.target, exc)
            reason = f"vm console {self.target}: {exc}"
        if reason is None:
            reason = channel.connection.end_reason
        for end in channel.mux.backend_closed(reason):
            channel.attachments.pop(end.session_id)._finish(end.reason)
        self._forget(channel)
        await channel.connection.close()

    async def _keep(self, channel: _Channel) -> None:
        """Kept: connect, copy until the backend goes away, note the gap, retry with backoff."""
        lost_at: float | None = None
        lost_reason = "not connected yet"
        first = True
        while True:
            try:
                # An on-demand connection already open when keeping began is taken over:
                # QEMU would queue a second one silently.
                connection = channel.connection or await self._connect(
                    *(channel.mux.window_size or (80, 24)))
            except ConsoleError as exc:
                self._unavailable = str(exc)
                if first:
                    self._note(f"console unavailable: {exc}; retrying")
                    lost_at, lost_reason, first = time.monotonic(), str(exc), False
                    await self._report("console.keeper.lost", {"reason": str(exc)})
                await asyncio.sleep(self._backoff.next_delay())
                continue
            attempts = self._backoff.attempts
            self._backoff.reset()
            channel.connection = connection
            self.connected.set()
            if first:
                self._note("console kept by the gateway")
            else:
                gap = time.monotonic() - (lost_at or time.monotonic())
                self._note(f"console reconnected after {gap:.1f}s")
                await self._report("console.keeper.restored",
                                   {"gap_seconds": round(gap, 3), "attempts": attempts + 1,
                                    "lost_reason": lost_reason})
            first = False
            channel.mux.backend_restored(time.monotonic() - (lost_at or time.monotonic()))
            self._dispatch(channel)
            try:
                await self._copy_output(channel, connection)
                lost_reason = connection.end_reason
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("console %s: backend read failed: %r", self.target, exc)
                lost_reason = f"vm console {self.target}: {exc}"
            finally:
                self.connected.clear()
                channel.connection = None
                with contextlib.suppress(Exception):
                    await connection.close()
            lost_at = time.monotonic()
            self._unavailable = f"{lost_reason} (reconnecting)"
            self._note(f"console connection lost: {lost_reason}; reconnecting")
            channel.mux.backend_lost(lost_reason)
            self._dispatch(channel)
            await self._report("console.keeper.lost", {"reason": lost_reason})
            await asyncio.sleep(self._backoff.next_delay())

    async def _report(self, event: str, details: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            await self._on_event(event, details)
        except Exception as exc:  # the audit trail failing must not stop the keeper
            log.error("console %s: cannot record %s: %s", self.target, event, exc)

    async def _detach(self, channel: _Channel, session_id: str) -> None:
        async with self._lock:
            attachment = channel.attachments.pop(session_id, None)
            if attachment is None:
                return
            channel.mux.detach(session_id)
            channel.progress.set()  # a paused pump may have been waiting for this session
            attachment._finish(EndReason.DETACHED.value)
            self._dispatch(channel)
            if not channel.attachments and not (self.keeping and channel is self._shared):
                await self._retire(channel)

    async def _retire(self, channel: _Channel) -> None:
        """Stop the pump, close the backend, forget the channel (caller holds the lock)."""
        self._forget(channel)
        if channel.pump is not None and not channel.pump.done():
            channel.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await channel.pump
        if channel.connection is not None:
            await channel.connection.close()

    def _forget(self, channel: _Channel) -> None:
        if self._shared is channel:
            self._shared = None
        for session_id, private in list(self._private.items()):
            if private is channel:
                del self._private[session_id]

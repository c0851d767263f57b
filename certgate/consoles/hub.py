"""ConsoleHub: the async glue that shares one VM console among gateway sessions.

QEMU (and ``virsh console``) serve one client per console, so the hub owns the single
backend connection and fans it out; every decision -- who may type, who may send a break,
what a newcomer is replayed, who fell behind -- is the multiplexer's (``mux.py``). This
module only moves bytes between the backend and per-session queues.

Lifetime: the backend is opened on the first attach and closed when the last session
detaches. Holding it open with nobody watching would block other clients QEMU has queued
(an operator's own ``socat``) for no benefit; the cost is that scrollback starts afresh.

``ssh://`` targets are different: each session gets its own upstream connection and its own
multiplexer, because a login shell belongs to one person and must not be shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from certgate.consoles.backends import ConsoleConnection, UpstreamSshOptions, open_console
from certgate.consoles.errors import ConsoleClosed
from certgate.consoles.mux import (
    DEFAULT_MAX_LAG,
    DEFAULT_PAUSE_LAG,
    DEFAULT_SCROLLBACK,
    ConsoleMux,
    EndReason,
    Privileges,
    SessionStats,
)
from certgate.consoles.uri import ConsoleTarget, SshConsole

log = logging.getLogger(__name__)

Opener = Callable[..., Awaitable[ConsoleConnection]]


class Attachment:
    """One session's view of a console: ``async for chunk in attachment`` yields guest output.

    Iteration ends when the attachment ends (detach, backend hang-up, too slow); then
    ``end_reason`` says why in one line.
    """

    def __init__(self, channel: _Channel, session_id: str, privileges: Privileges) -> None:
        self._channel = channel
        self.session_id = session_id
        self.privileges = privileges
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
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
        return self._channel.connection.exit_status

    def __aiter__(self) -> Attachment:
        return self

    async def __anext__(self) -> bytes:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # later iterations end too
            raise StopAsyncIteration
        self._channel.mux.delivered(self.session_id, len(item))
        self._channel.progress.set()
        return item

    async def send(self, data: bytes) -> None:
        """Pass input to the guest if this session may interact; otherwise it is dropped."""
        if self.ended:
            raise ConsoleClosed(f"console session ended: {self.end_reason}")
        forward = self._channel.mux.session_input(self.session_id, data)
        if forward:
            async with self._channel.write_lock:
                await self._channel.connection.write(forward)

    async def send_break(self) -> bool:
        """Send a serial break if allowed and the backend can; True when delivered."""
        if self.ended or not self._channel.mux.request_break(self.session_id):
            return False
        return await self._channel.connection.send_break()

    async def resize(self, cols: int, rows: int) -> None:
        if self.ended:
            return
        size = self._channel.mux.request_resize(self.session_id, cols, rows)
        if size is not None:
            await self._channel.connection.resize(*size)

    async def detach(self) -> SessionStats:
        """Leave the console (idempotent); returns the session's final counters."""
        if not self.ended:
            await self._channel.hub._detach(self._channel, self.session_id)
        return self._stats

    def _push(self, data: bytes) -> None:
        if not self.ended:
            self._queue.put_nowait(data)

    def _finish(self, reason: str) -> None:
        if not self.ended:
            self.end_reason = reason
            self._queue.put_nowait(None)


@dataclass(eq=False)
class _Channel:
    hub: ConsoleHub
    connection: ConsoleConnection
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
        opener: Opener = open_console,
    ) -> None:
        self.target = target
        self._term_type = term_type
        self._ssh_options = ssh_options
        self._connect_timeout = connect_timeout
        self._scrollback_limit = scrollback_limit
        self._max_lag = max_lag
        self._pause_lag = pause_lag
        self._opener = opener
        self._shared: _Channel | None = None
        self._private: dict[str, _Channel] = {}
        self._lock = asyncio.Lock()

    @property
    def per_session_backend(self) -> bool:
        return isinstance(self.target, SshConsole)

    @property
    def session_ids(self) -> tuple[str, ...]:
        ids = list(self._private)
        if self._shared is not None:
            ids.extend(self._shared.attachments)
        return tuple(ids)

    @property
    def backend_open(self) -> bool:
        return self._shared is not None or bool(self._private)

    async def attach(
        self,
        session_id: str,
        *,
        can_interact: bool,
        can_break: bool = False,
        cols: int = 80,
        rows: int = 24,
    ) -> Attachment:
        """Join the console; the first attach opens the backend (may raise ConsoleUnavailable)."""
        privileges = Privileges(interact=can_interact, send_break=can_break)
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
            replay = channel.mux.attach(session_id, privileges)
            attachment = Attachment(channel, session_id, privileges)
            channel.attachments[session_id] = attachment
            if replay:
                attachment._push(replay)
        if can_interact and not self.per_session_backend:
            await attachment.resize(cols, rows)
        return attachment

    async def close(self, reason: str = "console gateway shutting down") -> None:
        """End every attachment with ``reason`` and close all backends."""
        async with self._lock:
            channels = list(self._private.values())
            if self._shared is not None:
                channels.append(self._shared)
            for channel in channels:
                for end in channel.mux.backend_closed(reason):
                    channel.attachments.pop(end.session_id)._finish(end.reason)
                await self._retire(channel)

    async def _open_channel(self, cols: int, rows: int) -> _Channel:
        connection = await self._opener(
            self.target,
            term_type=self._term_type,
            cols=cols,
            rows=rows,
            ssh_options=self._ssh_options,
            connect_timeout=self._connect_timeout,
        )
        mux = ConsoleMux(
            scrollback_limit=self._scrollback_limit,
            max_lag=self._max_lag,
            pause_lag=self._pause_lag,
            window_size=(cols, rows),
        )
        channel = _Channel(hub=self, connection=connection, mux=mux)
        channel.pump = asyncio.create_task(self._pump(channel), name=f"console {self.target}")
        return channel

    async def _pump(self, channel: _Channel) -> None:
        """Copy backend output to the sessions until the backend hangs up."""
        reason: str | None = None
        try:
            while True:
                data = await channel.connection.read()
                if not data:
                    break
                fanout = channel.mux.backend_output(data)
                for session_id in fanout.session_ids:
                    channel.attachments[session_id]._push(fanout.data)
                for session_id in fanout.too_slow:
                    channel.mux.detach(session_id)
                    channel.attachments.pop(session_id)._finish(EndReason.TOO_SLOW.value)
                if fanout.too_slow and not channel.attachments:
                    self._forget(channel)
                    await channel.connection.close()
                    return
                while channel.mux.should_pause():
                    channel.progress.clear()
                    await channel.progress.wait()
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

    async def _detach(self, channel: _Channel, session_id: str) -> None:
        async with self._lock:
            attachment = channel.attachments.pop(session_id, None)
            if attachment is None:
                return
            channel.mux.detach(session_id)
            channel.progress.set()  # a paused pump may have been waiting for this session
            attachment._finish(EndReason.DETACHED.value)
            if not channel.attachments:
                await self._retire(channel)

    async def _retire(self, channel: _Channel) -> None:
        """Stop the pump, close the backend, forget the channel (caller holds the lock)."""
        self._forget(channel)
        if channel.pump is not None and not channel.pump.done():
            channel.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await channel.pump
        await channel.connection.close()

    def _forget(self, channel: _Channel) -> None:
        if self._shared is channel:
            self._shared = None
        for session_id, private in list(self._private.items()):
            if private is channel:
                del self._private[session_id]

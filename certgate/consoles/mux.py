"""The console multiplexer: who sees a VM console, who may type into it, what each did.

A sans-I/O state machine in the style of h11: it never touches a socket or the event loop.
The async glue (``hub.py``) reports events to it -- bytes from the guest, bytes a session
typed, a break request, a session leaving, the backend hanging up -- and carries out what
the returned values say. Every access decision on a shared console is made here, so all of
them are covered by plain unit tests.

Decisions (see docs/consoles.md):

* **Shared input.** Every session holding the interact privilege may type, like several
  people at one serial line; there is no write lock to fight over. A view-only session's
  input is dropped here and counted, and never reaches the guest.
* **Breaks** need the break privilege in addition to interact.
* **Scrollback.** The last ``scrollback_limit`` bytes of guest output are kept and replayed
  to a session when it attaches, so it sees the screen context rather than a blank line.
* **Window size.** Only interactive sessions may resize a shared pty backend; the most
  recent request wins (a serial line has no window size, backends ignore it).
* **Flow control.** A view-only session more than ``max_lag`` bytes behind (queued, not yet
  delivered) is detached with a reason instead of buffering without bound. Interactive
  sessions are never cut off for being slow: while one of them is more than ``pause_lag``
  bytes behind, ``should_pause`` tells the glue to stop reading the backend, so a fast
  ``cat`` on the guest is paced by the person who ran it (as on a real serial line).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from certgate.consoles.errors import ConsoleClosed, SessionUnknown

DEFAULT_SCROLLBACK = 64 * 1024
DEFAULT_MAX_LAG = 1024 * 1024
DEFAULT_PAUSE_LAG = 256 * 1024
_LINE_START_WINDOW = 4096


class EndReason(enum.Enum):
    """Why a session's attachment ended; the value is the line shown to the user."""

    DETACHED = "session detached"
    BACKEND_CLOSED = "vm console closed"
    TOO_SLOW = "session fell too far behind the console output"


@dataclass
class SessionStats:
    """Per-session audit counters (bytes are raw console bytes, not characters)."""

    bytes_to_guest: int = 0
    bytes_from_guest: int = 0
    bytes_replayed: int = 0
    input_dropped_bytes: int = 0
    input_dropped_writes: int = 0
    breaks_sent: int = 0
    breaks_refused: int = 0


@dataclass(frozen=True)
class Privileges:
    """What a session may do on this console, as decided by policy at attach time."""

    interact: bool = False
    send_break: bool = False


@dataclass
class _Session:
    privileges: Privileges
    stats: SessionStats = field(default_factory=SessionStats)
    pending: int = 0


@dataclass(frozen=True)
class Fanout:
    """Guest output to deliver, unchanged, to each listed session."""

    data: bytes
    session_ids: tuple[str, ...]
    too_slow: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionEnd:
    """A session the glue must close, and why."""

    session_id: str
    reason: str
    stats: SessionStats


class ConsoleMux:
    """State of one VM console shared by any number of gateway sessions."""

    def __init__(
        self,
        *,
        scrollback_limit: int = DEFAULT_SCROLLBACK,
        max_lag: int = DEFAULT_MAX_LAG,
        pause_lag: int = DEFAULT_PAUSE_LAG,
        window_size: tuple[int, int] | None = None,
    ) -> None:
        if scrollback_limit < 0 or max_lag <= 0:
            raise ValueError("scrollback_limit must be >= 0 and max_lag > 0")
        self._scrollback = bytearray()
        self._limit = scrollback_limit
        self._max_lag = max_lag
        self._pause_lag = pause_lag
        self._sessions: dict[str, _Session] = {}
        self._closed_reason: str | None = None
        self.window_size = window_size

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def session_ids(self) -> tuple[str, ...]:
        return tuple(self._sessions)

    @property
    def scrollback(self) -> bytes:
        return bytes(self._scrollback)

    def stats(self, session_id: str) -> SessionStats:
        return self._get(session_id).stats

    def privileges(self, session_id: str) -> Privileges:
        return self._get(session_id).privileges

    def attach(self, session_id: str, privileges: Privileges) -> bytes:
        """Add a session; return the scrollback it must be shown first."""
        if self._closed_reason is not None:
            raise ConsoleClosed(f"cannot attach: {self._closed_reason}")
        if session_id in self._sessions:
            raise ValueError(f"session {session_id!r} is already attached")
        session = _Session(privileges)
        replay = bytes(self._scrollback)
        session.stats.bytes_replayed = len(replay)
        session.pending = len(replay)
        self._sessions[session_id] = session
        return replay

    def detach(self, session_id: str) -> SessionEnd:
        """Remove a session (it left, or the glue closed it); return its final counters."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            raise SessionUnknown(f"session {session_id!r} is not attached")
        return SessionEnd(session_id, EndReason.DETACHED.value, session.stats)

    @property
    def empty(self) -> bool:
        return not self._sessions

    def backend_output(self, data: bytes) -> Fanout:
        """Record guest output; say who receives it and who has fallen too far behind.

        Sessions named in ``too_slow`` are still attached: the glue closes them with
        ``EndReason.TOO_SLOW`` and then calls ``detach``.
        """
        if self._closed_reason is not None or not data:
            return Fanout(b"", ())
        self._remember(data)
        receivers = []
        slow = []
        for session_id, session in self._sessions.items():
            session.stats.bytes_from_guest += len(data)
            session.pending += len(data)
            receivers.append(session_id)
            if session.pending > self._max_lag and not session.privileges.interact:
                slow.append(session_id)
        return Fanout(data, tuple(receivers), tuple(slow))

    def should_pause(self) -> bool:
        """True while an interactive session lags so far that reading more would only pile up."""
        return any(
            s.privileges.interact and s.pending > self._pause_lag
            for s in self._sessions.values()
        )

    def delivered(self, session_id: str, count: int) -> None:
        """The glue handed ``count`` queued bytes to the session's client."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.pending = max(0, session.pending - count)

    def session_input(self, session_id: str, data: bytes) -> bytes:
        """Return what to write to the guest for this input: all of it, or nothing."""
        session = self._get(session_id)
        if not data:
            return b""
        if not session.privileges.interact or self._closed_reason is not None:
            session.stats.input_dropped_bytes += len(data)
            session.stats.input_dropped_writes += 1
            return b""
        session.stats.bytes_to_guest += len(data)
        return data

    def request_break(self, session_id: str) -> bool:
        """Return True when a break should be sent to the guest for this session."""
        session = self._get(session_id)
        allowed = (
            session.privileges.interact
            and session.privileges.send_break
            and self._closed_reason is None
        )
        if allowed:
            session.stats.breaks_sent += 1
        else:
            session.stats.breaks_refused += 1
        return allowed

    def request_resize(self, session_id: str, cols: int, rows: int) -> tuple[int, int] | None:
        """Return the window size to apply to the backend, or None to ignore the request."""
        session = self._get(session_id)
        if not session.privileges.interact or self._closed_reason is not None:
            return None
        if cols <= 0 or rows <= 0 or (cols, rows) == self.window_size:
            return None
        self.window_size = (cols, rows)
        return self.window_size

    def backend_closed(self, reason: str = EndReason.BACKEND_CLOSED.value) -> list[SessionEnd]:
        """The backend hung up: every session ends with ``reason``; later attaches fail."""
        if self._closed_reason is not None:
            return []
        self._closed_reason = reason
        ends = [SessionEnd(sid, reason, s.stats) for sid, s in self._sessions.items()]
        self._sessions.clear()
        return ends

    def _remember(self, data: bytes) -> None:
        if self._limit == 0:
            return
        self._scrollback += data
        excess = len(self._scrollback) - self._limit
        if excess > 0:
            # Start the replay at a line start when one is near, not in mid-line.
            newline = self._scrollback.find(b"\n", excess, excess + _LINE_START_WINDOW)
            cut = newline + 1 if newline >= 0 else excess
            del self._scrollback[:cut]

    def _get(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionUnknown(f"session {session_id!r} is not attached")
        return session

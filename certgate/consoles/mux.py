"""The console multiplexer: who sees a VM console, who may type into it, what each did.

A sans-I/O state machine in the style of h11: it never touches a socket or the event loop.
The async glue (``hub.py``) reports events to it -- bytes from the guest, bytes a session
typed, a break request, a session leaving, the backend hanging up -- and carries out what
the returned values say. Every access decision on a shared console is made here, so all of
them are covered by plain unit tests.

Decisions (see docs/consoles.md):

* **Write modes.** ``shared``: every session holding the interact privilege may type, like
  several people at one serial line. ``exclusive``: one writer at a time (the first
  interactive session to attach); the others watch until the writer hands the keyboard back
  or shares it, or until someone holding ``console.force`` takes it (ConMan/conserver ``-f``:
  the previous writer drops to watching and is told who took over). When the writer leaves,
  the keyboard passes to the interactive session that has waited longest.
* **Moderation.** A session granted under a moderated rule is *held* (its input dropped, with
  a notice) until a session holding the rule's observer attribute is attached view-only.
  If the last observer leaves, held sessions pause again or end, as the rule says.
* **Notices.** Joins, leaves, keyboard changes and moderation changes produce one-line
  ``Notice`` events for the *users* (``drain_events``); nothing of it reaches the guest.
* View-only input is dropped here and counted, and never reaches the guest.
* **Breaks** need the break privilege in addition to being allowed to type.
* **Scrollback.** The last ``scrollback_limit`` bytes of guest output are kept; an attaching
  session is replayed its last ``replay_lines`` lines (conserver shows 20), so it sees the
  context rather than a blank line. ``replay`` returns any number of recent lines on demand.
* **Window size.** Only sessions that may type resize a shared pty backend; the most recent
  request wins (a serial line has no window size, backends ignore it).
* **Flow control.** A view-only session more than ``max_lag`` bytes behind (queued, not yet
  delivered) is detached with a reason instead of buffering without bound. Interactive
  sessions are never cut off for being slow: while one of them is more than ``pause_lag``
  bytes behind, ``should_pause`` tells the glue to stop reading the backend, so a fast
  ``cat`` on the guest is paced by the person who ran it (as on a real serial line).
* **Backend loss.** A kept console (``backend_lost``/``backend_restored``) keeps its sessions
  through a VM restart and tells them; an on-demand one ends them (``backend_closed``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from certgate.consoles.errors import ConsoleClosed, SessionUnknown

DEFAULT_SCROLLBACK = 64 * 1024
DEFAULT_MAX_LAG = 1024 * 1024
DEFAULT_PAUSE_LAG = 256 * 1024
DEFAULT_REPLAY_LINES = 20
_LINE_START_WINDOW = 4096


class EndReason(enum.Enum):
    """Why a session's attachment ended; the value is the line shown to the user."""

    DETACHED = "session detached"
    BACKEND_CLOSED = "vm console closed"
    TOO_SLOW = "session fell too far behind the console output"
    OBSERVER_LEFT = "the required observer left this moderated console"


class WriteMode(enum.StrEnum):
    SHARED = "shared"
    EXCLUSIVE = "exclusive"


class ObserverLeft(enum.StrEnum):
    """What a moderated session does when its last observer leaves."""

    PAUSE = "pause"
    END = "end"


@dataclass(frozen=True)
class Moderation:
    """The rule a moderated session was granted under: who must watch, and what if they go."""

    observer: str  # an attribute tag such as ``role=security``
    on_observer_leave: ObserverLeft = ObserverLeft.PAUSE


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
    force: bool = False


@dataclass
class _Session:
    privileges: Privileges
    user: str
    tags: frozenset[str]
    moderation: Moderation | None
    order: int
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


@dataclass(frozen=True)
class Notice:
    """One line for the listed sessions' users (never for the guest).

    ``audit`` names an event the glue must record (a forced takeover, a moderation change),
    with ``details`` saying who.
    """

    text: str
    session_ids: tuple[str, ...]
    audit: str | None = field(default=None, compare=False)
    details: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Attendee:
    """One line of "who is attached": for the escape menu's ``who``."""

    session_id: str
    user: str
    mode: str  # writer | may type | watching | held | observer


MuxEvent = Notice | SessionEnd


def tail_lines(data: bytes | bytearray, count: int) -> bytes:
    """The last ``count`` complete lines of ``data`` plus any unfinished line (a prompt)."""
    if count <= 0:
        return b""
    position = data.rfind(b"\n")  # the end of the last complete line
    if position < 0:
        return bytes(data)
    for _ in range(count):
        position = data.rfind(b"\n", 0, position)
        if position < 0:
            return bytes(data)
    return bytes(data[position + 1:])


class ConsoleMux:
    """State of one VM console shared by any number of gateway sessions."""

    def __init__(
        self,
        *,
        scrollback_limit: int = DEFAULT_SCROLLBACK,
        max_lag: int = DEFAULT_MAX_LAG,
        pause_lag: int = DEFAULT_PAUSE_LAG,
        window_size: tuple[int, int] | None = None,
        write_mode: WriteMode = WriteMode.SHARED,
        replay_lines: int = DEFAULT_REPLAY_LINES,
    ) -> None:
        if scrollback_limit < 0 or max_lag <= 0 or replay_lines < 0:
            raise ValueError("scrollback_limit and replay_lines must be >= 0 and max_lag > 0")
        self._scrollback = bytearray()
        self._limit = scrollback_limit
        self._max_lag = max_lag
        self._pause_lag = pause_lag
        self._replay_lines = replay_lines
        self._sessions: dict[str, _Session] = {}
        self._closed_reason: str | None = None
        self._lost_reason: str | None = None
        self._events: list[MuxEvent] = []
        self._order = 0
        self.window_size = window_size
        self.write_mode = write_mode
        self.writer: str | None = None
        self.sharing = False
        self._previous_writers: list[str] = []

    # -- state --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def backend_down(self) -> bool:
        """True between ``backend_lost`` and ``backend_restored`` (a kept console)."""
        return self._lost_reason is not None

    @property
    def session_ids(self) -> tuple[str, ...]:
        return tuple(self._sessions)

    @property
    def scrollback(self) -> bytes:
        return bytes(self._scrollback)

    @property
    def empty(self) -> bool:
        return not self._sessions

    def stats(self, session_id: str) -> SessionStats:
        return self._get(session_id).stats

    def privileges(self, session_id: str) -> Privileges:
        return self._get(session_id).privileges

    def drain_events(self) -> list[MuxEvent]:
        """Notices and forced ends produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    def may_type(self, session_id: str) -> bool:
        """Whether this session's input would reach the guest now."""
        session = self._get(session_id)
        if not session.privileges.interact or self.closed or self.backend_down:
            return False
        if self._held(session):
            return False
        if self.write_mode is WriteMode.EXCLUSIVE and not self.sharing:
            return self.writer == session_id
        return True

    def mode_of(self, session_id: str) -> str:
        session = self._get(session_id)
        if not session.privileges.interact:
            return "observer" if self._observes_any(session) else "watching"
        if self._held(session):
            return "held"
        if self.write_mode is WriteMode.EXCLUSIVE and not self.sharing:
            return "writer" if self.writer == session_id else "watching"
        return "may type"

    def who(self) -> list[Attendee]:
        return [Attendee(sid, s.user, self.mode_of(sid)) for sid, s in self._sessions.items()]

    # -- attach and leave ---------------------------------------------------------------------

    def attach(
        self,
        session_id: str,
        privileges: Privileges,
        *,
        user: str | None = None,
        tags: Iterable[str] = (),
        moderation: Moderation | None = None,
    ) -> bytes:
        """Add a session; return the recent lines it must be shown first."""
        if self._closed_reason is not None:
            raise ConsoleClosed(f"cannot attach: {self._closed_reason}")
        if session_id in self._sessions:
            raise ValueError(f"session {session_id!r} is already attached")
        self._order += 1
        session = _Session(privileges, user or session_id, frozenset(tags),
                           moderation if privileges.interact else None, self._order)
        replay = tail_lines(self._scrollback, self._replay_lines)
        session.stats.bytes_replayed = len(replay)
        session.pending = len(replay)
        released = self._held_sessions()
        self._sessions[session_id] = session
        mode = "view-only" if not privileges.interact else "interactive"
        self._notify_others(session_id, f"{session.user} attached ({mode})")
        if (privileges.interact and self.write_mode is WriteMode.EXCLUSIVE
                and self.writer is None and not self._held(session)):
            self.writer = session_id
        situation = self._situation(session_id)
        if situation is not None:
            self._tell(session_id, situation,
                       audit="console.moderation.held" if self._held(session) else None)
        self._announce_released(released)
        return replay

    def detach(self, session_id: str) -> SessionEnd:
        """Remove a session (it left, or the glue closed it); return its final counters."""
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionUnknown(f"session {session_id!r} is not attached")
        held_before = self._held_sessions()
        del self._sessions[session_id]
        self._previous_writers = [w for w in self._previous_writers if w != session_id]
        self._notify_others(session_id, f"{session.user} left")
        if self.writer == session_id:
            self.writer = None
            self._pass_keyboard(self._longest_waiting())
        self._moderation_after_leave(held_before)
        return SessionEnd(session_id, EndReason.DETACHED.value, session.stats)

    # -- keyboard -----------------------------------------------------------------------------

    def take(self, session_id: str, *, force: bool = False) -> str | None:
        """Take the keyboard of an exclusive console; None on success, else why not."""
        session = self._get(session_id)
        if not session.privileges.interact:
            return "this session is view-only"
        if self.write_mode is WriteMode.SHARED:
            return "this console is shared: everyone with interact may already type"
        if self._held(session):
            return "input is held until an observer is attached"
        if self.writer == session_id and not self.sharing:
            return "you already have the keyboard"
        holder = self.writer
        if holder is not None and not self.sharing and holder != session_id:
            if not force:
                return (f"{self._sessions[holder].user} has the keyboard "
                        "(force takes it, with the console.force privilege)")
            if not session.privileges.force:
                return "taking the keyboard by force needs the console.force privilege"
            self._previous_writers.append(holder)
            self.writer = session_id
            self._tell(holder, f"{session.user} took the keyboard; you are now watching")
            self._notify_all(f"{session.user} took the keyboard from "
                             f"{self._sessions[holder].user}", skip=(holder,),
                             audit="console.keyboard.force",
                             details={"session_id": session_id, "user": session.user,
                                      "from_session_id": holder,
                                      "from_user": self._sessions[holder].user})
            return None
        self.sharing = False
        self.writer = session_id
        self._notify_all(f"{session.user} has the keyboard")
        return None

    def hand_back(self, session_id: str) -> str | None:
        """The writer gives the keyboard up: to whoever had it before, else the longest waiting."""
        session = self._get(session_id)
        if self.write_mode is WriteMode.SHARED:
            return "this console is shared: there is no keyboard to hand back"
        if self.writer != session_id:
            return "you do not have the keyboard"
        self.sharing = False
        self.writer = None
        previous = next((w for w in reversed(self._previous_writers)
                         if w in self._sessions and self._eligible(w)), None)
        if previous is not None:
            self._previous_writers.remove(previous)
        self._notify_all(f"{session.user} handed the keyboard back")
        self._pass_keyboard(previous or self._longest_waiting(exclude=session_id))
        return None

    def share(self, session_id: str) -> str | None:
        """The writer lets every interactive session type until someone takes the keyboard."""
        session = self._get(session_id)
        if self.write_mode is WriteMode.SHARED or self.sharing:
            return "this console is already shared"
        if self.writer != session_id:
            return "only the session holding the keyboard can share it"
        self.sharing = True
        self._notify_all(f"{session.user} shared the keyboard: everyone with interact may type")
        return None

    def set_write_mode(self, mode: WriteMode) -> None:
        """Apply a changed policy; an exclusive console starts with its earliest typist."""
        if mode is self.write_mode:
            return
        self.write_mode = mode
        self.sharing = False
        self.writer = None
        self._previous_writers.clear()
        if mode is WriteMode.EXCLUSIVE:
            self._pass_keyboard(self._longest_waiting())
        else:
            self._notify_all("this console is now shared: everyone with interact may type")

    # -- bytes --------------------------------------------------------------------------------

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

    def replay(self, session_id: str, lines: int) -> bytes:
        """The last ``lines`` lines of the console, for the escape menu's replay."""
        session = self._get(session_id)
        data = tail_lines(self._scrollback, lines)
        session.stats.bytes_replayed += len(data)
        return data

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
        if not self.may_type(session_id):
            session.stats.input_dropped_bytes += len(data)
            session.stats.input_dropped_writes += 1
            return b""
        session.stats.bytes_to_guest += len(data)
        return data

    def request_break(self, session_id: str) -> bool:
        """Return True when a break should be sent to the guest for this session."""
        session = self._get(session_id)
        allowed = session.privileges.send_break and self.may_type(session_id)
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

    # -- the backend --------------------------------------------------------------------------

    def backend_closed(self, reason: str = EndReason.BACKEND_CLOSED.value) -> list[SessionEnd]:
        """The backend hung up: every session ends with ``reason``; later attaches fail."""
        if self._closed_reason is not None:
            return []
        self._closed_reason = reason
        ends = [SessionEnd(sid, reason, s.stats) for sid, s in self._sessions.items()]
        self._sessions.clear()
        self.writer = None
        return ends

    def backend_lost(self, reason: str) -> None:
        """A kept console's connection dropped: sessions stay, input is dropped meanwhile."""
        if self._lost_reason is None and self._closed_reason is None:
            self._lost_reason = reason
            self._notify_all(f"console connection lost ({reason}); reconnecting")

    def backend_restored(self, gap_seconds: float) -> None:
        if self._lost_reason is not None:
            self._lost_reason = None
            self._notify_all(f"console reconnected after {gap_seconds:.1f}s")

    # -- internals ----------------------------------------------------------------------------

    def _eligible(self, session_id: str) -> bool:
        session = self._sessions[session_id]
        return session.privileges.interact and not self._held(session)

    def _longest_waiting(self, exclude: str | None = None) -> str | None:
        waiting = [(s.order, sid) for sid, s in self._sessions.items()
                   if sid != exclude and self._eligible(sid)]
        return min(waiting)[1] if waiting else None

    def _pass_keyboard(self, session_id: str | None) -> None:
        if self.write_mode is not WriteMode.EXCLUSIVE or self.sharing:
            return
        self.writer = session_id
        if session_id is not None:
            self._notify_all(f"{self._sessions[session_id].user} has the keyboard")

    def _observes_any(self, session: _Session) -> bool:
        needed = {s.moderation.observer for s in self._sessions.values() if s.moderation}
        return bool(needed & session.tags)

    def _observed(self, observer_tag: str) -> bool:
        return any(not s.privileges.interact and observer_tag in s.tags
                   for s in self._sessions.values())

    def _held(self, session: _Session) -> bool:
        return session.moderation is not None and not self._observed(session.moderation.observer)

    def _held_sessions(self) -> set[str]:
        return {sid for sid, s in self._sessions.items() if self._held(s)}

    def _announce_released(self, held_before: set[str]) -> None:
        for session_id in sorted(held_before - self._held_sessions()):
            session = self._sessions[session_id]
            assert session.moderation is not None
            self._tell(session_id, f"an observer ({session.moderation.observer}) is watching: "
                                   "input is enabled", audit="console.moderation.released")
            if self.write_mode is WriteMode.EXCLUSIVE and self.writer is None:
                self._pass_keyboard(session_id)

    def _moderation_after_leave(self, held_before: set[str]) -> None:
        newly_held = self._held_sessions() - held_before
        for session_id in sorted(newly_held):
            session = self._sessions[session_id]
            assert session.moderation is not None
            if self.writer == session_id:
                self.writer = None
                self._pass_keyboard(self._longest_waiting())
            if session.moderation.on_observer_leave is ObserverLeft.END:
                del self._sessions[session_id]
                self._events.append(SessionEnd(session_id, EndReason.OBSERVER_LEFT.value,
                                               session.stats))
                self._notify_all(f"{session.user} left: the required observer left",
                                 audit="console.moderation.ended",
                                 details={"session_id": session_id, "user": session.user,
                                          "observer": session.moderation.observer})
            else:
                self._tell(session_id, f"the observer ({session.moderation.observer}) left: "
                                       "input is held until one is attached again",
                           audit="console.moderation.held")

    def _situation(self, session_id: str) -> str | None:
        """What a newcomer must know beyond "connected": None on a plain shared console."""
        session = self._sessions[session_id]
        if self._held(session):
            assert session.moderation is not None
            return (f"this console is moderated: input is held until an observer "
                    f"({session.moderation.observer}) is attached")
        if self.backend_down:
            return f"console connection lost ({self._lost_reason}); reconnecting"
        if not session.privileges.interact:
            return None
        if self.write_mode is WriteMode.EXCLUSIVE and not self.sharing:
            if self.writer == session_id:
                return "exclusive console: you have the keyboard"
            holder = self._sessions[self.writer].user if self.writer else "nobody"
            return f"exclusive console: {holder} has the keyboard; you are watching"
        return None

    def _tell(self, session_id: str, text: str, audit: str | None = None) -> None:
        details = {}
        if audit is not None:
            session = self._sessions[session_id]
            details = {"session_id": session_id, "user": session.user,
                       "observer": session.moderation.observer if session.moderation else ""}
        self._events.append(Notice(text, (session_id,), audit, details))

    def _notify_all(self, text: str, skip: Iterable[str] = (), *, audit: str | None = None,
                    details: dict[str, str] | None = None) -> None:
        skipped = set(skip)
        receivers = tuple(sid for sid in self._sessions if sid not in skipped)
        if receivers or audit:
            self._events.append(Notice(text, receivers, audit, details or {}))

    def _notify_others(self, session_id: str, text: str) -> None:
        self._notify_all(text, skip=(session_id,))

    def _remember(self, data: bytes) -> None:
        if self._limit == 0:
            return
        if len(data) >= self._limit:
            # Only the chunk's own tail stays: keep that alone rather than growing the
            # buffer by the whole chunk first (under bulk output, chunks of up to 256 KiB).
            start = len(data) - self._limit
            newline = data.find(b"\n", start, start + _LINE_START_WINDOW)
            self._scrollback = bytearray(memoryview(data)[newline + 1 if newline >= 0
                                                          else start:])
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

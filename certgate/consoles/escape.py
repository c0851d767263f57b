"""The console escape menu, as a pure state machine over the bytes a user types.

Modelled on conserver's ``^Ec``: a two-key prefix, so that the first key alone (Ctrl-E, an
editor's end-of-line) still reaches the guest when the second one does not follow. After
the prefix, one command key (optionally preceded by a count for ``r``) acts on the gateway
and is never forwarded to the guest. The prefix is configurable per VM so that it cannot
clash with what runs on the guest. A stock ``ssh -t`` passes every key through, so the menu
is reachable without a special client (ssh's own ``~`` escape stays the client's).

Commands (see docs/consoles.md): ``?`` help, ``w`` who is attached, ``r`` replay the last 20
lines (``50r`` the last 50), ``b`` send a serial break, ``a`` take a free keyboard, ``f`` take
the keyboard by force, ``h`` hand it back, ``s`` share it, ``.`` detach, ``e`` send the escape
sequence itself to the guest.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from certgate.consoles.errors import ConsoleError

DEFAULT_ESCAPE = "^Ec"
DEFAULT_REPLAY = 20
MAX_REPLAY = 10_000
_SPEC = re.compile(r"\^([@A-Z\[\\\]^_])(.)", re.ASCII)


class EscapeSpecError(ConsoleError):
    """An escape sequence setting cannot be used."""


class Command(enum.StrEnum):
    HELP = "?"
    WHO = "w"
    REPLAY = "r"
    BREAK = "b"
    TAKE = "a"
    FORCE = "f"
    HAND_BACK = "h"
    SHARE = "s"
    DETACH = "."
    SEND_ESCAPE = "e"


HELP_LINES = (
    ("?", "this help"),
    ("w", "who is attached, and in which mode"),
    ("[N]r", f"replay the last N lines (default {DEFAULT_REPLAY})"),
    ("b", "send a serial break"),
    ("a", "take the keyboard if nobody has it (exclusive consoles)"),
    ("f", "take the keyboard by force (console.force)"),
    ("h", "hand the keyboard back"),
    ("s", "share the keyboard with everyone who may type"),
    (".", "detach"),
    ("e", "send the escape sequence itself to the guest"),
)


@dataclass(frozen=True)
class EscapeSequence:
    """A two-key prefix: a control key and a printable key (``^Ec``)."""

    first: int
    second: int

    @classmethod
    def parse(cls, spec: str) -> EscapeSequence:
        match = _SPEC.fullmatch(spec)
        if match is None or not match.group(2).isprintable() or match.group(2) == " ":
            raise EscapeSpecError(
                f"escape sequence {spec!r} must be a control key and a printable key, "
                "written like ^Ec"
            )
        return cls(ord(match.group(1)) ^ 0x40, ord(match.group(2)))

    @property
    def spec(self) -> str:
        return f"^{chr(self.first ^ 0x40)}{chr(self.second)}"

    @property
    def raw(self) -> bytes:
        return bytes((self.first, self.second))


@dataclass(frozen=True)
class Forward:
    """Bytes for the guest."""

    data: bytes


@dataclass(frozen=True)
class MenuCommand:
    command: Command
    count: int | None = None


@dataclass(frozen=True)
class UnknownCommand:
    key: int


EscapeAction = Forward | MenuCommand | UnknownCommand


class _State(enum.Enum):
    TEXT = 0
    FIRST = 1  # saw the control key
    MENU = 2  # saw the whole prefix; digits may follow


class EscapeParser:
    """Feed typed bytes; get what to forward and which menu commands were chosen, in order."""

    def __init__(self, sequence: EscapeSequence | None = None) -> None:
        self.sequence = sequence or EscapeSequence.parse(DEFAULT_ESCAPE)
        self._state = _State.TEXT
        self._digits = b""

    @property
    def in_menu(self) -> bool:
        return self._state is not _State.TEXT

    def feed(self, data: bytes) -> list[EscapeAction]:
        actions: list[EscapeAction] = []
        plain = bytearray()

        def flush() -> None:
            if plain:
                actions.append(Forward(bytes(plain)))
                plain.clear()

        first, second = self.sequence.first, self.sequence.second
        for byte in data:
            if self._state is _State.TEXT:
                if byte == first:
                    self._state = _State.FIRST
                else:
                    plain.append(byte)
            elif self._state is _State.FIRST:
                if byte == second:
                    self._state, self._digits = _State.MENU, b""
                elif byte == first:
                    plain.append(first)  # the first key twice: one goes through, one waits
                else:
                    self._state = _State.TEXT
                    plain += bytes((first, byte))
            else:
                if 0x30 <= byte <= 0x39 and len(self._digits) < 5:
                    self._digits += bytes((byte,))
                    continue
                flush()
                actions.append(self._command(byte))
                self._state, self._digits = _State.TEXT, b""
        flush()
        return actions

    def _command(self, byte: int) -> EscapeAction:
        try:
            command = Command(chr(byte))
        except ValueError:
            return UnknownCommand(byte)
        if command is Command.REPLAY:
            count = int(self._digits) if self._digits else DEFAULT_REPLAY
            return MenuCommand(command, max(1, min(count, MAX_REPLAY)))
        if command is Command.SEND_ESCAPE:
            return Forward(self.sequence.raw)
        return MenuCommand(command)


def help_text(sequence: EscapeSequence) -> list[str]:
    return [f"escape menu: {sequence.spec} then"] + [
        f"  {key:<5} {meaning}" for key, meaning in HELP_LINES
    ]

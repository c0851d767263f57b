"""Reconnect pacing for kept consoles: exponential backoff with jitter, as a pure object.

A VM that restarts comes back within seconds, one that was shut down may stay away for
days: retry quickly at first, then settle at ``maximum`` so a thousand absent VMs cost a
few connection attempts a second between them. Jitter spreads the retries of VMs that all
went away together (a host reboot) so they do not reconnect in lockstep.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from certgate.consoles.errors import ConsoleError
from certgate.consoles.uri import ConsoleTarget, TcpConsole, UnixSocketConsole


@dataclass
class Backoff:
    initial: float = 0.25
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1
    attempts: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs 0 < initial <= maximum, factor >= 1, 0 <= jitter < 1")

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call counts one failed attempt."""
        base = min(self.maximum, self.initial * self.factor ** self.attempts)
        self.attempts += 1
        spread = base * self.jitter
        return max(0.0, base + self._random.uniform(-spread, spread))

    def reset(self) -> None:
        self.attempts = 0


class KeepMode(enum.StrEnum):
    """Whether the gateway holds a VM's console while nobody is attached."""

    ALWAYS = "always"
    ON_DEMAND = "on-demand"


def default_keep(target: ConsoleTarget) -> KeepMode:
    """Serial sockets are kept; ``exec:`` and ``ssh://`` consoles are opened on demand."""
    return KeepMode.ALWAYS if isinstance(target, UnixSocketConsole | TcpConsole) else (
        KeepMode.ON_DEMAND)


def keep_mode(target: ConsoleTarget, stored: str | None) -> KeepMode:
    """The mode in force for a VM: the stored choice, else the default for its console."""
    if stored is None:
        return default_keep(target)
    return check_keep(target, stored)


def check_keep(target: ConsoleTarget, value: str) -> KeepMode:
    """Validate ``--keep`` for a console; raises ConsoleError with a one-line reason."""
    try:
        mode = KeepMode(value)
    except ValueError:
        raise ConsoleError(f"--keep must be always or on-demand, not {value!r}") from None
    if mode is KeepMode.ALWAYS and not isinstance(target, UnixSocketConsole | TcpConsole):
        raise ConsoleError(
            f"console {target} cannot be kept: only unix: and tcp: consoles can "
            "(exec: and ssh:// consoles are opened on demand)")
    return mode

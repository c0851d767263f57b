"""Login abuse limits as a pure state machine: who may connect, and which failures are audited.

What an unauthenticated stranger can make the gateway do must be bounded: CPU (key exchanges,
identity look-ups), open connections, and above all audit rows, because every row is a
database write and disk that a flood could fill. The limits follow OpenSSH's sshd:

- ``max_auth_tries`` keys per connection (MaxAuthTries); the connection is then dropped;
- ``max_startups`` unauthenticated connections at once, gateway-wide, and
  ``max_startups_per_source`` from one source (MaxStartups, PerSourceMaxStartups);
- per source, ``failure_burst`` failed attempts per ``window`` are audited one by one; the
  next failure blocks the source for a back-off period that doubles on every repeat
  (PerSourcePenalties), and while it is blocked its attempts are counted, not written: one
  ``auth.throttled`` row when the block starts and one summary row per ``window``
  ("source X: 500 refused attempts in 60 s");
- IPv6 sources are grouped by /64, because one host commonly owns a whole /64;
- at most ``max_sources`` sources are remembered (least recently seen forgotten first), so
  a spread-out flood cannot grow memory without bound.

Time is passed in (``now``, monotonic seconds), so tests drive it without sleeping.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

from certgate.limits import LoginLimits


class Verdict(Enum):
    AUDIT = "audit"
    """Write this failure as its own audit row."""
    THROTTLE = "throttle"
    """This failure starts a block: write one ``auth.throttled`` row and drop the connection."""
    SUPPRESS = "suppress"
    """The source is blocked: count the failure, write nothing, drop the connection."""


@dataclass(frozen=True)
class Refusal:
    reason: str
    source: str
    audit: bool
    """Whether this refusal deserves its own row (False while the source is blocked)."""


@dataclass(frozen=True)
class ThrottleSummary:
    source: str
    refused: int
    seconds: float
    blocked_for: float

    def describe(self) -> str:
        return (f"source {self.source}: {self.refused} refused attempts in "
                f"{self.seconds:.0f} s (blocked for {self.blocked_for:.0f} s)")


@dataclass
class _Source:
    window_start: float
    failures: int = 0
    blocked_until: float = 0.0
    next_backoff: float = 0.0
    last_failure: float = 0.0
    suppressed: int = 0
    summary_since: float = 0.0
    unauthenticated: int = 0


@dataclass
class LoginThrottle:
    limits: LoginLimits = field(default_factory=LoginLimits)
    unauthenticated: int = 0
    _sources: OrderedDict[str, _Source] = field(default_factory=OrderedDict)

    @staticmethod
    def source_key(address: str | None) -> str:
        if not address:
            return "unknown"
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return address[:64]
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)

    def _source(self, key: str, now: float) -> _Source:
        state = self._sources.get(key)
        if state is None:
            state = _Source(window_start=now, next_backoff=self.limits.backoff)
            self._sources[key] = state
            self._forget_oldest()
        else:
            self._sources.move_to_end(key)
        if now - state.window_start >= self.limits.window:
            state.window_start, state.failures = now, 0
        quiet_since = max(state.last_failure, state.blocked_until)
        if quiet_since and now - quiet_since > self.limits.max_backoff:
            state.next_backoff = self.limits.backoff  # quiet long enough: forgiven
        return state

    def _forget_oldest(self) -> None:
        while len(self._sources) > self.limits.max_sources:
            for key, state in self._sources.items():
                if state.unauthenticated == 0:
                    del self._sources[key]
                    break
            else:
                return

    def blocked(self, address: str | None, now: float) -> bool:
        state = self._sources.get(self.source_key(address))
        return state is not None and state.blocked_until > now

    def connection_opened(self, address: str | None, now: float) -> Refusal | None:
        """Admit a new connection (it counts as unauthenticated) or say why not."""
        key = self.source_key(address)
        state = self._source(key, now)
        if state.blocked_until > now:
            state.suppressed += 1
            return Refusal("too many failed logins from this address; try again later",
                           key, audit=False)
        if self.unauthenticated >= self.limits.max_startups:
            return Refusal("too many unauthenticated connections", key, audit=False)
        if state.unauthenticated >= self.limits.max_startups_per_source:
            return Refusal("too many unauthenticated connections from this address", key,
                           audit=False)
        self.unauthenticated += 1
        state.unauthenticated += 1
        return None

    def connection_authenticated(self, address: str | None) -> None:
        self._release(address)

    def connection_closed(self, address: str | None, *, authenticated: bool) -> None:
        if not authenticated:
            self._release(address)

    def _release(self, address: str | None) -> None:
        self.unauthenticated = max(0, self.unauthenticated - 1)
        state = self._sources.get(self.source_key(address))
        if state is not None:
            state.unauthenticated = max(0, state.unauthenticated - 1)

    def failure(self, address: str | None, now: float) -> Verdict:
        """Record one refused attempt; say whether to write it, start a block, or count it."""
        key = self.source_key(address)
        state = self._source(key, now)
        state.last_failure = now
        if state.blocked_until > now:
            state.suppressed += 1
            return Verdict.SUPPRESS
        state.failures += 1
        if state.failures <= self.limits.failure_burst:
            return Verdict.AUDIT
        state.blocked_until = now + state.next_backoff
        state.next_backoff = min(state.next_backoff * 2, self.limits.max_backoff)
        state.summary_since = now
        state.suppressed = 0
        return Verdict.THROTTLE

    def block_length(self, address: str | None, now: float) -> float:
        state = self._sources.get(self.source_key(address))
        return max(0.0, state.blocked_until - now) if state else 0.0

    def due_summaries(self, now: float, *, final: bool = False) -> list[ThrottleSummary]:
        """Summaries of suppressed attempts for every source whose window has passed (all of
        them when ``final``); each attempt is summarised once."""
        summaries: list[ThrottleSummary] = []
        for key, state in self._sources.items():
            if not state.suppressed:
                continue
            elapsed = now - state.summary_since
            if final or elapsed >= self.limits.window or state.blocked_until <= now:
                summaries.append(ThrottleSummary(
                    key, state.suppressed, max(elapsed, 0.0),
                    max(0.0, state.blocked_until - state.summary_since)))
                state.suppressed, state.summary_since = 0, now
        return summaries

    @property
    def tracked_sources(self) -> int:
        return len(self._sources)

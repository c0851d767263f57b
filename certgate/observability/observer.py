"""What the gateway reports: one call per moment, each a log line and a metric."""

from __future__ import annotations

import logging
from typing import Any

from certgate.observability.logs import log_event
from certgate.observability.metrics import LOGIN_OUTCOMES, GatewayMetrics


class GatewayObserver:
    """The gateway's log lines and metrics; ``metrics`` is None when they are off."""

    def __init__(self, metrics: GatewayMetrics | None = None) -> None:
        self.metrics = metrics

    def login(self, outcome: str, *, user: str | None, target: str | None,
              source: str | None, credential: str | None, reason: str | None) -> None:
        if self.metrics:
            self.metrics.logins.labels(outcome if outcome in LOGIN_OUTCOMES else "error").inc()
        log_event("login", f"login {outcome}", user=user, target=target, source=source,
                  credential=credential, outcome=outcome, reason=reason,
                  level=logging.INFO if outcome == "allow" else logging.WARNING)

    def decision(self, allowed: bool, seconds: float, *, user: str, vm: str | None,
                 source: str | None, mode: str | None, reasons: list[str]) -> None:
        outcome = "allow" if allowed else "deny"
        if self.metrics:
            self.metrics.decisions.labels(outcome).inc()
            self.metrics.decision_seconds.observe(seconds)
        log_event("access.decide", f"access {outcome}", user=user, vm=vm, source=source,
                  outcome=outcome, mode=mode, reasons=reasons,
                  decision_ms=round(seconds * 1000, 3))

    def session_started(self, session_id: str, *, user: str, vm: str, source: str | None,
                        mode: str) -> None:
        if self.metrics:
            self.metrics.sessions_started.inc()
        log_event("session.start", "session started", session=session_id, user=user, vm=vm,
                  source=source, mode=mode)

    def session_ended(self, session_id: str, *, user: str, vm: str, reason: str,
                      duration_seconds: float, bytes_in: int, bytes_out: int) -> None:
        if self.metrics:
            self.metrics.sessions_ended.inc()
        log_event("session.end", "session ended", session=session_id, user=user, vm=vm,
                  reason=reason, duration_seconds=round(duration_seconds, 3),
                  bytes_in=bytes_in, bytes_out=bytes_out)

    def session_revoked(self, session_id: str, *, user: str, vm: str | None,
                        reason: str) -> None:
        if self.metrics:
            self.metrics.sessions_revoked.inc()
        log_event("session.revoked", "session ended: access withdrawn", session=session_id,
                  user=user, vm=vm, reason=reason, level=logging.WARNING)

    def console(self, event: str, *, vm: str, target: str, detail: str | None = None) -> None:
        """``event``: ``connect``, ``disconnect`` (of the gateway to a console backend) or
        ``unavailable`` (a connection attempt failed)."""
        if self.metrics:
            self.metrics.console_events.labels(event).inc()
        log_event(f"console.{event}", f"console {event}", vm=vm, console=target,
                  detail=detail,
                  level=logging.WARNING if event == "unavailable" else logging.INFO)

    def database_error(self, operation: str, error: BaseException | str) -> None:
        if self.metrics:
            self.metrics.database_errors.inc()
        log_event("database.error", f"{operation} failed", operation=operation,
                  error=str(error), level=logging.ERROR)

    def note(self, event: str, message: str, **fields: Any) -> None:
        log_event(event, message, **fields)

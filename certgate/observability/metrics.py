"""Prometheus metrics of one gateway process, served on an opt-in address.

Each gateway has its own registry (not prometheus_client's global one), so tests and
several gateways in one process never mix figures. Gauges of current state (live sessions,
consoles by state, audit queue depth) are read through callbacks at scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

DECISION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5)
LOGIN_OUTCOMES = ("allow", "deny", "error")
DECISION_OUTCOMES = ("allow", "deny")


class _ConsoleStates(Collector):
    """``certgate_consoles{state=...}``: how many consoles are in each state right now."""

    def __init__(self, states: Callable[[], Mapping[str, int]]) -> None:
        self._states = states

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("certgate_consoles",
                                   "Consoles the gateway holds, by state", labels=["state"])
        for state, count in sorted(self._states().items()):
            family.add_metric([state], count)
        yield family


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.logins = Counter("certgate_logins", "SSH login decisions, by outcome",
                              ["outcome"], registry=r)
        self.decisions = Counter("certgate_decisions", "Console access decisions, by outcome",
                                 ["outcome"], registry=r)
        self.decision_seconds = Histogram(
            "certgate_decision_seconds", "Time to decide one console access request",
            buckets=DECISION_BUCKETS, registry=r)
        self.sessions_started = Counter("certgate_sessions_started",
                                        "Console sessions started", registry=r)
        self.sessions_ended = Counter("certgate_sessions_ended",
                                      "Console sessions ended", registry=r)
        self.sessions_revoked = Counter(
            "certgate_sessions_revoked",
            "Live sessions ended because access was withdrawn", registry=r)
        self.console_events = Counter("certgate_console_events",
                                      "Console backend connects, disconnects and "
                                      "failed connection attempts",
                                      ["event"], registry=r)
        self.database_errors = Counter("certgate_database_errors",
                                       "Store or audit-log operations that failed",
                                       registry=r)
        self.live_sessions = Gauge("certgate_live_sessions",
                                   "Console sessions open on this gateway", registry=r)
        self.audit_queue_depth = Gauge("certgate_audit_queue_depth",
                                       "Audit events waiting to be committed", registry=r)
        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome)
        for outcome in DECISION_OUTCOMES:
            self.decisions.labels(outcome)
        for event in ("connect", "disconnect", "unavailable"):
            self.console_events.labels(event)

    def watch(self, *, live_sessions: Callable[[], int], audit_queue: Callable[[], int],
              consoles: Callable[[], Mapping[str, int]]) -> None:
        """Read current state from the gateway when scraped (no timers, no polling)."""
        self.live_sessions.set_function(lambda: float(live_sessions()))
        self.audit_queue_depth.set_function(lambda: float(audit_queue()))
        self.registry.register(_ConsoleStates(consoles))


class MetricsServer:
    """``/metrics`` over plain HTTP on the address the operator chose (a thread)."""

    def __init__(self, metrics: GatewayMetrics, host: str, port: int) -> None:
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, host, metrics.registry)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

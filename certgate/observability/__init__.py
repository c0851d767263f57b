"""Operability of a running gateway: structured log lines and Prometheus metrics.

``GatewayObserver`` is the one object the gateway calls at the moments operators care about
(a login decision, an access decision, a session starting or ending, a revocation, a
console connecting or going away, a database error); it writes one log line and updates
the metrics. Calls cost a dictionary update and a log record: nothing runs per session per
second, and gauges that describe current state are computed when Prometheus scrapes.
"""

from certgate.observability.logs import configure_logging, log_event
from certgate.observability.metrics import GatewayMetrics, MetricsServer
from certgate.observability.observer import GatewayObserver

__all__ = ["GatewayMetrics", "GatewayObserver", "MetricsServer", "configure_logging",
           "log_event"]

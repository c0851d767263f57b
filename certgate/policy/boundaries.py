"""When can a decision change by the clock alone? The next edge of a time window.

Pure. The gateway re-decides a live session at this instant instead of polling: a session
allowed by a ``mon-fri 08:00-18:00`` rule is re-checked at 18:00, not every second.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from certgate.policy.evaluate import VMInfo
from certgate.policy.model import Policy, TimeWindow

_DAY = timedelta(days=1)


def _window_edges(window: TimeWindow, after: datetime) -> list[datetime]:
    """Instants after ``after`` where ``window`` opens or closes, within the next 8 days."""
    zone = ZoneInfo(window.timezone)
    local_today = after.astimezone(zone).date()
    edges: list[datetime] = []
    for offset in range(-1, 9):
        day = local_today + offset * _DAY
        if day.weekday() not in window.days:
            continue
        end_day = day + _DAY if window.crosses_midnight else day
        for when, minute in ((day, window.start_minute), (end_day, window.end_minute)):
            wall = (datetime(when.year, when.month, when.day, tzinfo=zone)
                    + timedelta(minutes=minute))
            instant = wall.astimezone(zone)
            # A wall time inside a DST gap does not exist: the change happens at the gap, up
            # to an hour earlier. Waking early only costs one extra, unchanged decision.
            if instant.replace(tzinfo=None) != wall.replace(tzinfo=None):
                instant -= timedelta(hours=1)
            if instant > after:
                edges.append(instant)
    return edges


def next_time_boundary(policy: Policy, vm: VMInfo, at: datetime) -> datetime | None:
    """The first instant after ``at`` at which a time window of a rule selecting ``vm``
    opens or closes; None when no such rule has time windows."""
    edges = [
        edge
        for rule in policy.index.timed_rules_selecting(vm)
        for window in rule.time_windows
        for edge in _window_edges(window, at)
    ]
    return min(edges) if edges else None

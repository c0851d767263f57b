"""Finding 2 as a state machine: the login throttle decides which refused attempts are
written, when a source is blocked and for how long, and how the rest is summarised."""

from __future__ import annotations

from certgate.gateway.throttle import LoginThrottle, Verdict
from certgate.limits import LoginLimits

LIMITS = LoginLimits(failure_burst=3, window=60, backoff=10, max_backoff=40,
                     max_startups=4, max_startups_per_source=2, max_sources=3)


def test_a_burst_is_audited_one_by_one_then_the_source_is_blocked() -> None:
    throttle = LoginThrottle(LIMITS)
    verdicts = [throttle.failure("203.0.113.9", now=t) for t in (0, 1, 2, 3, 4, 5)]
    assert verdicts == [Verdict.AUDIT] * 3 + [Verdict.THROTTLE] + [Verdict.SUPPRESS] * 2
    assert throttle.blocked("203.0.113.9", 12.9) and not throttle.blocked("203.0.113.9", 13.1)
    refusal = throttle.connection_opened("203.0.113.9", 5)
    assert refusal is not None and not refusal.audit
    assert throttle.connection_opened("198.51.100.1", 5) is None, "other sources unaffected"


def test_suppressed_attempts_are_summarised_once_per_window() -> None:
    throttle = LoginThrottle(LoginLimits(failure_burst=1, window=60, backoff=600,
                                         max_backoff=600))
    throttle.failure("203.0.113.9", 0)
    assert throttle.failure("203.0.113.9", 0) is Verdict.THROTTLE
    for t in range(1, 500):
        throttle.failure("203.0.113.9", t * 0.1)
    assert throttle.due_summaries(30) == []
    [summary] = throttle.due_summaries(61)
    assert (summary.source, summary.refused) == ("203.0.113.9", 499)
    assert summary.describe().startswith("source 203.0.113.9: 499 refused attempts in 61 s")
    assert throttle.due_summaries(200) == [], "each attempt is summarised once"


def test_repeated_blocks_back_off_and_a_quiet_source_is_forgiven() -> None:
    throttle = LoginThrottle(LIMITS)
    lengths, now = [], 0.0
    for _ in range(4):
        verdict = Verdict.AUDIT
        while verdict is not Verdict.THROTTLE:
            verdict = throttle.failure("203.0.113.9", now)
            now += 0.01
        lengths.append(round(throttle.block_length("203.0.113.9", now)))
        now += lengths[-1] + 1  # just past the block: failing again doubles the next one
    assert lengths == [10, 20, 40, 40]
    now += 100  # quiet for longer than max_backoff
    for _ in range(4):
        throttle.failure("203.0.113.9", now)
    assert round(throttle.block_length("203.0.113.9", now)) == 10


def test_unauthenticated_connections_are_capped_per_source_and_overall() -> None:
    throttle = LoginThrottle(LIMITS)
    assert throttle.connection_opened("192.0.2.1", 0) is None
    assert throttle.connection_opened("192.0.2.1", 0) is None
    third = throttle.connection_opened("192.0.2.1", 0)
    assert third is not None and "from this address" in third.reason
    assert throttle.connection_opened("192.0.2.2", 0) is None
    assert throttle.connection_opened("192.0.2.3", 0) is None
    overall = throttle.connection_opened("192.0.2.4", 0)
    assert overall is not None and overall.reason == "too many unauthenticated connections"
    throttle.connection_authenticated("192.0.2.1")
    throttle.connection_closed("192.0.2.2", authenticated=False)
    assert throttle.unauthenticated == 2
    assert throttle.connection_opened("192.0.2.1", 0) is None


def test_ipv6_sources_are_grouped_by_64_and_memory_is_bounded() -> None:
    key = LoginThrottle.source_key
    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert key("::ffff:192.0.2.7") == "192.0.2.7"
    throttle = LoginThrottle(LIMITS)
    for n in range(1000):
        throttle.failure(f"2001:db8:{n:x}::1", 0)
    assert throttle.tracked_sources <= LIMITS.max_sources


def test_the_documented_row_bound_covers_a_long_flood() -> None:
    throttle = LoginThrottle(LIMITS)
    rows, now = 0, 0.0
    while now < 600:
        if throttle.connection_opened("203.0.113.9", now) is None:
            for _ in range(LIMITS.max_auth_tries):
                if throttle.failure("203.0.113.9", now) in (Verdict.AUDIT, Verdict.THROTTLE):
                    rows += 1
            throttle.connection_closed("203.0.113.9", authenticated=False)
        rows += len(throttle.due_summaries(now))
        now += 0.05
    assert 0 < rows <= LIMITS.audit_rows_per_source_bound(600)

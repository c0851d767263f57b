"""Reconnect backoff: quick at first, capped, jittered, reset after a success."""

import random

import pytest

from certgate.consoles.keeper import Backoff


def test_delays_double_up_to_the_cap():
    backoff = Backoff(initial=0.5, maximum=4.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.attempts == 6


def test_reset_starts_over():
    backoff = Backoff(initial=0.5, maximum=4.0, jitter=0.0)
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_stays_within_its_fraction():
    backoff = Backoff(initial=10.0, maximum=10.0, jitter=0.1, _random=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(9.0 <= d <= 11.0 for d in delays)
    assert len(set(delays)) > 100


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 5, "maximum": 1},
                                    {"factor": 0.5}, {"jitter": 1.0}])
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)

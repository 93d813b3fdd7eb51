"""The retry schedule: exponential, capped, jittered within bounds, about three days."""

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from alerts.channels import MAX_ATTEMPTS, RETRY_DELAYS, RETRY_HORIZON, next_attempt_at
from alerts.channels.retry import JITTER, MAX_DELAY, retry_delay


def test_nominal_delays_grow_then_cap():
    assert all(b >= a for a, b in itertools.pairwise(RETRY_DELAYS))
    assert RETRY_DELAYS[0] < timedelta(minutes=1)
    growing = [d for d in RETRY_DELAYS if d < MAX_DELAY]
    assert all(b > a for a, b in itertools.pairwise(growing))
    assert max(RETRY_DELAYS) == MAX_DELAY


def test_the_schedule_spans_about_three_days():
    assert timedelta(days=2.5) <= RETRY_HORIZON <= timedelta(days=3.5)
    assert sum(RETRY_DELAYS, timedelta()) == RETRY_HORIZON
    assert len(RETRY_DELAYS) + 1 == MAX_ATTEMPTS


@pytest.mark.parametrize("seed", range(20))
def test_each_jittered_delay_stays_within_its_bounds(seed):
    rng = random.Random(seed)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    for attempt, nominal in enumerate(RETRY_DELAYS, start=1):
        at = next_attempt_at(attempt, now, rng)
        assert nominal * (1 - JITTER) <= at - now <= nominal * (1 + JITTER)


def test_jitter_spreads_retries_apart():
    draws = {retry_delay(5, random.Random(seed)) for seed in range(50)}
    assert len(draws) == 50
    spread = max(draws) - min(draws)
    assert spread > RETRY_DELAYS[4] * 0.5  # spread over most of the window, not bunched


def test_a_whole_jittered_run_lasts_about_three_days():
    for seed in range(20):
        rng = random.Random(seed)
        now = start = datetime(2026, 3, 1, tzinfo=UTC)
        attempt = 1
        while (following := next_attempt_at(attempt, now, rng)) is not None:
            now, attempt = following, attempt + 1
        assert attempt == MAX_ATTEMPTS
        assert timedelta(days=2) < now - start < timedelta(days=4)


def test_the_schedule_ends():
    assert next_attempt_at(MAX_ATTEMPTS, datetime(2026, 3, 1, tzinfo=UTC), random.Random(1)) is None
    with pytest.raises(ValueError):
        retry_delay(0)


def test_same_seed_same_schedule():
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert next_attempt_at(3, now, random.Random(7)) == next_attempt_at(3, now, random.Random(7))

"""When to try a failed delivery again: exponential backoff, capped, jittered, ~3 days.

Nominal delays grow 10 s x 3^n up to a 12 h cap; 13 retries after the first attempt add
up to about 69 hours. Each actual delay is drawn uniformly from [d/2, 3d/2] around its
nominal d: as wide a spread as "full jitter" (which draws from [0, d]) so retries of many
deliveries to a recovering receiver do not arrive in lockstep, but centred on d so the
total horizon stays about 3 days (full jitter would halve it) and no retry lands
immediately after the failure it follows.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

BASE_DELAY = timedelta(seconds=10)
BACKOFF_FACTOR = 3
MAX_DELAY = timedelta(hours=12)
MAX_RETRIES = 13
JITTER = 0.5  # each delay is drawn from [d * (1 - JITTER), d * (1 + JITTER)]

# RETRY_DELAYS[n - 1]: the nominal wait after the n-th failed attempt.
RETRY_DELAYS: tuple[timedelta, ...] = tuple(
    min(MAX_DELAY, BASE_DELAY * BACKOFF_FACTOR**n) for n in range(MAX_RETRIES)
)
RETRY_HORIZON: timedelta = sum(RETRY_DELAYS, timedelta())
MAX_ATTEMPTS = MAX_RETRIES + 1


def retry_delay(attempt_number: int, rng: random.Random | None = None) -> timedelta | None:
    """The jittered wait after failed attempt `attempt_number` (1-based); None: give up."""
    if attempt_number < 1:
        raise ValueError("attempt numbers start at 1")
    if attempt_number > MAX_RETRIES:
        return None
    nominal = RETRY_DELAYS[attempt_number - 1]
    factor = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=nominal.total_seconds() * factor)


def next_attempt_at(
    attempt_number: int, now: datetime, rng: random.Random | None = None
) -> datetime | None:
    """When to make attempt `attempt_number + 1`, after attempt `attempt_number` failed at
    `now`; None once the schedule is spent (the delivery is then failed for good)."""
    delay = retry_delay(attempt_number, rng)
    return None if delay is None else now + delay

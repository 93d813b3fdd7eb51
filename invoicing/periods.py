"""Billing periods: anniversary schedules in UTC, half-open ``[start, end)``.

A subscription anchored at ``anchor`` bills in periods of 1, 3 or 12 months. Period
``index`` starts ``index * months`` after the anchor, on the anchor's day of the month,
clamped to the month's last day when the month is shorter. The clamp is always taken from
the *anchor's* day, never from the previous period's start, so an anchor on 31 January
gives 28/29 February, 31 March, 30 April: no drift to the 28th. The time of day is kept.

Everything is computed in UTC (DESIGN.md: UTC in storage; the customer's zone is for
display only): an anchor given in another zone is converted to UTC first, and its UTC
day of the month is the anniversary.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from fractions import Fraction

INTERVAL_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}

_MICROSECOND = timedelta(microseconds=1)


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _interval_months(interval: str) -> int:
    try:
        return INTERVAL_MONTHS[interval]
    except (KeyError, TypeError):
        choices = ", ".join(INTERVAL_MONTHS)
        raise ValueError(f"unknown billing interval {interval!r} (one of: {choices})") from None


def _add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved ``months`` calendar months on, its day clamped to the month's end."""
    month_zero_based = anchor.month - 1 + months
    year = anchor.year + month_zero_based // 12
    month = month_zero_based % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_bounds(anchor: datetime, interval: str, index: int) -> tuple[datetime, datetime]:
    """The ``index``-th period ``(start, end)`` in UTC; period 0 starts at the anchor."""
    anchor_utc = _utc(anchor, "anchor")
    months = _interval_months(interval)
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"index must be an int, not {type(index).__name__}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    return (
        _add_months(anchor_utc, index * months),
        _add_months(anchor_utc, (index + 1) * months),
    )


def period_index_at(anchor: datetime, interval: str, at: datetime) -> int:
    """The index of the period that contains ``at`` (``start <= at < end``)."""
    anchor_utc = _utc(anchor, "anchor")
    at_utc = _utc(at, "at")
    months = _interval_months(interval)
    if at_utc < anchor_utc:
        raise ValueError(
            f"{at_utc.isoformat()} is before the schedule's anchor {anchor_utc.isoformat()}"
        )
    # Counting calendar months gives an index that is never too low (the next period starts
    # in a later calendar month than ``at``) and at most one too high: ``at`` may fall in
    # the right month but before that month's anniversary.
    elapsed_months = (at_utc.year - anchor_utc.year) * 12 + at_utc.month - anchor_utc.month
    index = elapsed_months // months
    if period_bounds(anchor_utc, interval, index)[0] > at_utc:
        index -= 1
    return index


def period_containing(
    anchor: datetime, interval: str, at: datetime
) -> tuple[int, datetime, datetime]:
    """``(index, start, end)`` of the period that contains ``at``."""
    index = period_index_at(anchor, interval, at)
    start, end = period_bounds(anchor, interval, index)
    return index, start, end


def proration_fraction(
    period_start: datetime,
    period_end: datetime,
    part_start: datetime,
    part_end: datetime,
) -> Fraction:
    """The share of ``[period_start, period_end)`` covered by ``[part_start, part_end)``.

    Exact: microseconds of the part (clipped to the period) over microseconds of the
    period. A part wholly outside the period is 0; the whole period is 1.
    """
    start = _utc(period_start, "period_start")
    end = _utc(period_end, "period_end")
    part_from = _utc(part_start, "part_start")
    part_to = _utc(part_end, "part_end")
    if end <= start:
        raise ValueError(f"empty period: end {end.isoformat()} is not after {start.isoformat()}")
    if part_to < part_from:
        raise ValueError(
            f"part ends ({part_to.isoformat()}) before it starts ({part_from.isoformat()})"
        )
    covered = min(part_to, end) - max(part_from, start)
    if covered <= timedelta(0):
        return Fraction(0)
    return Fraction(covered // _MICROSECOND, (end - start) // _MICROSECOND)

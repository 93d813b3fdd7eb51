"""Billing periods: anniversary schedules in UTC, half-open [start, end), exact proration."""

import calendar
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.periods import (
    INTERVAL_MONTHS,
    period_bounds,
    period_containing,
    period_index_at,
    proration_fraction,
)


def utc(year, month, day=1, *rest):
    return datetime(year, month, day, *rest, tzinfo=UTC)


# --- Anniversaries and month-end clamping -------------------------------------------------


def test_month_end_anchor_clamps_in_a_leap_year_without_drifting():
    anchor = utc(2024, 1, 31, 10, 30)
    starts = [period_bounds(anchor, "month", i)[0] for i in range(14)]
    assert starts == [
        utc(2024, 1, 31, 10, 30),
        utc(2024, 2, 29, 10, 30),  # leap February
        utc(2024, 3, 31, 10, 30),  # back to the 31st, not stuck on the 29th
        utc(2024, 4, 30, 10, 30),
        utc(2024, 5, 31, 10, 30),
        utc(2024, 6, 30, 10, 30),
        utc(2024, 7, 31, 10, 30),
        utc(2024, 8, 31, 10, 30),
        utc(2024, 9, 30, 10, 30),
        utc(2024, 10, 31, 10, 30),
        utc(2024, 11, 30, 10, 30),
        utc(2024, 12, 31, 10, 30),
        utc(2025, 1, 31, 10, 30),
        utc(2025, 2, 28, 10, 30),  # common year
    ]


def test_period_end_is_the_next_period_start():
    anchor = utc(2023, 1, 31)
    assert period_bounds(anchor, "month", 0) == (utc(2023, 1, 31), utc(2023, 2, 28))
    assert period_bounds(anchor, "month", 1) == (utc(2023, 2, 28), utc(2023, 3, 31))


def test_quarterly_schedule_clamps_each_quarter_from_the_anchor_day():
    anchor = utc(2023, 11, 30, 8)
    assert [period_bounds(anchor, "quarter", i) for i in range(4)] == [
        (utc(2023, 11, 30, 8), utc(2024, 2, 29, 8)),
        (utc(2024, 2, 29, 8), utc(2024, 5, 30, 8)),
        (utc(2024, 5, 30, 8), utc(2024, 8, 30, 8)),
        (utc(2024, 8, 30, 8), utc(2024, 11, 30, 8)),
    ]


def test_yearly_schedule_anchored_on_29_february():
    anchor = utc(2024, 2, 29, 23, 59, 59, 999999)
    assert period_bounds(anchor, "year", 0) == (anchor, utc(2025, 2, 28, 23, 59, 59, 999999))
    assert period_bounds(anchor, "year", 3)[1] == utc(2028, 2, 29, 23, 59, 59, 999999)


def test_anchor_in_another_zone_is_converted_to_utc_first():
    # 00:30 on 1 March in Berlin (UTC+1) is 23:30 on 29 February in UTC: the 29th is the day.
    anchor = datetime(2024, 3, 1, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    start, end = period_bounds(anchor, "month", 1)
    assert start == utc(2024, 3, 29, 23, 30)
    assert start.tzinfo is UTC and end.tzinfo is UTC
    assert end == utc(2024, 4, 29, 23, 30)


def test_interval_months():
    assert INTERVAL_MONTHS == {"month": 1, "quarter": 3, "year": 12}


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: period_bounds(datetime(2024, 1, 1), "month", 0), ValueError, "timezone-aware"),
        (lambda: period_bounds(utc(2024, 1, 1), "week", 0), ValueError, "unknown billing"),
        (lambda: period_bounds(utc(2024, 1, 1), "month", -1), ValueError, ">= 0"),
        (lambda: period_bounds(utc(2024, 1, 1), "month", 1.0), TypeError, "int"),
        (lambda: period_index_at(utc(2024, 1), "month", datetime(2024, 2, 1)), ValueError, "aware"),
    ],
)
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --- Which period contains a moment --------------------------------------------------------


def test_index_at_period_edges_is_half_open():
    anchor = utc(2024, 1, 31, 10, 30)
    assert period_index_at(anchor, "month", anchor) == 0
    assert period_index_at(anchor, "month", utc(2024, 2, 29, 10, 29, 59, 999999)) == 0
    assert period_index_at(anchor, "month", utc(2024, 2, 29, 10, 30)) == 1  # end is excluded
    # Early in a month, before the anniversary time: still the previous period.
    assert period_index_at(anchor, "month", utc(2024, 4, 1)) == 2
    assert period_containing(anchor, "month", utc(2024, 4, 30, 10, 30)) == (
        3,
        utc(2024, 4, 30, 10, 30),
        utc(2024, 5, 31, 10, 30),
    )


def test_index_at_a_moment_given_in_another_zone():
    anchor = utc(2024, 1, 15)
    # 2024-02-15 00:30 in Berlin is 14 Feb 23:30 UTC: still period 0.
    at = datetime(2024, 2, 15, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert period_index_at(anchor, "month", at) == 0
    assert period_index_at(anchor, "year", utc(2030, 1, 14)) == 5


def test_a_moment_before_the_anchor_has_no_period():
    with pytest.raises(ValueError, match="before the schedule's anchor"):
        period_containing(utc(2024, 1, 31), "month", utc(2024, 1, 30, 23, 59))


# --- Proration ----------------------------------------------------------------------------


def test_proration_of_a_mid_period_plan_change_sums_to_one():
    start, end = utc(2024, 1, 31, 10, 30), utc(2024, 2, 29, 10, 30)  # 29 days = 2,505,600 s
    change = utc(2024, 2, 15)  # 14 days 13.5 hours after the start = 1,258,200 s
    before = proration_fraction(start, end, start, change)
    after = proration_fraction(start, end, change, end)
    assert before == Fraction(1_258_200, 2_505_600)
    assert after == Fraction(2_505_600 - 1_258_200, 2_505_600)
    assert before + after == 1


def test_proration_counts_microseconds():
    start = utc(2024, 1, 1)
    end = start + timedelta(seconds=1)
    assert proration_fraction(start, end, start, start + timedelta(microseconds=1)) == Fraction(
        1, 1_000_000
    )


def test_proration_clips_the_part_to_the_period():
    start, end = utc(2024, 1, 1), utc(2024, 1, 11)  # 10 days
    assert proration_fraction(start, end, utc(2023, 12, 1), utc(2024, 1, 3)) == Fraction(1, 5)
    assert proration_fraction(start, end, utc(2024, 1, 6), utc(2025, 1, 1)) == Fraction(1, 2)
    assert proration_fraction(start, end, utc(2023, 1, 1), utc(2030, 1, 1)) == 1
    assert proration_fraction(start, end, utc(2024, 2, 1), utc(2024, 3, 1)) == 0
    assert proration_fraction(start, end, start, start) == 0


def test_proration_across_zones_uses_absolute_time():
    start, end = utc(2024, 1, 1), utc(2024, 1, 2)
    noon_in_new_york = datetime(2024, 1, 1, 7, tzinfo=timezone(timedelta(hours=-5)))
    assert proration_fraction(start, end, noon_in_new_york, end) == Fraction(1, 2)


def test_proration_refuses_empty_periods_and_inverted_parts():
    start, end = utc(2024, 1, 1), utc(2024, 1, 2)
    with pytest.raises(ValueError, match="empty period"):
        proration_fraction(end, start, start, end)
    with pytest.raises(ValueError, match="before it starts"):
        proration_fraction(start, end, end, start)
    with pytest.raises(ValueError, match="timezone-aware"):
        proration_fraction(start, end, datetime(2024, 1, 1), end)


# --- Properties ---------------------------------------------------------------------------

ZONES = [UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), ZoneInfo("Pacific/Chatham")]
anchors = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2090, 12, 31),
    timezones=st.sampled_from(ZONES),
)
intervals = st.sampled_from(sorted(INTERVAL_MONTHS))
offsets = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=365 * 40))


@given(anchor=anchors, interval=intervals, offset=offsets)
def test_the_containing_period_contains_the_moment(anchor, interval, offset):
    at = anchor + offset
    index, start, end = period_containing(anchor, interval, at)
    assert start <= at < end
    assert (start, end) == period_bounds(anchor, interval, index)
    if index:
        assert period_bounds(anchor, interval, index - 1)[1] <= at


@given(anchor=anchors, interval=intervals, index=st.integers(min_value=0, max_value=400))
def test_consecutive_periods_tile_time(anchor, interval, index):
    start, end = period_bounds(anchor, interval, index)
    next_start, next_end = period_bounds(anchor, interval, index + 1)
    assert start < end == next_start < next_end  # no gap, no overlap
    anchor_utc = anchor.astimezone(UTC)
    assert start.time() == anchor_utc.time()
    assert start.day == min(anchor_utc.day, calendar.monthrange(start.year, start.month)[1])
    months = (start.year - anchor_utc.year) * 12 + start.month - anchor_utc.month
    assert months == index * INTERVAL_MONTHS[interval]


@given(anchor=anchors, interval=intervals, index=st.integers(0, 100), cut=st.fractions(0, 1))
def test_a_split_period_prorates_to_exactly_one(anchor, interval, index, cut):
    start, end = period_bounds(anchor, interval, index)
    length_us = (end - start) // timedelta(microseconds=1)
    split = start + timedelta(microseconds=int(length_us * cut))
    first = proration_fraction(start, end, start, split)
    second = proration_fraction(start, end, split, end)
    assert first + second == 1
    assert 0 <= first <= 1

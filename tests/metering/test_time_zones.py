"""Day and month buckets follow the customer's time zone, even where it is offset by :30."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from metering.ingest import events_ingest
from metering.selectors import usage_series, usage_total
from tests.accounts.factories import CustomerFactory
from tests.metering.factories import api_calls_meter, event

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "cut"),
    [
        ("Asia/Kolkata", "18:30"),  # +05:30: local midnight is 18:30 UTC
        ("Asia/Kathmandu", "18:15"),  # +05:45
        ("America/St_Johns", "03:30"),  # -03:30 (November: standard time)
    ],
)
def test_events_either_side_of_a_half_hour_midnight_land_in_their_own_day(zone, cut):
    customer = CustomerFactory(timezone=zone)
    meter = api_calls_meter()
    hour, minute = map(int, cut.split(":"))
    before = datetime(2026, 11, 10, hour, minute - 10, tzinfo=UTC).isoformat()
    after = datetime(2026, 11, 10, hour, minute + 10, tzinfo=UTC).isoformat()
    events_ingest(
        events=[
            event(customer, "before", ts=before, endpoint="/a", region="eu"),
            event(customer, "after", ts=after, endpoint="/a", region="eu"),
            event(customer, "after-2", ts=after, endpoint="/b", region="eu"),
        ],
        now=NOW,
    )
    start, end = datetime(2026, 11, 8, tzinfo=UTC), datetime(2026, 11, 14, tzinfo=UTC)
    series = usage_series(customer=customer, meter=meter, start=start, end=end)
    by_day = {p.bucket.date().isoformat(): p.value for p in series if p.value}
    cut_local = datetime(2026, 11, 10, hour, minute, tzinfo=UTC).astimezone(series[0].bucket.tzinfo)
    day_after = cut_local.date().isoformat()
    day_before = (cut_local.date().fromordinal(cut_local.date().toordinal() - 1)).isoformat()
    assert by_day == {day_before: Decimal(1), day_after: Decimal(2)}
    assert sum(p.value for p in series) == usage_total(
        customer=customer, meter=meter, start=start, end=end
    )


def test_hourly_series_in_a_half_hour_zone_splits_utc_hours():
    customer = CustomerFactory(timezone="Asia/Kolkata")
    meter = api_calls_meter()
    events_ingest(
        events=[
            event(customer, "a", ts="2026-11-10T06:10:00Z", endpoint="/a", region="eu"),
            event(customer, "b", ts="2026-11-10T06:40:00Z", endpoint="/a", region="eu"),
        ],
        now=NOW,
    )
    series = usage_series(
        customer=customer,
        meter=meter,
        start=datetime(2026, 11, 10, 5, 30, tzinfo=UTC),
        end=datetime(2026, 11, 10, 7, 30, tzinfo=UTC),
        granularity="hour",
    )
    assert [(p.bucket.strftime("%H:%M"), p.value) for p in series] == [
        ("11:00", Decimal(1)),
        ("12:00", Decimal(1)),
    ]


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"])
def test_a_window_given_in_a_half_hour_zone_counts_every_event(zone):
    """A billing period in the customer's zone starts at :30 (or :45) UTC: its whole hours
    are still the UTC hours the rollups keep, so nothing between is lost."""
    from zoneinfo import ZoneInfo

    customer = CustomerFactory(timezone=zone)
    meter = api_calls_meter()
    moments = [datetime(2026, 11, 10, h, m, tzinfo=UTC) for h in range(24) for m in (5, 35, 50)]
    events_ingest(
        events=[
            event(customer, f"e{i}", ts=moment.isoformat(), endpoint="/a", region="eu")
            for i, moment in enumerate(moments)
        ],
        now=NOW,
    )
    local = ZoneInfo(zone)
    start = datetime(2026, 11, 10, 3, 0, tzinfo=local)  # a local hour: :30 or :45 in UTC
    end = datetime(2026, 11, 10, 21, 0, tzinfo=local)
    expected = sum(1 for moment in moments if start <= moment < end)
    assert usage_total(customer=customer, meter=meter, start=start, end=end) == expected
    utc = usage_total(
        customer=customer, meter=meter, start=start.astimezone(UTC), end=end.astimezone(UTC)
    )
    assert utc == expected

"""Many windows measured in one query equal each window measured on its own."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from metering.ingest import events_ingest
from metering.measuring import raw_totals
from metering.selectors import (
    UsageWindow,
    batch_usage_totals,
    usage_as_displayed,
    usage_realtime_and_displayed,
    usage_series,
    usage_total,
    usage_totals,
)
from tests.accounts.factories import CustomerFactory
from tests.metering.factories import api_calls_meter, data_meter, event, seats_meter, users_meter

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 10, 5, tzinfo=UTC)


@pytest.fixture
def customers():
    return [CustomerFactory(), CustomerFactory(), CustomerFactory()]


@pytest.fixture
def meters(customers):
    meters = [api_calls_meter(), data_meter(), seats_meter(), users_meter()]
    batch = []
    for c_index, customer in enumerate(customers):
        for i in range(60):
            moment = DAY + timedelta(minutes=37 * i + 11 * c_index)
            ts = moment.isoformat().replace("+00:00", "Z")
            batch += [
                event(customer, f"a{i}", ts=ts, endpoint=f"/v{i % 3}", region="eu"),
                event(customer, f"d{i}", name="data_processed", ts=ts, gb=f"{i % 7}.25"),
                event(customer, f"s{i}", name="active_seats", ts=ts, seats=(i * 5) % 17),
                event(customer, f"u{i}", name="user_active", ts=ts, user_id=f"u{i % 9}"),
            ]
    result = events_ingest(events=batch, now=DAY + timedelta(days=5))
    assert result.accepted == len(batch)
    return meters


def windows_for(customers):
    """Whole hours, partial hours, a window inside one hour, two windows of one customer."""
    return [
        UsageWindow(customers[0].pk, DAY, DAY + timedelta(days=2)),
        UsageWindow(
            customers[1].pk, DAY + timedelta(minutes=13), DAY + timedelta(hours=20, minutes=5)
        ),
        UsageWindow(
            customers[2].pk,
            DAY + timedelta(hours=3, minutes=2),
            DAY + timedelta(hours=3, minutes=59),
        ),
        UsageWindow(
            customers[0].pk, DAY + timedelta(hours=5), DAY + timedelta(hours=9, minutes=30)
        ),
        UsageWindow(customers[1].pk, DAY + timedelta(days=3), DAY + timedelta(days=4)),  # empty
    ]


@pytest.mark.parametrize("track", ["realtime", "batch"])
def test_usage_totals_equal_one_total_per_window(customers, meters, track):
    by_pk = {c.pk: c for c in customers}
    windows = windows_for(customers)
    for meter in meters:
        expected = [
            usage_total(
                customer=by_pk[w.customer_id], meter=meter, start=w.start, end=w.end, track=track
            )
            for w in windows
        ]
        assert usage_totals(meter=meter, windows=windows, track=track) == expected, meter.code
        assert expected[-1] == Decimal(0)
        assert any(expected), meter.code


def test_batch_totals_of_many_meters_at_once_equal_each_meter_on_its_own(customers, meters):
    """Count, sum and max meters share one read of the raw events; unique-count and gauge
    meters are measured beside them: each figure equals the meter's own batch total."""
    by_pk = {c.pk: c for c in customers}
    windows = windows_for(customers)

    together = batch_usage_totals(meters=meters, windows=windows)

    assert len(together) == len(windows)
    for window, totals in zip(windows, together, strict=True):
        assert totals == {
            meter.pk: usage_total(
                customer=by_pk[window.customer_id],
                meter=meter,
                start=window.start,
                end=window.end,
                track="batch",
            )
            for meter in meters
        }
    assert any(totals[meters[1].pk] for totals in together)  # GB sums, not counts
    with pytest.raises(ValueError, match="count, sum and max"):
        raw_totals(meters=[meters[3]], windows=windows)  # unique users


def test_usage_totals_refuses_empty_windows_and_late_events_outside_the_batch_track(
    meters, customers
):
    meter = meters[0]
    assert usage_totals(meter=meter, windows=[]) == []
    with pytest.raises(ValueError, match="end after"):
        usage_totals(meter=meter, windows=[UsageWindow(customers[0].pk, DAY, DAY)])
    with pytest.raises(ValueError, match="batch"):
        usage_totals(
            meter=meter, windows=windows_for(customers), late_received_before=DAY, track="realtime"
        )


def test_realtime_and_displayed_figures_equal_one_window_at_a_time_across_time_zones(meters):
    # Berlin, Kolkata (:30 offset: cut hours at its midnights) and New York customers.
    zones = ["Europe/Berlin", "Asia/Kolkata", "America/New_York"]
    customers = [CustomerFactory(timezone=zone) for zone in zones]
    batch = [
        event(c, f"z{i}", ts=(DAY + timedelta(minutes=41 * i)).isoformat().replace("+00:00", "Z"))
        for c in customers
        for i in range(80)
    ]
    assert events_ingest(events=batch, now=DAY + timedelta(days=5)).accepted == len(batch)
    windows = [
        UsageWindow(c.pk, DAY + timedelta(hours=2, minutes=10), DAY + timedelta(days=2, hours=5))
        for c in customers
    ] + [UsageWindow(customers[0].pk, DAY, DAY + timedelta(hours=30))]
    window_zones = [*zones, zones[0]]
    for meter in meters:
        expected = [
            usage_as_displayed(
                customer=next(c for c in customers if c.pk == w.customer_id),
                meter=meter,
                start=w.start,
                end=w.end,
            )
            for w in windows
        ]
        both = usage_realtime_and_displayed(meter=meter, windows=windows, zones=window_zones)
        assert [shown for _, shown in both] == expected
        assert [total for total, _ in both] == [
            usage_totals(meter=meter, windows=[w])[0] for w in windows
        ]
    calls = meters[0]
    assert usage_realtime_and_displayed(meter=calls, windows=windows, zones=window_zones)[0][
        1
    ] == sum(
        p.value
        for p in usage_series(
            customer=customers[0], meter=calls, start=windows[0].start, end=windows[0].end
        )
    )

"""spend_forecast: the current billing period rated at the forecast's period-end usage,
through invoicing's engine; its range, per-meter figures and the commitment position."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from alerts.selectors import meter_forecast
from alerts.selectors.outlook import spend_forecast
from invoicing import selectors as invoicing
from metering.ingest import events_ingest
from metering.selectors import usage_total
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, event, seats_meter

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
OCT = datetime(2026, 10, 1, tzinfo=UTC)


def joined_long_ago(customer) -> None:
    type(customer).objects.filter(pk=customer.pk).update(created_at=NOW - timedelta(days=90))
    customer.refresh_from_db()


def calls(customer, *, days: int = 28, per_day=lambda day: 20 + day, prefix: str = "c") -> int:
    """``days`` days of API calls up to NOW (day 0 is the oldest), plus a few today."""
    batch = []
    for day in range(days):
        moment = NOW.replace(hour=9) - timedelta(days=days - day)
        batch += [
            event(customer, f"{prefix}{day}-{i}", ts=(moment + timedelta(seconds=i)).isoformat())
            for i in range(per_day(day))
        ]
    batch += [
        event(customer, f"{prefix}-today-{i}", ts=(NOW - timedelta(hours=2, seconds=i)).isoformat())
        for i in range(5)
    ]
    assert events_ingest(events=batch, now=NOW).accepted == len(batch)
    return len(batch)


@pytest.fixture
def meter(db):
    return api_calls_meter()


@pytest.fixture
def busy_a(customer_a, meter):
    joined_long_ago(customer_a)
    calls(customer_a)
    return customer_a


def test_without_a_subscription_there_is_no_spend_forecast(busy_a):
    assert spend_forecast(customer=busy_a, now=NOW) is None


def test_the_range_is_ordered_and_rated_with_the_plans_prices(busy_a, meter):
    subscribe(busy_a, plan_version(components=[flat("99.00"), per_unit(meter, "0.01")]), at=NOV)

    spend = spend_forecast(customer=busy_a, now=NOW)

    assert spend.currency == "USD" and not spend.ended
    assert (spend.period_start, spend.period_end, spend.as_of) == (
        NOV,
        datetime(2026, 12, 1, tzinfo=UTC),
        NOW,
    )
    assert spend.total.p10 <= spend.total.p50 <= spend.total.p90
    assert spend.total.p10 < spend.total.p90  # two weeks ahead is not certain
    # The invoice so far is the upcoming invoice's.
    upcoming = invoicing.upcoming_invoice(customer=busy_a, now=NOW)
    assert spend.so_far_minor == upcoming.total_minor
    assert spend.so_far_minor < spend.total.p10
    # Each quantile is the forecast's period-end usage (whole calls), priced by hand:
    # 99.00 USD plus a cent a call.
    (calls_spend,) = spend.meters
    forecast = meter_forecast(customer=busy_a, meter=meter, now=NOW)
    assert calls_spend.meter == meter and calls_spend.forecast
    assert calls_spend.usage_to_date == forecast.usage_to_date
    for q in ("p10", "p50", "p90"):
        quantity = getattr(calls_spend.quantity, q)
        expected = getattr(forecast.period_end_usage, q).quantize(Decimal(1))
        assert abs(quantity - getattr(forecast.period_end_usage, q)) <= Decimal("0.5")
        assert quantity == expected and quantity == quantity.to_integral_value()
        assert getattr(calls_spend.amount, q) == int(quantity)  # one cent a call
        assert getattr(spend.total, q) == 9900 + int(quantity)
    assert calls_spend.amount_to_date_minor == int(forecast.usage_to_date)
    assert spend.commitment is None
    assert "Projected" in spend.summary and "USD so far" in spend.summary


def test_a_period_that_has_ended_is_what_it_charges(busy_a, meter):
    """Subscribed on 1 October: at NOW the October period is over (the close job has not
    run), so there is nothing to forecast and the range is the invoice as it stands."""
    subscribe(busy_a, plan_version(components=[flat("99.00"), per_unit(meter, "0.01")]), at=OCT)

    spend = spend_forecast(customer=busy_a, now=NOW)

    upcoming = invoicing.upcoming_invoice(customer=busy_a, now=NOW)
    assert spend.ended and spend.period_end == NOV and spend.as_of == NOV
    assert spend.total.p10 == spend.total.p50 == spend.total.p90 == spend.so_far_minor
    assert spend.so_far_minor == upcoming.total_minor
    assert not spend.meters[0].forecast


def test_without_growth_the_range_is_the_charge_so_far(customer_a, meter):
    """No usage ever: the forecast adds nothing, and a gauge keeps its reading."""
    joined_long_ago(customer_a)
    seats = seats_meter()
    version = plan_version(
        components=[flat("20.00"), per_unit(meter, "0.01"), per_unit(seats, "5.00")]
    )
    subscribe(customer_a, version, at=NOV)
    seats_reading = event(customer_a, "s1", name="active_seats", ts="2026-11-10T10:00:00Z", seats=4)
    assert events_ingest(events=[seats_reading], now=NOW).accepted == 1

    spend = spend_forecast(customer=customer_a, now=NOW)

    assert spend.total.p10 == spend.total.p50 == spend.total.p90 == spend.so_far_minor == 4000
    by_meter = {m.meter.code: m for m in spend.meters}
    assert by_meter["active_seats"].forecast is False
    assert by_meter["active_seats"].quantity.p90 == by_meter["active_seats"].usage_to_date == 4
    assert by_meter["api_call"].forecast is True
    assert by_meter["api_call"].quantity.p90 == 0


def test_the_commitment_position_sets_prepaid_money_against_projected_charges(busy_a, meter):
    version = plan_version(
        components=[
            per_unit(meter, "0.05"),
            {"kind": "commitment", "amount": "1200.00", "commitment_months": 12},
        ]
    )
    subscribe(busy_a, version, at=NOV)

    spend = spend_forecast(customer=busy_a, now=NOW)

    position = spend.commitment
    assert position.commitment_minor == 120000 and position.term_months == 12
    assert position.available_minor == 120000  # the term starts with this period
    (calls_spend,) = spend.meters
    for q in ("p10", "p50", "p90"):
        charges = getattr(calls_spend.amount, q)
        assert charges == 5 * int(getattr(calls_spend.quantity, q))
        assert getattr(position.charges, q) == charges
        assert getattr(position.balance_after, q) == 120000 - charges
        assert getattr(position.overage, q) == 0
        # The invoice is the prepaid fee: usage is drawn from it.
        assert getattr(spend.total, q) == 120000
    assert position.balance_after.p10 >= position.balance_after.p50 >= position.balance_after.p90


def test_usage_beyond_the_commitment_is_overage(busy_a, meter):
    version = plan_version(
        components=[
            per_unit(meter, "0.05"),
            {"kind": "commitment", "amount": "10.00", "commitment_months": 12},
        ]
    )
    subscribe(busy_a, version, at=NOV)

    spend = spend_forecast(customer=busy_a, now=NOW)

    position = spend.commitment
    assert position.balance_after.p50 == 0
    assert position.overage.p50 == position.charges.p50 - 1000 > 0
    assert spend.total.p50 == 1000 + position.overage.p50


def test_a_plan_change_mid_period_splits_the_growth_to_the_phase_still_running(busy_a, meter):
    from invoicing import services

    first = plan_version(components=[flat("99.00"), per_unit(meter, "0.01")])
    subscription = subscribe(busy_a, first, at=NOV)
    second = plan_version(code="pro", components=[flat("99.00"), per_unit(meter, "0.02")])
    change = NOV + timedelta(days=10)
    services.subscription_change_plan(
        actor=None, subscription=subscription, plan_version=second, at=change
    )

    spend = spend_forecast(customer=busy_a, now=NOW)

    forecast = meter_forecast(customer=busy_a, meter=meter, now=NOW)
    p50 = spend.meters[0].quantity.p50
    # Both phases' lines add up to the whole period's forecast usage.
    assert abs(p50 - forecast.period_end_usage.p50) <= 1
    # What the first phase used is final; all the growth is billed at the second's price.
    first_phase = usage_total(customer=busy_a, meter=meter, start=NOV, end=change)
    assert 0 < first_phase < p50
    assert spend.meters[0].amount.p50 == int(first_phase) + 2 * int(p50 - first_phase)
    assert spend.total.p50 == 9900 + spend.meters[0].amount.p50


def test_queries_are_bounded_by_priced_meters_not_by_days_or_events(
    customer_a, meter, django_assert_max_num_queries
):
    joined_long_ago(customer_a)
    calls(customer_a, days=7)
    subscribe(customer_a, plan_version(components=[flat("9.00"), per_unit(meter, "0.01")]), at=NOV)
    # The subscription; per metered component its forecast (the billing period, a daily
    # series, two totals); the phases with their versions and plans, the carried balance,
    # the version's prices.
    with django_assert_max_num_queries(1 + 4 + 3 + 1 + 1):
        short = spend_forecast(customer=customer_a, now=NOW)

    calls(customer_a, days=56, per_day=lambda day: 3, prefix="more")  # eight weeks
    with django_assert_max_num_queries(1 + 4 + 3 + 1 + 1):
        long = spend_forecast(customer=customer_a, now=NOW)
    assert long.meters[0].usage_to_date > short.meters[0].usage_to_date


def test_the_same_day_gives_the_same_forecast(busy_a, meter):
    subscribe(busy_a, plan_version(components=[per_unit(meter, "0.01")]), at=NOV)

    assert spend_forecast(customer=busy_a, now=NOW) == spend_forecast(customer=busy_a, now=NOW)

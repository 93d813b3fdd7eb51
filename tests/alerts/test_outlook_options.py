"""plan_options: the vendor's other plans priced at the forecast usage, against the current
plan priced the same way; real plans, versions and price components, hand-computed prices."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from alerts.outlook import describe_option, growth_share, projected_quantity, worth_offering
from alerts.selectors.outlook import (
    MeterSpend,
    MinorRange,
    QuantityRange,
    SpendForecast,
    plan_options,
    spend_forecast,
)
from invoicing.models import Plan
from metering.ingest import events_ingest
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, event, seats_meter

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)


def commitment(amount: str, months: int = 12) -> dict:
    return {"kind": "commitment", "amount": amount, "commitment_months": months}


@pytest.fixture
def meter(db):
    return api_calls_meter()


@pytest.fixture
def growth(customer_a, meter):
    """Customer A on Growth: 99.00 USD a month plus a cent a call."""
    version = plan_version(code="growth", components=[flat("99.00"), per_unit(meter, "0.01")])
    return subscribe(customer_a, version, at=NOV)


@pytest.fixture
def catalog(meter):
    """The vendor's other plans, priced at 30,000 calls a month (see each)."""
    plans = {
        # 199.00 + 30,000 x 0.002 = 259.00: saves 140.00.
        "scale": plan_version(code="scale", components=[flat("199.00"), per_unit(meter, "0.002")]),
        # 2,400.00 prepaid per 12 months, 0.005 a call (150.00 a month, drawn from it):
        # the fee is the whole year's cost, 200.00 a month: saves 199.00.
        "enterprise": plan_version(
            code="enterprise", components=[per_unit(meter, "0.005"), commitment("2400.00")]
        ),
        # Yearly: 990.00 + 360,000 x 0.01 = 4,590.00 a year, 382.50 a month: saves 16.50.
        "annual": plan_version(
            code="annual", interval="year", components=[flat("990.00"), per_unit(meter, "0.01")]
        ),
        # 110.00 + 300.00 = 410.00: 11.00 (2.8%) more, within a few percent: shown.
        "nearly": plan_version(code="nearly", components=[flat("110.00"), per_unit(meter, "0.01")]),
        # 30,000 x 0.05 = 1,500.00: far more, not shown.
        "starter": plan_version(code="starter", components=[per_unit(meter, "0.05")]),
        # Cheap, but no longer offered, or billed in another currency: not shown.
        "legacy": plan_version(code="legacy", components=[per_unit(meter, "0.0001")]),
        "euro": plan_version(code="euro", currency="EUR", components=[per_unit(meter, "0.0001")]),
    }
    Plan.objects.filter(code="legacy").update(is_active=False)
    return plans


def at_usage(subscription, meter, p50: int) -> SpendForecast:
    """A spend forecast whose p50 is ``p50`` calls (the options read only that)."""
    quantity = Decimal(p50)
    return SpendForecast(
        customer=subscription.customer,
        subscription=subscription,
        currency="USD",
        period_start=NOV,
        period_end=DEC,
        as_of=NOW,
        ended=False,
        so_far_minor=0,
        total=MinorRange(0, 0, 0),
        meters=(
            MeterSpend(
                meter=meter,
                forecast=True,
                usage_to_date=quantity / 2,
                quantity=QuantityRange(quantity, quantity, quantity),
                amount_to_date_minor=0,
                amount=MinorRange(0, 0, 0),
            ),
        ),
        commitment=None,
    )


def test_options_are_priced_at_the_forecast_usage_and_sorted_by_saving(
    growth, meter, catalog, django_assert_max_num_queries
):
    spend = at_usage(growth, meter, 30_000)

    # Plans, their versions, components and meters; the current version's components.
    with django_assert_max_num_queries(5):
        options = plan_options(customer=growth.customer, now=NOW, spend=spend)

    assert [(o.plan.code, o.cost_minor, o.saving_minor) for o in options] == [
        ("enterprise", 20000, 19900),
        ("scale", 25900, 14000),
        ("annual", 38250, 1650),
        ("nearly", 41000, -1100),
    ]
    assert {o.current_cost_minor for o in options} == {39900}  # 99.00 + 300.00
    enterprise, scale, annual, nearly = options
    assert scale.description == (
        "Scale plan: 259.00 USD at your forecast usage instead of 399.00 USD"
        " — saves 140.00 USD this period"
    )
    assert enterprise.commitment_minor == 240000 and enterprise.commitment_months == 12
    assert enterprise.description.endswith(
        "saves 199.00 USD this period (with a 12-month prepaid commitment of 2,400.00 USD)"
    )
    assert annual.interval == "year"
    assert annual.description == (
        "Annual plan: 382.50 USD a month on average (billed yearly) at your forecast usage"
        " instead of 399.00 USD — saves 16.50 USD a month"
    )
    assert nearly.description.endswith("costs 11.00 USD more this period")
    assert scale.commitment_minor is None and scale.version.version == 1


def test_the_latest_version_of_a_plan_is_the_one_offered(growth, meter, catalog):
    # Scale gets dearer: 0.004 a call, 319.00 at 30,000 calls, still a saving of 80.00.
    plan_version(code="scale", components=[flat("199.00"), per_unit(meter, "0.004")])

    options = plan_options(customer=growth.customer, now=NOW, spend=at_usage(growth, meter, 30_000))

    scale = next(o for o in options if o.plan.code == "scale")
    assert (scale.version.version, scale.cost_minor, scale.saving_minor) == (2, 31900, 8000)


def test_at_low_usage_the_order_changes_and_the_current_plan_is_not_offered(growth, meter, catalog):
    """At 1,000 calls Growth costs 109.00: Starter 50.00 (saves 59.00), Annual 92.50
    (990/12 + 10.00, saves 16.50); Scale 201.00, Enterprise 200.00 (its commitment) and
    Nearly 120.00 (10% more) are not shown."""
    options = plan_options(customer=growth.customer, now=NOW, spend=at_usage(growth, meter, 1_000))

    assert [(o.plan.code, o.saving_minor) for o in options] == [
        ("starter", 5900),
        ("annual", 1650),
    ]
    assert all(o.plan.code != "growth" for o in options)


def test_without_a_subscription_there_are_no_options(customer_a, catalog):
    assert plan_options(customer=customer_a, now=NOW) == []


def test_options_from_the_real_forecast(growth, meter, catalog):
    """Without a spend given, plan_options reads the forecast itself: the options are
    priced at its p50."""
    customer = growth.customer
    type(customer).objects.filter(pk=customer.pk).update(created_at=NOW - timedelta(days=60))
    customer.refresh_from_db()
    batch = [
        event(customer, f"d{day}-{i}", ts=(NOW - timedelta(days=day, seconds=i)).isoformat())
        for day in range(1, 29)
        for i in range(300)
    ]
    assert events_ingest(events=batch, now=NOW).accepted == len(batch)

    spend = spend_forecast(customer=customer, now=NOW)
    options = plan_options(customer=customer, now=NOW)

    calls = spend.meters[0].quantity.p50
    assert calls > 5_000
    # At ~9,000 calls only Annual saves: 990.00 / 12 + a cent a call, against 99.00 + a
    # cent a call.
    assert [o.plan.code for o in options] == ["annual"]
    (annual,) = options
    assert annual.current_cost_minor == spend.total.p50 == 9900 + int(calls)
    assert annual.cost_minor == 8250 + int(calls) and annual.saving_minor == 1650
    assert options == plan_options(customer=customer, now=NOW, spend=spend)


def test_a_meter_only_another_plan_prices_is_read_for_it(growth, meter, catalog):
    """The Seats plan prices seats, which Growth does not: its cost takes the customer's
    seats reading this period (a gauge keeps its reading)."""
    seats = seats_meter()
    plan_version(code="seats", components=[flat("50.00"), per_unit(seats, "5.00")])
    reading = event(growth.customer, "s1", name="active_seats", ts="2026-11-10T10:00:00Z", seats=6)
    assert events_ingest(events=[reading], now=NOW).accepted == 1

    options = plan_options(customer=growth.customer, now=NOW, spend=at_usage(growth, meter, 30_000))

    assert next(o for o in options if o.plan.code == "seats").cost_minor == 8000  # 50 + 6 x 5


# --- The pure helpers --------------------------------------------------------------------


def test_growth_goes_to_the_phases_still_running_by_their_share_of_the_time_left():
    def share(start, end):
        return growth_share(span_start=start, span_end=end, as_of=NOW, period_end=DEC)

    assert share(NOV, DEC) == 1
    assert share(NOV, NOW) == 0  # over before now
    middle = NOW + (DEC - NOW) / 4
    assert share(NOV, middle) + share(middle, DEC) == 1
    assert share(NOV, middle) == share(NOV, middle)  # exact, not a float
    assert str(share(middle, DEC)) == "3/4"


def test_projected_quantities_are_whole_for_counts_and_never_below_usage_so_far():
    from fractions import Fraction

    whole = projected_quantity(
        so_far=Decimal(10), growth=Decimal("5.5"), share=Fraction(1), whole_units=True
    )
    assert whole == 16
    assert projected_quantity(
        so_far=Decimal(10), growth=Decimal(3), share=Fraction(1, 3), whole_units=False
    ) == Decimal(11)
    assert projected_quantity(
        so_far=Decimal("10.4"), growth=Decimal(0), share=Fraction(1), whole_units=True
    ) == Decimal("10.4")


def test_worth_offering_means_saving_or_a_few_percent_more():
    assert worth_offering(cost_minor=900, current_minor=1000)
    assert worth_offering(cost_minor=1030, current_minor=1000)
    assert not worth_offering(cost_minor=1031, current_minor=1000)


def test_descriptions_read_naturally():
    text = describe_option(
        plan_name="Enterprise Plan",
        currency="EUR",
        cost_minor=421000,
        current_minor=503000,
        usage_interval="month",
        plan_interval="month",
    )
    assert text == (
        "Enterprise Plan: 4,210.00 EUR at your forecast usage instead of 5,030.00 EUR"
        " — saves 820.00 EUR this period"
    )
    same = describe_option(
        plan_name="Flat",
        currency="JPY",
        cost_minor=5000,
        current_minor=5000,
        usage_interval="month",
        plan_interval="month",
    )
    assert same.endswith("5,000 JPY — costs the same this period")

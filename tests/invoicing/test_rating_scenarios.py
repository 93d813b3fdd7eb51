"""Rating usage that has not happened yet: a period under several usages
(subscription_period_scenarios), the plans on offer (plan_offers) and a plan version's cost
at a steady usage (plan_version_cost), all through the one rating engine."""

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from invoicing import selectors, services
from invoicing.models import Plan, PlanVersion
from tests.invoicing.factories import flat, ingest_usage, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, data_meter, seats_meter

pytestmark = pytest.mark.django_db

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 15, tzinfo=UTC)


def commitment(amount: str, months: int = 12) -> dict:
    return {"kind": "commitment", "amount": amount, "commitment_months": months}


@pytest.fixture
def meter(db):
    return api_calls_meter()


def constant(quantity) -> Callable:
    return lambda component, span: Decimal(quantity)


def test_each_scenario_is_rated_as_period_close_rates_it(customer_a, meter):
    version = plan_version(components=[flat("99.00"), per_unit(meter, "0.01", included="100")])
    subscription = subscribe(customer_a, version, at=NOV)
    ingest_usage(customer_a, meter, [NOV.replace(day=d) for d in range(2, 9)], now=NOW)

    upcoming = selectors.upcoming_invoice(customer=customer_a, now=NOW)
    period = selectors.subscription_period_scenarios(
        subscription=subscription,
        start=NOV,
        end=DEC,
        scenarios={
            "as_upcoming": lambda c, span: upcoming.lines[1].quantity,
            "low": constant(100),
            "high": constant(5100),
        },
    )

    assert (period.currency, period.period_start, period.period_end) == ("USD", NOV, DEC)
    assert period.rated["as_upcoming"].total_minor == upcoming.total_minor == 9900
    assert period.rated["low"].total_minor == 9900  # all within the allowance
    assert period.rated["high"].total_minor == 9900 + 5000  # 5,000 billable at a cent
    high_usage = next(line for line in period.rated["high"].lines if line.kind == "usage")
    assert (high_usage.quantity, high_usage.included_units) == (5100, 100)
    assert period.commitment_minor is None and period.carried_balance_minor == 0


def test_the_commitment_balance_carries_over_from_the_invoice_before(customer_a, meter):
    version = plan_version(components=[per_unit(meter, "0.50"), commitment("100.00")])
    subscription = subscribe(customer_a, version, at=OCT)
    ingest_usage(customer_a, meter, [OCT.replace(day=d) for d in range(2, 32)], now=NOW)
    october = services.period_close(subscription_id=subscription.pk, now=NOV)
    assert october.commitment_balance_after_minor == 10000 - 30 * 50
    subscription.refresh_from_db()

    period = selectors.subscription_period_scenarios(
        subscription=subscription,
        start=NOV,
        end=DEC,
        scenarios={"small": constant(10), "large": constant(400)},
    )

    assert period.carried_balance_minor == 8500
    assert (period.commitment_minor, period.commitment_months) == (10000, 12)
    small, large = period.rated["small"], period.rated["large"]
    # No new term in November: the balance pays for the usage, then the rest is invoiced.
    assert (small.total_minor, small.commitment_balance_after_minor) == (0, 8500 - 500)
    assert (large.total_minor, large.commitment_balance_after_minor) == (20000 - 8500, 0)


def test_the_plans_on_offer_are_each_active_plans_latest_version_in_the_currency(
    meter, django_assert_num_queries
):
    plan_version(code="a", components=[per_unit(meter, "0.01")])
    newest = plan_version(code="a", components=[per_unit(meter, "0.02")])
    other = plan_version(code="b", components=[flat("5.00")])
    plan_version(code="gone", components=[flat("1.00")])
    Plan.objects.filter(code="gone").update(is_active=False)
    plan_version(code="euro", currency="EUR", components=[flat("1.00")])

    with django_assert_num_queries(4):  # plans, versions, components, meters
        offers = selectors.plan_offers(currency="USD")
        for version in offers:
            assert [c.meter for c in version.components.all()]
            assert version.plan.currency == "USD"

    assert [v.pk for v in offers] == [newest.pk, other.pk]


def test_a_commitment_costs_its_term_averaged_per_period(meter):
    """1,200.00 per 12 months, 0.01 a call: at 5,000 calls a month (50.00) the fee covers
    the year, 100.00 a month; at 15,000 (150.00 a month) the balance runs out in month 8:
    1,200 + 4 x 150 + 0.00 -> 1,800.00 a year, 150.00 a month."""
    version = plan_version(
        code="commit", components=[per_unit(meter, "0.01"), commitment("1200.00")]
    )

    low = selectors.plan_version_cost(version=version, usage={meter.pk: Decimal(5000)})
    high = selectors.plan_version_cost(version=version, usage={meter.pk: Decimal(15000)})

    assert (low.periods, low.total_minor, low.per_usage_period_minor) == (12, 120000, 10000)
    assert (high.total_minor, high.per_usage_period_minor) == (180000, 15000)
    assert [line.kind for line in low.first_period] == [
        "usage",
        "commitment_fee",
        "commitment_drawdown",
    ]


def test_another_interval_is_compared_per_the_usages_period(meter):
    """A yearly plan for monthly usage: count and sum usage scale to the year, gauges and
    the like do not, and the cost comes back per month."""
    data, seats = data_meter(), seats_meter()
    version = plan_version(
        code="yearly",
        interval="year",
        components=[
            flat("1200.00"),
            per_unit(meter, "0.01"),
            per_unit(data, "1.00"),
            per_unit(seats, "5.00"),
        ],
    )
    version = PlanVersion.objects.get(pk=version.pk)  # nothing prefetched

    cost = selectors.plan_version_cost(
        version=version,
        usage={meter.pk: Decimal(1000), data.pk: Decimal("2.5"), seats.pk: Decimal(4)},
        usage_interval="month",
    )

    # 1,200.00 + 12,000 calls x 0.01 + 30 GB x 1.00 + 4 seats x 5.00 = 1,370.00 a year:
    # 114.17 a month (half-up).
    assert cost.total_minor == 137000 and cost.per_usage_period_minor == 11417
    quarterly = selectors.plan_version_cost(
        version=version, usage={meter.pk: Decimal(3000)}, usage_interval="quarter"
    )
    # 4 x 3,000 calls: 1,320.00 a year, 330.00 a quarter.
    assert quarterly.per_usage_period_minor == 33000

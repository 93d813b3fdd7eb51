"""Money caps: a spend limit on a meter holds usage to what the customer's price buys."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.errors import InvalidInput
from alerts import services
from invoicing.rating import Tier, UsagePrice, units_within, usage_amount
from metering.ingest import events_ingest
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, event

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
D = Decimal


@pytest.fixture
def calls(db):
    return api_calls_meter()


@pytest.fixture
def subscribed(customer_a, calls):
    # 1,000 calls included, then 0.002 USD a call: 10 USD buys 6,000 calls.
    version = plan_version(components=[flat("99"), per_unit(calls, "0.002", included="1000")])
    subscribe(customer_a, version, at=datetime(2026, 11, 1, tzinfo=UTC))
    return customer_a


@pytest.mark.parametrize(
    ("price", "amount", "units"),
    [
        (UsagePrice(model="per_unit", unit_price=D("0.002"), included_units=D(1000)), "10", "6000"),
        (UsagePrice(model="per_unit", unit_price=D("0.002")), "0.0031", "1.55"),
        (UsagePrice(model="per_unit", unit_price=D("0.002")), "0", "0"),
        (
            UsagePrice(
                model="graduated",
                tiers=(Tier(up_to=D(1000), unit_price=D("0.01")), Tier(None, D("0.005"))),
            ),
            "15",
            "2000",
        ),
        # Volume: 1,000 calls cost 10, 1,001 cost 5.005 — a 5 limit stops at the first
        # crossing (500), a 12 limit reaches 2,400 in the cheaper tier.
        (
            UsagePrice(
                model="volume",
                tiers=(Tier(up_to=D(1000), unit_price=D("0.01")), Tier(None, D("0.005"))),
            ),
            "5",
            "500",
        ),
        (
            UsagePrice(
                model="volume",
                tiers=(Tier(up_to=D(1000), unit_price=D("0.01")), Tier(None, D("0.005"))),
            ),
            "12",
            "2400",
        ),
        (UsagePrice(model="package", unit_price=D(3), package_size=D(100)), "10", "300"),
    ],
)
def test_units_within_is_the_most_units_the_amount_buys(price, amount, units):
    found = units_within(price, D(amount))
    assert found == D(units)
    assert usage_amount(price, found) <= D(amount)
    # One smallest step more costs more than the amount (the answer is the most, not some).
    assert usage_amount(price, found + D("1e-12")) > D(amount)


def test_a_free_price_leaves_a_money_amount_unbounded():
    assert units_within(UsagePrice(model="per_unit", unit_price=D(0)), D(10)) is None


@pytest.mark.django_db
def test_a_money_cap_holds_usage_to_what_the_price_buys(subscribed, calls):
    cap = services.cap_set(
        actor=None, customer=subscribed, meter=calls, limit="10", measure="money"
    )
    assert cap.windows.count() == 0
    first = services.authorize(customer=subscribed, meter=calls, quantity="5000", now=NOW)
    assert (first.allowed, first.remaining) == (True, D(1000))
    assert cap.windows.get().limit == D(6000)
    assert not services.authorize(
        customer=subscribed, meter=calls, quantity="1001", now=NOW
    ).allowed

    # Raised to 12 USD: 7,000 calls in all, on the open window at once.
    services.cap_set(actor=None, customer=subscribed, meter=calls, limit="12", measure="money")
    assert cap.windows.get().limit == D(7000)
    assert services_remaining(subscribed, calls) == D(2000)


def services_remaining(customer, meter):
    answer = services.authorize(customer=customer, meter=meter, quantity="2000", now=NOW)
    assert answer.allowed
    return answer.remaining + D(2000)


@pytest.mark.django_db
def test_ingestion_past_a_money_cap_is_refused_with_the_spend_in_the_message(subscribed, calls):
    services.cap_set(actor=None, customer=subscribed, meter=calls, limit="0.004", measure="money")
    # 1,000 included + 2 paid calls.
    batch = [
        event(subscribed, f"e-{i}", name="api_call", ts="2026-11-20T11:00:00Z") for i in range(1003)
    ]
    result = events_ingest(events=batch, now=NOW)
    assert result.accepted == 1002
    refused = [r for r in result.results if r.code == "cap_exceeded"]
    assert len(refused) == 1
    assert "0.004 USD of spend" in refused[0].message


@pytest.mark.django_db
def test_a_money_cap_needs_a_plan_that_prices_the_meter(customer_a, calls):
    with pytest.raises(InvalidInput) as refused:
        services.cap_set(actor=None, customer=customer_a, meter=calls, limit="10", measure="money")
    assert refused.value.code == "meter_not_priced"
    with pytest.raises(InvalidInput) as refused:
        services.cap_set(actor=None, customer=customer_a, meter=calls, limit="10", measure="euros")
    assert refused.value.field == "measure"

"""Golden invoices through the whole path: catalog, subscription, raw events, period close.

The rating engine has its own exhaustive tests (test_rating*.py); these prove the pieces
around it — prices from the catalog, usage from the batch track, commitment balances
carried from invoice to invoice — produce the invoice a finance person would compute.
"""

from datetime import UTC, datetime, timedelta

import pytest

from invoicing import services
from tests.accounts.factories import CustomerFactory
from tests.invoicing.factories import flat, ingest_usage, plan_version, subscribe
from tests.metering.factories import data_meter

pytestmark = pytest.mark.django_db

OCT = datetime(2026, 10, 1, tzinfo=UTC)


def month(n: int) -> datetime:
    """The first of the n-th month after October 2026."""
    index = 2026 * 12 + 9 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def per_gb(meter, unit_price: str, **extra) -> dict:
    return {
        "kind": "usage",
        "meter": meter.code,
        "pricing_model": "per_unit",
        "unit_price": unit_price,
        **extra,
    }


def close_month(subscription, n: int, gb: str | None, meter, customer):
    """Ingest ``gb`` during month n, close it, finalize it; the invoice's line amounts."""
    if gb is not None:
        ingest_usage(
            customer, meter, [month(n) + timedelta(days=3)], now=month(n + 1), prefix=f"m{n}", gb=gb
        )
    invoice = services.period_close(subscription_id=subscription.pk, now=month(n + 1))
    invoice = services.invoice_finalize(
        actor=None, invoice=invoice, now=month(n + 1) + timedelta(hours=2)
    )
    return invoice, [(line.kind, line.amount_minor) for line in invoice.lines.all()]


def test_a_prepaid_commitment_is_drawn_down_across_months_then_overage_is_billed():
    customer = CustomerFactory()
    meter = data_meter()
    # $1,200 prepaid per 12 months, consumed by data at $0.01 per GB.
    version = plan_version(
        code="enterprise",
        components=[
            per_gb(meter, "0.01"),
            {"kind": "commitment", "amount": "1200.00", "commitment_months": 12},
        ],
    )
    subscription = subscribe(customer, version, at=OCT)

    october, lines = close_month(subscription, 0, "50000", meter, customer)
    # $500 of usage, all drawn from the $1,200 paid up front.
    assert lines == [("usage", 50000), ("commitment_fee", 120000), ("commitment_drawdown", -50000)]
    assert (october.total_minor, october.commitment_balance_after_minor) == (120000, 70000)

    november, lines = close_month(subscription, 1, "60000", meter, customer)
    assert lines == [("usage", 60000), ("commitment_drawdown", -60000)]
    assert (november.total_minor, november.commitment_balance_after_minor) == (0, 10000)

    december, lines = close_month(subscription, 2, "30000", meter, customer)
    # $100 left covers part of $300: $200 overage.
    assert lines == [("usage", 30000), ("commitment_drawdown", -10000)]
    assert (december.total_minor, december.commitment_balance_after_minor) == (20000, 0)

    # Twelve months after the start a new term begins: the fee again, a fresh balance.
    for n in range(3, 12):
        close_month(subscription, n, None, meter, customer)
    renewal, lines = close_month(subscription, 12, "1000", meter, customer)
    assert lines == [("usage", 1000), ("commitment_fee", 120000), ("commitment_drawdown", -1000)]
    assert renewal.commitment_balance_after_minor == 119000


def test_minimum_spend_is_trued_up_and_a_maximum_caps_the_invoice():
    meter = data_meter()
    small = CustomerFactory()
    big = CustomerFactory()
    version = plan_version(
        code="bounded",
        components=[
            per_gb(meter, "0.01"),
            {"kind": "minimum_spend", "amount": "100.00"},
            {"kind": "maximum", "amount": "500.00"},
        ],
    )
    quiet = subscribe(small, version, at=OCT)
    busy = subscribe(big, version, at=OCT)

    _, lines = close_month(quiet, 0, "3000", meter, small)
    assert lines == [("usage", 3000), ("minimum_true_up", 7000)]  # $30 used, $100 minimum

    invoice, lines = close_month(busy, 0, "80000", meter, big)
    assert lines == [("usage", 80000), ("maximum_adjustment", -30000)]  # $800 capped at $500
    assert invoice.total_minor == 50000


def test_jpy_has_no_minor_unit_and_tiers_meet_exactly_at_their_edges():
    meter = data_meter()
    version = plan_version(
        code="tokyo",
        currency="JPY",
        components=[
            flat("9800"),
            per_gb(
                meter,
                "0",
                pricing_model="graduated",
                tiers=[
                    {"up_to": "1000", "unit_price": "1.5"},
                    {"up_to": None, "unit_price": "1.2"},
                ],
            ),
        ],
    )
    at_edge, one_past = CustomerFactory(currency="JPY"), CustomerFactory(currency="JPY")
    first = subscribe(at_edge, version, at=OCT)
    second = subscribe(one_past, version, at=OCT)

    invoice, lines = close_month(first, 0, "1000", meter, at_edge)
    assert lines == [("flat_fee", 9800), ("usage", 1500)]  # 1,000 x ¥1.5
    assert invoice.lines.get(kind="usage").tiers[0]["quantity"] == "1000"

    invoice, lines = close_month(second, 0, "1001", meter, one_past)
    # ¥1,500 + 1 x ¥1.2 = ¥1,501.2 -> ¥1,501 (rounded once, half-up, no minor unit).
    assert lines == [("flat_fee", 9800), ("usage", 1501)]
    assert [t["quantity"] for t in invoice.lines.get(kind="usage").tiers] == ["1000", "1"]

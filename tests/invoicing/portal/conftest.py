"""Billed customers for the billing pages' tests, built through the real services.

Customer A (Europe/Berlin, USD) subscribed on 1 October 2026 to a plan of $99 a month
plus API calls on graduated tiers (the first 50 free, the next 50 at $0.01, then $0.005).
October holds 60 calls — 40 in region eu, 20 in us — one call voided before the close,
and A's November has begun. October is closed and finalized: INV-…-000001, $99.10.
After it, one more October call arrives late, and a November call: neither is October's.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from invoicing import services
from invoicing.models import Invoice, InvoiceLine
from metering import services as metering_services
from tests.accounts.portal.helpers import member
from tests.invoicing.factories import flat, ingest_usage, plan_version, subscribe
from tests.metering.factories import api_calls_meter

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
INGEST_NOW = datetime(2026, 11, 21, tzinfo=UTC)
FINALIZED_AT = NOV + timedelta(hours=2)


@dataclass
class Billed:
    customer: object
    subscription: object
    invoice: Invoice
    flat_line: InvoiceLine
    usage_line: InvoiceLine


def graduated(meter) -> dict:
    return {
        "kind": "usage",
        "meter": meter.code,
        "pricing_model": "graduated",
        "tiers": [
            {"up_to": "50", "unit_price": "0"},
            {"up_to": "100", "unit_price": "0.01"},
            {"up_to": None, "unit_price": "0.005"},
        ],
    }


@pytest.fixture
def meter(db):
    return api_calls_meter()


@pytest.fixture
def growth(meter):
    return plan_version(components=[flat("99.00"), graduated(meter)])


def october(count: int, *, offset_hours: int = 0) -> list[datetime]:
    step = (NOV - OCT) / count
    return [OCT + step * i + timedelta(hours=offset_hours) for i in range(count)]


def close_and_finalize(subscription, *, at: datetime = NOV) -> Invoice:
    invoice = services.period_close(subscription_id=subscription.pk, now=at)
    return services.invoice_finalize(actor=None, invoice=invoice, now=at + timedelta(hours=2))


@pytest.fixture
def billed_a(customer_a, meter, growth) -> Billed:
    a = customer_a
    subscription = subscribe(a, growth, at=OCT)
    ingest_usage(a, meter, october(40), now=INGEST_NOW, prefix="oct-eu", region="eu")
    ingest_usage(
        a, meter, october(21, offset_hours=5), now=INGEST_NOW, prefix="oct-us", region="us"
    )
    # Voided before the close: never billed.
    metering_services.events_void(
        actor=None, customer=a, idempotency_keys=["oct-us-20"], reason="test traffic"
    )
    invoice = close_and_finalize(subscription)
    # After the close: a late October call, and November's first.
    ingest_usage(a, meter, [OCT + timedelta(days=20)], now=INGEST_NOW, prefix="late", region="eu")
    ingest_usage(a, meter, [NOV + timedelta(days=1)], now=INGEST_NOW, prefix="nov", region="eu")
    lines = {line.kind: line for line in invoice.lines.select_related("meter")}
    return Billed(a, subscription, invoice, lines["flat_fee"], lines["usage"])


@pytest.fixture
def billed_b(customer_b, meter, growth) -> Billed:
    b = customer_b
    subscription = subscribe(b, growth, at=OCT)
    ingest_usage(b, meter, october(7), now=INGEST_NOW, prefix="beta", endpoint="/beta-only")
    invoice = close_and_finalize(subscription)
    lines = {line.kind: line for line in invoice.lines.select_related("meter")}
    return Billed(b, subscription, invoice, lines["flat_fee"], lines["usage"])


@pytest.fixture
def finance_a(customer_a):
    return member(customer_a, "finance", user__email="ap@alpha.example.com")

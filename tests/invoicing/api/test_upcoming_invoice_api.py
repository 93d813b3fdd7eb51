"""/api/v1/customers/{external_id}/upcoming-invoice: the current period, rated so far."""

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from tests.accounts.api.support import assert_error
from tests.accounts.factories import CustomerFactory
from tests.invoicing.factories import flat, ingest_usage, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter

from . import customer_client, operator, upcoming

pytestmark = pytest.mark.django_db

NOV = datetime(2026, 11, 1, tzinfo=UTC)
# Half of November (30 days) has gone by.
NOW = datetime(2026, 11, 16, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)


@pytest.fixture
def meter():
    return api_calls_meter()


@pytest.fixture
def growth(meter):
    # $99 a month, API calls at $0.002 after 1,000 free.
    return plan_version(components=[flat("99.00"), per_unit(meter, "0.002", included="1000")])


@pytest.fixture
def subscribed(customer_a, meter, growth):
    subscription = subscribe(customer_a, growth, at=NOV)
    step = (NOW - NOV) / 1500
    ingest_usage(customer_a, meter, [NOV + step * i for i in range(1500)], now=NOW)
    return subscription


def test_the_upcoming_invoice_rates_usage_so_far_and_projects_the_period(customer_a, subscribed):
    response = customer_client(customer_a).get(upcoming("alpha"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: v for k, v in body.items() if k != "lines"} == {
        "customer": "alpha",
        "subscription": subscribed.pk,
        "plan": "growth",
        "version": 1,
        "currency": "USD",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "as_of": "2026-11-16T00:00:00Z",
        # $99 + (1,500 - 1,000) x $0.002 = $100.00
        "total_minor": 10000,
        # 3,000 calls by the end of the month at this pace: $99 + 2,000 x $0.002 = $103.00
        "projected_total_minor": 10300,
    }
    flat_fee, usage = body["lines"]
    assert (flat_fee["kind"], flat_fee["amount_minor"]) == ("flat_fee", 9900)
    assert {k: usage[k] for k in ("kind", "meter", "quantity", "included_units", "unit_price")} == {
        "kind": "usage",
        "meter": "api_call",
        "quantity": "1500",
        "included_units": "1000",
        "unit_price": "0.002",
    }
    assert usage["amount_minor"] == 100
    assert "id" not in usage  # not an invoice line yet


def test_operators_read_any_customers_upcoming_invoice(subscribed):
    assert operator().get(upcoming("alpha")).json()["total_minor"] == 10000


def test_another_customers_upcoming_invoice_is_a_404(customer_a, customer_b, growth, subscribed):
    subscribe(customer_b, growth, at=NOV)
    client = customer_client(customer_a)
    assert_error(client.get(upcoming("beta")), 404, "not_found")
    assert_error(client.get(upcoming("nobody")), 404, "not_found")


def test_an_external_id_with_a_nul_is_a_404_not_a_crash(customer_a, subscribed):
    for client in (operator(), customer_client(customer_a)):
        assert_error(client.get(upcoming("al%00pha")), 404, "not_found")


def test_no_subscription_no_upcoming_invoice(db):
    CustomerFactory(external_id="idle")
    assert_error(operator().get(upcoming("idle")), 404, "no_subscription")


def test_the_upcoming_invoice_needs_invoices_read(customer_a, subscribed):
    client = customer_client(customer_a, scopes=["usage:read"])
    assert_error(client.get(upcoming("alpha")), 403, "insufficient_scope")


def test_after_cancel_now_the_period_ends_at_the_cancel(customer_a, subscribed):
    operator().post(
        f"/api/v1/subscriptions/{subscribed.pk}/cancel", {"at_period_end": False}, format="json"
    )
    body = operator().get(upcoming("alpha")).json()
    assert body["period_end"] == "2026-11-16T00:00:00Z"
    # Half of the $99 fee, plus the usage so far, which is all the period will have.
    assert body["projected_total_minor"] == body["total_minor"] == 4950 + 100

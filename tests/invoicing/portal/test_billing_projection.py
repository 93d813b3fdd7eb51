"""The billing page's projection: the projected-cost hook's range (alerts registers the
spend forecast) when a provider answers for the current period, else the straight line."""

import logging
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alerts.selectors.outlook import projected_cost, spend_forecast
from invoicing import hooks, selectors
from invoicing.currency import format_money
from tests.accounts.portal.helpers import signed_in
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import event
from tests.metering.portal.helpers import send

pytestmark = pytest.mark.django_db

BILLING = reverse("billing:home")


def calls(customer, days: range, per_day, prefix="c") -> None:
    now = timezone.now()
    send(
        *(
            event(
                customer,
                f"{prefix}{day}-{i}",
                ts=(now - timedelta(days=day, seconds=i)).isoformat(),
                region="eu",
            )
            for day in days
            for i in range(per_day(day))
        )
    )


@pytest.fixture
def busy_a(customer_a, meter):
    """Customer A, subscribed ten days ago at 20.00 USD plus 10 cents a call, with four
    weeks of growing usage (20 to 47 calls a day)."""
    now = timezone.now()
    type(customer_a).objects.filter(pk=customer_a.pk).update(created_at=now - timedelta(days=60))
    customer_a.refresh_from_db()
    version = plan_version(code="metered", components=[flat("20.00"), per_unit(meter, "0.10")])
    subscribe(customer_a, version, at=now - timedelta(days=10))
    calls(customer_a, range(1, 29), lambda day: 48 - day)
    return customer_a


@pytest.fixture
def without_forecasts():
    hooks.unregister(projected_cost)
    yield
    hooks.register_projected_cost(projected_cost)


def shown(page: str, testid: str) -> str | None:
    match = re.search(rf'data-testid="{testid}">([^<]+)<', page)
    return match.group(1) if match else None


def test_alerts_registers_the_projected_cost_provider():
    assert projected_cost in hooks._projected_cost_providers


def test_the_projection_is_the_forecast_with_its_range(client, owner_a, busy_a):
    page = signed_in(client, owner_a).get(BILLING).content.decode()

    spend = spend_forecast(customer=busy_a, now=timezone.now())
    assert spend.total.p10 < spend.total.p50 < spend.total.p90
    assert shown(page, "projected-total") == format_money(spend.total.p50, "USD")
    low = format_money(spend.total.p10, "USD").removesuffix(" USD")
    assert shown(page, "projected-range") == (
        f"Likely {low} – {format_money(spend.total.p90, 'USD')}"  # noqa: RUF001
    )
    assert "Forecast from your daily usage" in page and "straight-line" not in page
    # The invoice so far is unchanged.
    upcoming = selectors.upcoming_invoice(customer=busy_a, now=timezone.now())
    assert shown(page, "upcoming-total") == format_money(upcoming.total_minor, "USD")
    assert spend.so_far_minor == upcoming.total_minor


def test_without_a_provider_the_straight_line_stands(client, owner_a, busy_a, without_forecasts):
    page = signed_in(client, owner_a).get(BILLING).content.decode()

    upcoming = selectors.upcoming_invoice(customer=busy_a, now=timezone.now())
    assert shown(page, "projected-total") == format_money(upcoming.projected_total_minor, "USD")
    assert shown(page, "projected-range") is None
    assert "straight-line projection" in page and "Forecast from" not in page


def test_an_answer_for_another_period_is_not_shown(client, owner_a, busy_a, without_forecasts):
    def stale(customer, now):
        found = projected_cost(customer, now)
        return found._replace(period_start=found.period_start - timedelta(days=30))

    hooks.register_projected_cost(stale)
    try:
        page = signed_in(client, owner_a).get(BILLING).content.decode()
    finally:
        hooks.unregister(stale)

    assert "straight-line projection" in page and shown(page, "projected-range") is None


def test_a_failing_provider_is_logged_and_the_page_falls_back(
    client, owner_a, busy_a, without_forecasts, caplog
):
    def broken(customer, now):
        raise RuntimeError("no forecast today")

    hooks.register_projected_cost(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="invoicing.hooks"):
            response = signed_in(client, owner_a).get(BILLING)
    finally:
        hooks.unregister(broken)

    assert response.status_code == 200
    assert "straight-line projection" in response.content.decode()
    assert "no forecast today" in caplog.text


def test_a_period_sure_of_its_end_shows_no_range(client, owner_a, customer_a, meter):
    """A plan of flat fees only: nothing to forecast, the projection is the fee."""
    subscribe(customer_a, plan_version(code="flat", components=[flat("49.00")]), at=timezone.now())

    page = signed_in(client, owner_a).get(BILLING).content.decode()

    assert shown(page, "projected-total") == "49.00 USD"
    assert shown(page, "projected-range") is None
    assert "Forecast from your daily usage" in page


def test_queries_do_not_grow_with_usage_history(client, owner_a, busy_a):
    signed_in(client, owner_a)
    client.get(BILLING)  # warm the session
    with CaptureQueriesContext(connection) as before:
        client.get(BILLING)
    # The forecast reads per metered component: its billing period, a daily series and two
    # totals; the rating: the subscription, its phases, the carried balance, the prices.

    calls(busy_a, range(29, 57), lambda day: 5, prefix="older")  # four more weeks
    with CaptureQueriesContext(connection) as after:
        page = client.get(BILLING).content.decode()
    assert len(after) == len(before)
    assert shown(page, "projected-range") is not None

"""The usage dashboard shows the invoice so far and where it is heading: invoicing answers
metering's spend hook with the same projection as the billing page."""

import logging
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from invoicing import selectors as invoicing
from invoicing.apps import dashboard_spend
from invoicing.currency import format_money
from metering import hooks
from tests.accounts.portal.helpers import signed_in
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, event
from tests.metering.portal.helpers import send

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("usage:dashboard")
SPEND = reverse("usage:spend")


@pytest.fixture
def subscribed_a(customer_a):
    """Customer A on 49 USD a month plus 0.01 USD a call, with three weeks of calls."""
    type(customer_a).objects.filter(pk=customer_a.pk).update(
        created_at=timezone.now() - timedelta(days=60)
    )
    customer_a.refresh_from_db()
    calls = api_calls_meter()
    version = plan_version(components=[flat("49"), per_unit(calls, "0.01")])
    now = timezone.now()
    subscribe(customer_a, version, at=now - timedelta(days=25))  # a period of 5 days to go
    send(
        *(
            event(customer_a, f"d{day}-{i}", ts=(now - timedelta(days=day, seconds=i)).isoformat())
            for day in range(1, 22)
            for i in range(20 + day)
        )
    )
    return customer_a


def test_the_dashboard_shows_the_invoice_so_far_and_its_projected_range(
    client, owner_a, subscribed_a
):
    client = signed_in(client, owner_a)
    dashboard = client.get(DASHBOARD).content.decode()
    assert f'hx-get="{SPEND}"' in dashboard  # loads after the page
    assert "{#" not in dashboard and "{%" not in dashboard  # no template text leaks
    page = client.get(SPEND).content.decode()

    projection = invoicing.projected_invoice(customer=subscribed_a, now=timezone.now())
    assert projection.by_forecast  # alerts answers invoicing's projected-cost hook
    currency = projection.currency
    assert 'data-testid="kpi-spend"' in page
    assert format_money(projection.upcoming.total_minor, currency) in page
    assert f"Projected {format_money(projection.projected_minor, currency)}" in page
    assert f"(likely {projection.range_text})" in page


def test_without_a_subscription_there_is_no_invoice_to_show(client, owner_a, customer_a):
    page = signed_in(client, owner_a).get(SPEND).content.decode()
    assert 'data-testid="kpi-spend"' not in page


def test_a_failing_spend_provider_leaves_the_page_working(
    client, owner_a, subscribed_a, caplog, monkeypatch
):
    def broken(customer, now):
        raise RuntimeError("rating engine down")

    hooks.unregister(dashboard_spend)
    hooks.register_spend_outlook(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="metering.hooks"):
            response = signed_in(client, owner_a).get(SPEND)
    finally:
        hooks.unregister(broken)
        hooks.register_spend_outlook(dashboard_spend)
    assert response.status_code == 200
    assert 'data-testid="kpi-spend"' not in response.content.decode()
    assert "spend provider" in caplog.text


def test_the_card_reads_a_bounded_number_of_queries(
    client, owner_a, subscribed_a, django_assert_max_num_queries
):
    signed_in(client, owner_a).get(SPEND)
    # Session, user, membership, the layout's banner and badge; the upcoming invoice and
    # its forecast rating each read the subscription with its phases, versions, plan,
    # carried balance and prices (6 each) and the meter's usage; the forecast reads the
    # meter's period, a daily series and two totals.
    with django_assert_max_num_queries(5 + 2 * 6 + 2 + 4):
        client.get(SPEND)

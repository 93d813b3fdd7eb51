"""The usage dashboard on billing periods: invoicing tells metering the customer's current
period through ``metering.hooks.billing_period``; without one, the calendar month."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from invoicing.apps import current_billing_period
from metering import hooks, selectors
from metering.selectors import current_period, month_start
from tests.accounts.portal.helpers import signed_in
from tests.invoicing.factories import subscribe
from tests.invoicing.portal.conftest import NOV, OCT
from tests.metering.portal.helpers import at, send

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("usage:dashboard")


def big_number(page: str, code: str) -> str:
    return re.search(rf'data-meter="{code}">([^<]+)<', page).group(1)


def test_invoicing_registers_its_provider_on_start_up():
    assert current_billing_period in hooks._billing_period_providers


def test_the_period_is_the_subscriptions_current_one(customer_a, growth):
    assert hooks.billing_period(customer_a, NOV) is None  # not subscribed

    subscribe(customer_a, growth, at=OCT + timedelta(days=14, hours=9))

    oct_15 = OCT + timedelta(days=14, hours=9)
    nov_15 = datetime(2026, 11, 15, 9, tzinfo=UTC)
    assert hooks.billing_period(customer_a, OCT + timedelta(days=20)) == (oct_15, nov_15)
    # The period has ended but the close job has not run yet: the next one has begun.
    assert hooks.billing_period(customer_a, nov_15 + timedelta(minutes=2)) == (
        nov_15,
        datetime(2026, 12, 15, 9, tzinfo=UTC),
    )
    # Before the subscription started, there is no billing period.
    assert hooks.billing_period(customer_a, OCT) is None


def test_a_provider_that_misses_now_is_not_used(customer_a):
    def wrong(customer, now):
        return now + timedelta(days=1), now + timedelta(days=2)

    hooks.register_billing_period(wrong)
    try:
        hooks._billing_period_providers.insert(0, hooks._billing_period_providers.pop())
        assert hooks.billing_period(customer_a, NOV) is None
    finally:
        hooks.unregister(wrong)
    assert wrong not in hooks._billing_period_providers


def test_the_dashboard_shows_the_billing_period_when_subscribed(client, owner_a, meter, growth):
    a = owner_a.customer
    now = timezone.now()
    started = now - timedelta(days=3)
    subscribe(a, growth, at=started)
    send(
        at(a, "before", "api_call", now - timedelta(days=5), region="eu"),
        at(a, "in-1", "api_call", now - timedelta(days=2), region="eu"),
        at(a, "in-2", "api_call", now - timedelta(hours=1), region="us"),
    )

    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    assert big_number(page, "api_call") == "2"
    total = selectors.usage_total(customer=a, meter=meter, start=started, end=now)
    assert total == 2
    assert "Events counted this billing period" in page
    assert "Per day this billing period" in page and "By region this billing period" in page
    assert "this month" not in page.replace("Last month", "")
    zone = ZoneInfo(a.timezone)
    lede = f"has used in the current billing period, {started.astimezone(zone):%b} "
    assert lede in page
    period = current_period(a, now)
    assert period.billing and period.start == started.astimezone(zone)
    events_link = f"?meter=api_call&amp;start={started.astimezone(zone):%Y-%m-%d}"
    assert events_link in page


def test_without_a_subscription_the_dashboard_shows_the_calendar_month(client, owner_a, meter):
    a = owner_a.customer
    now = timezone.now()
    send(at(a, "now", "api_call", now - timedelta(minutes=5), region="eu"))

    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    assert "Events counted this month" in page and "billing period" not in page
    zone = ZoneInfo(a.timezone)
    month = month_start(now, zone)
    assert f"has used in {month:%B %Y}, the current period" in page
    period = current_period(a, now)
    assert not period.billing and period.start == month


def test_an_ended_subscription_falls_back_to_the_month(customer_a, growth):
    subscription = subscribe(customer_a, growth, at=OCT)
    subscription.current_period_end = None  # its last period is closed
    subscription.save(update_fields=["current_period_end"])

    now = timezone.now()
    assert hooks.billing_period(customer_a, now) is None
    assert not current_period(customer_a, now).billing


def test_the_dashboard_stays_bounded_with_a_subscription(
    client, owner_a, meter, growth, django_assert_max_num_queries
):
    a = owner_a.customer
    now = timezone.now()
    subscribe(a, growth, at=now - timedelta(days=3))
    send(at(a, "in-1", "api_call", now - timedelta(days=1), region="eu", endpoint="/v1"))
    signed_in(client, owner_a)
    client.get(DASHBOARD)
    # As tests/metering/portal: per meter a total, two series and a breakdown per dimension,
    # and the forecast (its billing period, a daily series, two totals); per page the
    # session, user, membership, meters and one billing-period lookup; the layout's alert
    # banner and unread badge (alerts.context_processors).
    with django_assert_max_num_queries(3 + len(meter.group_by) + 4 + 5 + 2):
        page = client.get(DASHBOARD).content.decode()
    assert "By endpoint this billing period" in page

"""Reads and writes behind the notification center: unread counts, the banner's choice,
and marking alerts seen in one statement, only ever within the member's customer."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.roles import Role
from alerts import selectors, services
from alerts.models import AlertSeen
from tests.accounts.portal.helpers import member
from tests.alerts.alert_factories import make_alert

pytestmark = pytest.mark.django_db


def test_marking_seen_is_one_statement_idempotent_and_per_user(
    customer_a, owner_a, django_assert_num_queries
):
    alerts = [make_alert(customer_a, title=f"A{n}") for n in range(3)]
    colleague = member(customer_a, Role.VIEWER)

    with django_assert_num_queries(1):
        marked = services.alerts_mark_seen(membership=owner_a, alert_ids=[a.pk for a in alerts])

    assert marked == 3
    assert services.alerts_mark_seen(membership=owner_a, alert_ids=[alerts[0].pk]) == 0
    assert selectors.unread_alert_count(membership=owner_a) == 0
    assert selectors.unread_alert_count(membership=colleague) == 3


def test_marking_seen_ignores_ids_of_another_customer(owner_a, customer_b):
    theirs = make_alert(customer_b)

    assert services.alerts_mark_seen(membership=owner_a, alert_ids=[theirs.pk]) == 0
    assert services.alerts_mark_seen(membership=owner_a) == 0
    assert not AlertSeen.objects.exists()


def test_marking_nothing_costs_nothing(owner_a, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert services.alerts_mark_seen(membership=owner_a, alert_ids=[]) == 0


def test_mark_all_marks_every_alert_of_the_customer_at_once(
    customer_a, owner_a, customer_b, django_assert_num_queries
):
    for n in range(5):
        make_alert(customer_a, title=f"A{n}")
    make_alert(customer_b)

    with django_assert_num_queries(1):
        assert services.alerts_mark_seen(membership=owner_a) == 5
    assert AlertSeen.objects.filter(alert__customer=customer_b).count() == 0


def test_the_banner_picks_the_newest_open_unseen_warning_or_critical(customer_a, owner_a):
    now = timezone.now()
    older = make_alert(customer_a, severity="warning", triggered_at=now - timedelta(hours=3))
    critical = make_alert(customer_a, severity="critical", triggered_at=now - timedelta(hours=2))
    make_alert(customer_a, severity="info", triggered_at=now - timedelta(hours=1))
    make_alert(customer_a, severity="critical", status="resolved", triggered_at=now)

    assert selectors.banner_alert(membership=owner_a) == critical
    services.alerts_mark_seen(membership=owner_a, alert_ids=[critical.pk])
    assert selectors.banner_alert(membership=owner_a) == older
    services.alerts_mark_seen(membership=owner_a, alert_ids=[older.pk])
    assert selectors.banner_alert(membership=owner_a) is None


def test_the_banner_never_shows_another_customers_alert(owner_a, customer_b):
    make_alert(customer_b, severity="critical")
    assert selectors.banner_alert(membership=owner_a) is None


def test_the_unread_count_is_one_query_and_stops_at_its_limit(
    customer_a, owner_a, django_assert_num_queries
):
    for n in range(selectors.history.UNREAD_COUNT_LIMIT + 5):
        make_alert(customer_a, title=f"A{n}", severity="info")

    with django_assert_num_queries(1):
        assert selectors.unread_alert_count(membership=owner_a) == 100


def test_the_history_filters_compose(customer_a, customer_b, owner_a):
    now = timezone.now()
    hit = make_alert(customer_a, kind="velocity", triggered_at=now - timedelta(days=1))
    make_alert(customer_a, kind="velocity", triggered_at=now - timedelta(days=5))
    make_alert(customer_a, kind="anomaly", triggered_at=now - timedelta(days=1))
    make_alert(customer_b, kind="velocity", triggered_at=now - timedelta(days=1))

    found = selectors.alert_list(
        principal=owner_a,
        kind="velocity",
        status="open",
        since=now - timedelta(days=2),
        until=now,
    )

    assert list(found) == [hit]

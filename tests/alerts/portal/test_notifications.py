"""The notification center, the banner on every page, the unread badge and the alert
history: what each member sees, what marks an alert seen, and the query budget."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.context_processors import portal
from accounts.models import AuditLog
from accounts.roles import Role
from alerts.context_processors import alerts as alerts_context
from alerts.models import AlertSeen
from tests.accounts.factories import UserFactory
from tests.accounts.portal.helpers import HTMX, member, signed_in
from tests.alerts.alert_factories import make_alert, make_delivery
from tests.metering.factories import api_calls_meter, data_meter

pytestmark = pytest.mark.django_db

NOTIFICATIONS = reverse("alerts:notifications")
HISTORY = reverse("alerts:history")
READ_ALL = reverse("alerts:notifications_read")
DASHBOARD = reverse("portal:team")  # any portal page shows the banner and the badge


def unread_badge(html: str) -> str | None:
    """The badge's text, or None when it is hidden (nothing unread)."""
    match = re.search(r'<span id="unread-count"[^>]*?(hidden)?[^>]*>([^<]*)</span>', html)
    assert match, "no unread badge on the page"
    return None if " hidden" in match.group(0) else match.group(2)


def banner(html: str) -> str:
    match = re.search(r'<div id="alert-banner"[^>]*>(.*?)</div>\s*<div id="flash"', html, re.S)
    assert match, "no banner slot on the page"
    return match.group(1)


@pytest.fixture
def alerts_a(customer_a):
    now = timezone.now()
    return {
        "info": make_alert(
            customer_a,
            title="Data processed is rising",
            severity="info",
            meter=data_meter(),
            kind="velocity",
            triggered_at=now - timedelta(hours=3),
        ),
        "warning": make_alert(
            customer_a,
            title="API calls passed 80%",
            meter=api_calls_meter(),
            triggered_at=now - timedelta(hours=2),
        ),
        "resolved": make_alert(
            customer_a,
            title="Spend spike on Tuesday",
            severity="critical",
            kind="anomaly",
            status="resolved",
            triggered_at=now - timedelta(hours=1),
            resolved_at=now,
        ),
    }


# --- Notification center ----------------------------------------------------------------


def test_the_center_lists_newest_first_highlights_unread_and_marks_them_seen(
    client, owner_a, alerts_a
):
    signed_in(client, owner_a)
    assert unread_badge(client.get(DASHBOARD).content.decode()) == "3"

    page = client.get(NOTIFICATIONS).content.decode()

    titles = re.findall(r'<a href="/alerts/history/\d+/">([^<]+)</a>', page)
    assert titles[:3] == [
        "Spend spike on Tuesday",
        "API calls passed 80%",
        "Data processed is rising",
    ]
    assert page.count("is-unread") == 3  # highlighted this once
    assert unread_badge(page) is None  # and counted as seen already
    assert AlertSeen.objects.filter(user=owner_a.user).count() == 3
    again = client.get(NOTIFICATIONS).content.decode()
    assert "is-unread" not in again
    assert not AuditLog.objects.filter(action__startswith="alert").exists()


def test_seen_is_per_user(client, customer_a, owner_a, alerts_a):
    colleague = member(customer_a, Role.VIEWER)
    signed_in(client, owner_a).get(NOTIFICATIONS)

    page = signed_in(client, colleague).get(NOTIFICATIONS).content.decode()

    assert page.count("is-unread") == 3


def test_only_the_shown_page_is_marked_seen(client, customer_a, owner_a):
    now = timezone.now()
    for n in range(30):
        make_alert(
            customer_a, title=f"Alert {n}", severity="info", triggered_at=now - timedelta(minutes=n)
        )
    signed_in(client, owner_a)

    page = client.get(NOTIFICATIONS).content.decode()

    assert unread_badge(page) == "5"
    assert "Alert 24" in page and "Alert 25" not in page
    older = client.get(NOTIFICATIONS, {"page": 2}).content.decode()
    assert "Alert 29" in older and unread_badge(older) is None


def test_mark_all_read_with_htmx_updates_the_list_badge_and_banner(client, owner_a, alerts_a):
    signed_in(client, owner_a)
    assert "API calls passed 80%" in banner(client.get(DASHBOARD).content.decode())

    response = client.post(READ_ALL, headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section class="card" id="notifications"')
    assert "is-unread" not in body
    assert re.search(r'id="unread-count"[^>]*hx-swap-oob="true"[^>]*hidden', body)
    assert re.search(r'<div id="alert-banner" hx-swap-oob="true"></div>', body)
    assert "Marked 3 alerts as read." in body
    assert AlertSeen.objects.filter(user=owner_a.user).count() == 3


def test_mark_all_read_without_htmx_goes_back_to_the_center(client, owner_a, alerts_a):
    response = signed_in(client, owner_a).post(READ_ALL)

    assert response.status_code == 302 and response.url == NOTIFICATIONS
    assert AlertSeen.objects.count() == 3


def test_a_viewer_may_mark_alerts_read(client, customer_a, alerts_a):
    viewer = member(customer_a, Role.VIEWER)
    assert signed_in(client, viewer).post(READ_ALL).status_code == 302
    assert AlertSeen.objects.filter(user=viewer.user).count() == 3


def test_marking_all_read_touches_only_the_members_own_customer(
    client, owner_a, alerts_a, customer_b
):
    theirs = make_alert(customer_b, title="Beta alert")
    signed_in(client, owner_a).post(READ_ALL)

    assert not AlertSeen.objects.filter(alert=theirs).exists()
    assert "Beta alert" not in client.get(NOTIFICATIONS).content.decode()


def test_the_center_without_alerts_says_so(client, owner_a):
    page = signed_in(client, owner_a).get(NOTIFICATIONS).content.decode()
    assert "No alerts yet" in page
    assert unread_badge(page) is None


# --- Banner -----------------------------------------------------------------------------


def test_the_banner_shows_the_newest_open_unseen_warning_or_critical(client, owner_a, alerts_a):
    signed_in(client, owner_a)

    shown = banner(client.get(DASHBOARD).content.decode())

    # The resolved critical is newer and the info newer still than nothing: neither shows.
    assert "API calls passed 80%" in shown
    assert reverse("alerts:history_alert", args=[alerts_a["warning"].pk]) in shown


def test_dismissing_the_banner_marks_it_seen_and_shows_the_next(client, customer_a, owner_a):
    older = make_alert(
        customer_a, title="Older warning", triggered_at=timezone.now() - timedelta(1)
    )
    newer = make_alert(customer_a, title="Newer critical", severity="critical")
    signed_in(client, owner_a)
    assert "Newer critical" in banner(client.get(DASHBOARD).content.decode())

    response = client.post(reverse("alerts:alert_seen", args=[newer.pk]), headers=HTMX)

    body = response.content.decode()
    assert body.startswith('<div id="alert-banner">') and "Older warning" in body
    assert re.search(r'id="unread-count"[^>]*hx-swap-oob="true"[^>]*>1<', body)
    assert AlertSeen.objects.filter(alert=newer, user=owner_a.user).exists()
    client.post(reverse("alerts:alert_seen", args=[older.pk]), {"next": DASHBOARD})
    assert banner(client.get(DASHBOARD).content.decode()) == ""


def test_dismissing_without_htmx_returns_to_a_local_page_only(client, owner_a, alerts_a):
    signed_in(client, owner_a)
    url = reverse("alerts:alert_seen", args=[alerts_a["warning"].pk])

    assert client.post(url, {"next": DASHBOARD}).url == DASHBOARD
    assert client.post(url, {"next": "https://evil.example.com/"}).url == NOTIFICATIONS


def test_another_customers_alert_cannot_be_dismissed(client, owner_a, customer_b):
    theirs = make_alert(customer_b)
    response = signed_in(client, owner_a).post(reverse("alerts:alert_seen", args=[theirs.pk]))
    assert response.status_code == 404
    assert not AlertSeen.objects.exists()


# --- The context processor's cost ---------------------------------------------------------


def context_for(user, django_assert_num_queries, expected_queries: int) -> dict:
    request = RequestFactory().get("/")
    request.user = user
    portal(request)  # the layout's processor looks the membership up first
    with django_assert_num_queries(expected_queries):
        context = alerts_context(request)
        values = {name: value() for name, value in context.items()}
        values.update({name: value() for name, value in context.items()})  # read once
    return values


def test_the_banner_and_badge_cost_two_queries_per_page(
    owner_a, alerts_a, django_assert_num_queries
):
    values = context_for(owner_a.user, django_assert_num_queries, 2)

    assert values["unread_alerts"] == 3 and values["alert_banner"] == alerts_a["warning"]


def test_nothing_for_anonymous_or_staff_without_a_membership(db, django_assert_num_queries):
    assert context_for(AnonymousUser(), django_assert_num_queries, 0) == {}
    staff = UserFactory(is_staff=True)
    assert context_for(staff, django_assert_num_queries, 0) == {}


def test_nothing_for_a_pending_member(customer_a, alerts_a, django_assert_num_queries):
    pending = member(customer_a, Role.VIEWER, accepted_at=None)
    assert context_for(pending.user, django_assert_num_queries, 0) == {}


def test_the_badge_stops_counting_at_a_hundred(client, customer_a, owner_a):
    now = timezone.now()
    for n in range(101):
        make_alert(customer_a, severity="info", triggered_at=now - timedelta(minutes=n))
    assert unread_badge(signed_in(client, owner_a).get(DASHBOARD).content.decode()) == "99+"


def test_pages_cost_the_same_queries_with_many_alerts(
    client, customer_a, owner_a, django_assert_max_num_queries
):
    signed_in(client, owner_a)
    make_alert(customer_a)
    client.get(DASHBOARD)  # warm the session (the alert stays unread)
    # session, user, membership, the page's count and rows, marking seen, banner, badge
    with django_assert_max_num_queries(9) as few:
        client.get(NOTIFICATIONS)
    with django_assert_max_num_queries(9):
        client.get(HISTORY)
    for n in range(40):
        alert = make_alert(customer_a, title=f"More {n}", meter=api_calls_meter())
        make_delivery(alert)
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(NOTIFICATIONS)
    with django_assert_max_num_queries(9):
        client.get(HISTORY)


# --- History ----------------------------------------------------------------------------


def test_history_filters_by_status_kind_meter_and_dates(client, owner_a, alerts_a):
    signed_in(client, owner_a)

    def titles(**query) -> list[str]:
        response = client.get(HISTORY, query)
        assert response.status_code == 200
        return re.findall(
            r'<div class="cell-main">([^<]+?)(?: <span|</div>)', response.content.decode()
        )

    assert titles() == [
        "Spend spike on Tuesday",
        "API calls passed 80%",
        "Data processed is rising",
    ]
    assert titles(status="resolved") == ["Spend spike on Tuesday"]
    assert titles(kind="velocity") == ["Data processed is rising"]
    assert titles(meter="api_call") == ["API calls passed 80%"]
    assert titles(start="2001-01-01", end="2001-01-02") == []


def test_history_dates_are_whole_days_in_the_customers_zone(client, customer_a, owner_a):
    berlin = ZoneInfo(customer_a.timezone)
    make_alert(
        customer_a,
        title="Late on the 2nd",
        triggered_at=datetime(2026, 3, 2, 23, 30, tzinfo=berlin),
    )
    make_alert(
        customer_a,
        title="Early on the 3rd",
        triggered_at=datetime(2026, 3, 3, 0, 30, tzinfo=berlin),
    )
    signed_in(client, owner_a)

    page = client.get(HISTORY, {"start": "2026-03-03", "end": "2026-03-03"}).content.decode()

    assert "Early on the 3rd" in page and "Late on the 2nd" not in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"start": "yesterday"}, "Enter a date as YYYY-MM-DD."),
        ({"start": "2026-03-05", "end": "2026-03-01"}, "The end date is before the start date."),
        ({"status": "closed"}, "Select a valid choice."),
        ({"meter": "nope"}, "Select a valid choice."),
        ({"start": "1900-01-01"}, "Enter a date between 2000 and 2100."),
    ],
)
def test_bad_history_filters_are_explained(client, owner_a, alerts_a, query, message):
    response = signed_in(client, owner_a).get(HISTORY, query, headers=HTMX)

    assert response.status_code == 422
    assert message in response.content.decode()


def test_history_htmx_filtering_answers_with_the_list_only(client, owner_a, alerts_a):
    response = signed_in(client, owner_a).get(HISTORY, {"status": "open"}, headers=HTMX)

    body = response.content.decode()
    assert body.lstrip().startswith('<div id="history-list">') and "<html" not in body


def test_history_pages(client, customer_a, owner_a):
    now = timezone.now()
    for n in range(30):
        make_alert(
            customer_a, title=f"Alert {n}", severity="info", triggered_at=now - timedelta(minutes=n)
        )
    signed_in(client, owner_a)

    first = client.get(HISTORY, {"kind": "threshold"}).content.decode()
    second = client.get(HISTORY, {"kind": "threshold", "page": 2}).content.decode()

    assert "Alert 24" in first and "Alert 25" not in first
    assert "Alert 25" in second and "Alert 29" in second
    assert "kind=threshold&amp;page=2" in first


def test_an_alert_expands_with_its_evidence_deliveries_and_attempts(client, customer_a, owner_a):
    alert = make_alert(
        customer_a,
        title="API calls passed 80%",
        evidence={"usage": "80000", "cap": {"limit": "100000"}, "rate_per_day": 2500},
    )
    make_delivery(
        alert,
        status="failed",
        attempts=[("failed", 503), ("failed_permanent", 404)],
        last_error="Not Found",
    )
    signed_in(client, owner_a)

    response = client.get(reverse("alerts:history_alert", args=[alert.pk]), headers=HTMX)

    body = response.content.decode()
    assert "<html" not in body and 'id="alert-detail-' in body
    assert (
        "rate per day" in body
        and "2500" in body
        and "{&quot;limit&quot;: &quot;100000&quot;}" in body
    )
    assert "https://hooks.example.com/meterbook" in body
    assert "HTTP 503" in body and "HTTP 404" in body and "Failed" in body
    assert AlertSeen.objects.filter(alert=alert, user=owner_a.user).exists()
    full = client.get(reverse("alerts:history_alert", args=[alert.pk])).content.decode()
    assert "<html" in full and "API calls passed 80%" in full


def test_another_customers_alert_is_not_found_in_the_history(client, owner_a, customer_b):
    theirs = make_alert(customer_b, title="Beta alert")
    signed_in(client, owner_a)

    assert client.get(reverse("alerts:history_alert", args=[theirs.pk])).status_code == 404
    assert "Beta alert" not in client.get(HISTORY).content.decode()


@pytest.mark.parametrize(
    "role", [Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.FINANCE, Role.VIEWER]
)
def test_every_member_sees_notifications_and_history(client, customer_a, alerts_a, role):
    signed_in(client, member(customer_a, role))
    assert client.get(NOTIFICATIONS).status_code == 200
    assert client.get(HISTORY).status_code == 200
    assert (
        client.get(reverse("alerts:history_alert", args=[alerts_a["info"].pk])).status_code == 200
    )


def test_signed_out_visitors_are_sent_to_sign_in(client, alerts_a):
    for url in (NOTIFICATIONS, HISTORY, READ_ALL):
        response = client.get(url) if url != READ_ALL else client.post(url)
        assert response.status_code == 302 and "/login/" in response.url
    assert not AlertSeen.objects.exists()


def test_paging_the_center_with_htmx_refreshes_the_badge_out_of_band(client, customer_a, owner_a):
    now = timezone.now()
    for n in range(30):
        make_alert(
            customer_a, title=f"Alert {n}", severity="info", triggered_at=now - timedelta(minutes=n)
        )
    signed_in(client, owner_a).get(NOTIFICATIONS)

    body = client.get(NOTIFICATIONS, {"page": 2}, headers=HTMX).content.decode()

    assert body.lstrip().startswith('<section class="card" id="notifications"')
    assert "<html" not in body and body.count("is-unread") == 5
    assert re.search(r'id="unread-count"[^>]*hx-swap-oob="true"[^>]*hidden', body)

"""The usage dashboard: numbers from the selectors, plotly charts from our own static
files, the htmx refresh, bounded queries, empty states, roles and tenants."""

import re
from zoneinfo import ZoneInfo

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone

from accounts.roles import Role
from metering import selectors
from metering.charts import format_quantity
from metering.selectors import month_start
from tests.accounts.portal.helpers import HTMX, member, signed_in
from tests.metering.factories import (
    MeterFactory,
    api_calls_meter,
    data_meter,
    seats_meter,
    users_meter,
)
from tests.metering.portal.helpers import at, last_month, send, this_month

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("usage:dashboard")


@pytest.fixture
def meters(db):
    return {
        "api_call": api_calls_meter(),
        "data_processed": data_meter(),
        "active_seats": seats_meter(),
        "user_active": users_meter(),
    }


@pytest.fixture
def usage_a(customer_a, meters):
    """A's month so far: 3 calls, 3.75 GB, seats 10 then 12, users u1 and u2."""
    a = customer_a
    send(
        at(a, "c1", "api_call", this_month(a, 0.2), endpoint="/v1/search", region="eu"),
        at(a, "c2", "api_call", this_month(a, 0.4), endpoint="/v1/search", region="us"),
        at(a, "c3", "api_call", this_month(a, 0.6), endpoint="/v1/orders", region="eu"),
        at(a, "d1", "data_processed", this_month(a, 0.3), gb=1.5),
        at(a, "d2", "data_processed", this_month(a, 0.5), gb="2.25"),
        at(a, "s1", "active_seats", this_month(a, 0.1), seats=10),
        at(a, "s2", "active_seats", this_month(a, 0.7), seats=12),
        at(a, "u1", "user_active", this_month(a, 0.2), user_id="u1"),
        at(a, "u2", "user_active", this_month(a, 0.3), user_id="u2"),
        at(a, "u3", "user_active", this_month(a, 0.4), user_id="u1"),
        # Last month: in the history, not in this period's figures.
        at(a, "old1", "api_call", last_month(a), endpoint="/v1/search", region="eu"),
        at(a, "old2", "api_call", last_month(a), endpoint="/v1/search", region="eu"),
    )
    return a


def big_number(page: str, code: str) -> str:
    match = re.search(rf'data-meter="{code}">([^<]+)<', page)
    assert match, f"no big number for {code}"
    return match.group(1)


def test_big_numbers_are_the_selectors_totals_for_this_month(client, owner_a, usage_a, meters):
    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    now = timezone.now()
    start = month_start(now, ZoneInfo(usage_a.timezone))
    expected = {"api_call": "3", "data_processed": "3.75", "active_seats": "12", "user_active": "2"}
    for code, meter in meters.items():
        total = selectors.usage_total(customer=usage_a, meter=meter, start=start, end=now)
        assert big_number(page, code) == format_quantity(total) == expected[code]
    assert "Last month: 2 calls" in page


def test_breakdown_lists_each_dimension_with_values_and_shares(client, owner_a, usage_a):
    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    assert "By endpoint this month" in page
    assert "By region this month" in page
    # /v1/search 2 of 3 calls, /v1/orders 1 of 3.
    assert re.search(
        r'title="/v1/search">/v1/search</span>.*?class="num">2</td>\s*<td class="share">67%',
        page,
        re.S,
    )
    assert re.search(
        r'title="/v1/orders">/v1/orders</span>.*?class="num">1</td>\s*<td class="share">33%',
        page,
        re.S,
    )


def test_charts_are_plotly_drawn_from_our_own_static_files(client, owner_a, usage_a, meters):
    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', page)
    assert "/static/plotly/plotly.min.js" in scripts
    assert all(src.startswith("/static/") for src in scripts), scripts
    assert not re.search(r"https?://[^\"' ]*(cdn|plot\.ly|jsdelivr|unpkg)", page)
    for meter in meters.values():
        assert f'id="usage-daily-{meter.pk}-' in page
        assert f'id="usage-history-{meter.pk}-' in page
    # Count and sum meters draw the running total on a second axis; gauges do not.
    assert len(re.findall(r'"name":"Month to date \([^"]*\)","yaxis":"y2"', page)) == 2


def test_plotly_js_is_found_by_the_static_finders_and_only_that_file_of_the_wheel():
    path = finders.find("plotly/plotly.min.js")
    assert path is not None and path.endswith("package_data/plotly.min.js")

    listed = [
        (finder, name)
        for finder in finders.get_finders()
        for name, storage in finder.list([])
        if getattr(storage, "prefix", None) == "plotly"
    ]
    assert [name for _, name in listed] == ["plotly.min.js"]


def test_htmx_refresh_returns_only_the_live_part_with_fresh_numbers(client, owner_a, usage_a):
    signed_in(client, owner_a)
    client.get(DASHBOARD)
    send(at(usage_a, "c4", "api_call", this_month(usage_a, 0.9), endpoint="/v1/x", region="eu"))

    response = client.get(DASHBOARD, headers=HTMX)

    fragment = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in fragment and "<nav" not in fragment
    assert fragment.lstrip().startswith('<div id="usage-live"')
    assert 'hx-trigger="every 30s' in fragment
    assert big_number(fragment, "api_call") == "4"
    assert "Plotly.newPlot" in fragment


def test_the_full_page_polls_its_live_part(client, owner_a, usage_a):
    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    assert f'hx-get="{DASHBOARD}"' in page
    assert 'hx-swap="outerHTML"' in page
    assert page.count('id="usage-live"') == 1


def test_history_restore_gets_the_whole_page(client, owner_a, usage_a):
    response = signed_in(client, owner_a).get(
        DASHBOARD, headers={**HTMX, "HX-History-Restore-Request": "true"}
    )

    assert b"<html" in response.content


def test_queries_are_bounded_per_meter_not_per_data(
    client, owner_a, usage_a, meters, django_assert_max_num_queries
):
    signed_in(client, owner_a)
    client.get(DASHBOARD)  # warm the session
    # Per meter: total, daily series, monthly series, one breakdown per dimension; per count
    # or sum meter the forecast (alerts: its billing period, a daily series, two totals);
    # per page: session, user, membership, meters, the billing period, and the layout's
    # alert banner and unread badge (alerts.context_processors).
    per_meter = sum(3 + len(m.group_by) + 4 * m.is_additive for m in meters.values())
    with django_assert_max_num_queries(per_meter + 5 + 2):
        client.get(DASHBOARD)

    # Ten times the events (and more dimension values): the same number of queries.
    send(
        *(
            at(
                usage_a,
                f"more{i}",
                "api_call",
                this_month(usage_a, 0.5),
                endpoint=f"/e{i}",
                region=f"r{i}",
            )
            for i in range(30)
        )
    )
    with django_assert_max_num_queries(per_meter + 5 + 2):
        client.get(DASHBOARD)


def test_no_meters_shows_a_helpful_empty_state(client, owner_a):
    response = signed_in(client, owner_a).get(DASHBOARD)

    page = response.content.decode()
    assert response.status_code == 200
    assert "No meters yet" in page
    assert reverse("usage:events") in page
    assert "Plotly.newPlot" not in page


def test_a_meter_without_usage_says_so_instead_of_an_empty_chart(client, owner_a, meters):
    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    assert big_number(page, "api_call") == "0"
    assert "No api calls recorded this month yet." in page
    assert "No usage in the last twelve months." in page
    assert "Plotly.newPlot" not in page


def test_inactive_meters_are_not_shown(client, owner_a, meters):
    MeterFactory(code="retired_thing", name="Retired thing", is_active=False)

    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    assert "Retired thing" not in page


def test_a_meter_being_rebuilt_says_its_figures_may_be_incomplete(client, owner_a, meters):
    meters["api_call"].rebuild_status = "running"
    meters["api_call"].rebuild_progress = 40
    meters["api_call"].save()

    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    assert "Recalculating API calls from the raw events (40% done)" in page


@pytest.mark.parametrize("role", list(Role))
def test_every_member_role_may_view_usage(client, customer_a, usage_a, role):
    signed_in(client, member(customer_a, role))

    assert client.get(DASHBOARD).status_code == 200
    assert client.get(DASHBOARD, headers=HTMX).status_code == 200


def test_another_customers_usage_never_shows(client, owner_a, usage_a, customer_b, owner_b):
    b = customer_b
    send(
        *(
            at(b, f"b{i}", "api_call", this_month(b, 0.5), endpoint="/beta-only", region="b")
            for i in range(7)
        )
    )

    page_a = signed_in(client, owner_a).get(DASHBOARD).content.decode()
    page_b = signed_in(client, owner_b).get(DASHBOARD).content.decode()

    assert big_number(page_a, "api_call") == "3"
    assert "/beta-only" not in page_a
    assert big_number(page_b, "api_call") == "7"
    assert "/v1/search" not in page_b


def test_members_land_on_the_dashboard_and_it_leads_the_navigation(client, owner_a):
    signed_in(client, owner_a)

    assert client.get("/").url == DASHBOARD
    page = client.get(DASHBOARD).content.decode()
    nav = page[page.index('<nav class="nav"') :]
    links = re.findall(r'<a href="([^"]+)"', nav)
    assert links[:3] == [DASHBOARD, reverse("usage:events"), reverse("portal:team")]
    assert 'aria-current="page"' in nav[: nav.index(reverse("usage:events"))]


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get(DASHBOARD)

    assert response.status_code == 302
    assert response.url.startswith(reverse("portal:login"))

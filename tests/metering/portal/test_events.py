"""The events page: filters in the customer's time zone, keyset pages, inline form errors,
roles and tenants."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from accounts.roles import Role
from metering.views.events import PAGE_SIZE
from tests.accounts.portal.helpers import HTMX, member, signed_in
from tests.metering.factories import MeterFactory, api_calls_meter, data_meter
from tests.metering.portal.helpers import at, send

pytestmark = pytest.mark.django_db

EVENTS = reverse("usage:events")
BERLIN = ZoneInfo("Europe/Berlin")  # the factories' customer time zone
# The sample's first full day: three weeks back, so every event is in the past.
D0 = (datetime.now(BERLIN) - timedelta(days=21)).date()
D1, D2 = D0 + timedelta(days=1), D0 + timedelta(days=2)
EVE = D0 - timedelta(days=1)


def keys(response) -> list[str]:
    """Idempotency keys on the page, in order."""
    return re.findall(r'<td class="key-cell"><code title="([^"]+)"', response.content.decode())


def berlin(day, hour, minute=0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN)


@pytest.fixture
def sample(customer_a):
    api_calls_meter()
    data_meter()
    a = customer_a
    send(
        # 23:30 in Berlin is 21:30 or 22:30 UTC: still the day before D0 for this customer,
        # and 00:30 on D0 is still the day before in UTC.
        at(a, "eve-late", "api_call", berlin(EVE, 23, 30), endpoint="/a", region="eu"),
        at(a, "d0-early", "api_call", berlin(D0, 0, 30), endpoint="/a", region="us"),
        at(a, "d1", "api_call", berlin(D1, 12), endpoint="/b", region="eu"),
        at(a, "gb-d1", "data_processed", berlin(D1, 13), gb=2.5),
        at(a, "gb-d2", "data_processed", berlin(D2, 13), gb=1),
        at(a, "unmetered", "page_view", berlin(D2, 14), path="/pricing"),
    )
    return a


def test_all_events_newest_first(client, owner_a, sample):
    response = signed_in(client, owner_a).get(EVENTS)

    assert response.status_code == 200
    assert keys(response) == [
        "unmetered",
        "gb-d2",
        "gb-d1",
        "d1",
        "d0-early",
        "eve-late",
    ]
    page = response.content.decode()
    assert f"{D2} 14:00:00" in page  # shown in the customer's time zone
    assert "Europe/Berlin" in page


def test_filter_by_meter(client, owner_a, sample):
    response = signed_in(client, owner_a).get(EVENTS, {"meter": "data_processed"})

    assert keys(response) == ["gb-d2", "gb-d1"]


def test_filter_by_meter_applies_the_meters_own_property_filters(client, owner_a, customer_a):
    MeterFactory(
        code="eu_call", name="EU calls", filters=[{"property": "region", "values": ["eu"]}]
    )
    send(
        at(customer_a, "in", "eu_call", berlin(D1, 9), region="eu"),
        at(customer_a, "out", "eu_call", berlin(D1, 10), region="us"),
    )

    response = signed_in(client, owner_a).get(EVENTS, {"meter": "eu_call"})

    assert keys(response) == ["in"]


def test_date_range_is_whole_days_in_the_customers_time_zone(client, owner_a, sample):
    signed_in(client, owner_a)

    two_days = client.get(EVENTS, {"start": D0.isoformat(), "end": D1.isoformat()})
    eve = client.get(EVENTS, {"end": EVE.isoformat()})
    from_d2 = client.get(EVENTS, {"start": D2.isoformat()})

    assert keys(two_days) == ["gb-d1", "d1", "d0-early"]
    assert keys(eve) == ["eve-late"]
    assert keys(from_d2) == ["unmetered", "gb-d2"]


def test_filter_by_one_property_compares_its_text(client, owner_a, sample):
    signed_in(client, owner_a)

    assert keys(client.get(EVENTS, {"property": "region=eu"})) == ["d1", "eve-late"]
    assert keys(client.get(EVENTS, {"property": "gb=2.5"})) == ["gb-d1"]
    assert keys(client.get(EVENTS, {"property": " path = /pricing"})) == ["unmetered"]
    assert keys(client.get(EVENTS, {"property": "region=nowhere"})) == []


def test_filters_combine(client, owner_a, sample):
    response = signed_in(client, owner_a).get(
        EVENTS, {"meter": "api_call", "start": D0.isoformat(), "property": "endpoint=/a"}
    )

    assert keys(response) == ["d0-early"]
    assert b"Matching events" in response.content


def test_no_match_says_so(client, owner_a, sample):
    response = signed_in(client, owner_a).get(EVENTS, {"property": "region=mars"})

    assert b"No events match these filters." in response.content


def test_no_events_at_all_says_so(client, owner_a):
    response = signed_in(client, owner_a).get(EVENTS)

    assert b"No events yet." in response.content


def test_late_and_void_events_are_marked(client, owner_a, customer_a, sample):
    from metering import services

    services.events_void(
        actor=None, customer=customer_a, idempotency_keys=["d1"], reason="test traffic"
    )
    page = signed_in(client, owner_a).get(EVENTS).content.decode()

    assert page.count('badge-revoked" title="Voided: test traffic">Void<') == 1
    assert page.count(">Counted<") == 5


@pytest.mark.parametrize(
    ("params", "field_error"),
    [
        ({"start": "2026-11-05", "end": "2026-11-01"}, "The end date is before the start date."),
        ({"start": "2026-13-45"}, "Enter a date as YYYY-MM-DD."),
        ({"end": "yesterday"}, "Enter a date as YYYY-MM-DD."),
        ({"start": "1066-10-14"}, "Enter a date between 2000 and 2100."),
        ({"property": "region"}, "Write the property as name=value"),
        ({"property": "bad name=1"}, "Write the property as name=value"),
        ({"meter": "no_such_meter"}, "Select a valid choice."),
        ({"after": "garbage"}, "That page link is broken"),
    ],
)
def test_bad_filters_are_explained_inline(client, owner_a, sample, params, field_error):
    signed_in(client, owner_a)

    page = client.get(EVENTS, params)
    fragment = client.get(EVENTS, params, headers=HTMX)

    assert page.status_code == fragment.status_code == 422
    assert field_error in page.content.decode()
    assert field_error in fragment.content.decode()
    assert b"<html" not in fragment.content
    assert keys(page) == []
    assert b"Fix the filters above to see events." in page.content
    # What the member typed is kept in the form (a select or a hidden cursor aside).
    for name, value in params.items():
        if name not in ("meter", "after"):
            assert f'name="{name}" value="{escape(value)}"' in page.content.decode()


def test_htmx_filter_returns_the_panel_only(client, owner_a, sample):
    response = signed_in(client, owner_a).get(EVENTS, {"meter": "api_call"}, headers=HTMX)

    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<div id="events-panel">')
    assert "<html" not in fragment
    assert keys(response) == ["d1", "d0-early", "eve-late"]


# --- Keyset pagination --------------------------------------------------------------------


@pytest.fixture
def many(customer_a):
    """130 events on only 4 distinct timestamps: pages must break ties by id."""
    api_calls_meter()
    moments = [berlin(D0, h).astimezone(UTC) for h in (9, 10, 11, 12)]
    send(
        *(
            at(customer_a, f"k{i:03d}", "api_call", moments[i % 4], endpoint="/a", region="eu")
            for i in range(130)
        )
    )
    return customer_a


def follow(client, response, rel: str):
    link = next(
        (part for part in response.content.decode().split("<a ") if f'rel="{rel}"' in part),
        None,
    )
    if link is None:
        return None
    href = link.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    return client.get(href)


def test_pages_walk_every_event_once_in_order_and_back(client, owner_a, many):
    signed_in(client, owner_a)

    first = client.get(EVENTS, {"meter": "api_call"})
    second = follow(client, first, "next")
    third = follow(client, second, "next")

    pages = [keys(first), keys(second), keys(third)]
    assert [len(p) for p in pages] == [PAGE_SIZE, PAGE_SIZE, 30]
    walked = [k for page in pages for k in page]
    assert len(set(walked)) == 130
    assert follow(client, third, "next") is None
    assert follow(client, first, "prev") is None
    # The filter travels with the page links.
    older_url = next(p for p in first.content.decode().split('"') if "after=" in p)
    assert parse_qs(urlsplit(older_url.replace("&amp;", "&")).query)["meter"] == ["api_call"]
    # Back: the newer page of the third is the second, and of the second the first.
    assert keys(follow(client, third, "prev")) == pages[1]
    assert keys(follow(client, second, "prev")) == pages[0]


def test_pages_are_found_by_keyset_not_offset(client, owner_a, many):
    signed_in(client, owner_a)
    first = client.get(EVENTS)

    with CaptureQueriesContext(connection) as queries:
        follow(client, first, "next")

    event_queries = [
        q["sql"] for q in queries.captured_queries if "metering_usageevent" in q["sql"]
    ]
    assert len(event_queries) == 1
    assert "OFFSET" not in event_queries[0].upper()
    assert "LIMIT 51" in event_queries[0]


def test_page_order_is_newest_first_by_time_then_id(client, owner_a, many):
    from metering.models import UsageEvent

    signed_in(client, owner_a)
    expected = list(
        UsageEvent.objects.order_by("-timestamp", "-id").values_list("idempotency_key", flat=True)
    )

    first = client.get(EVENTS)
    second = follow(client, first, "next")

    assert keys(first) + keys(second) == expected[: 2 * PAGE_SIZE]


# --- Roles and tenants --------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_every_member_role_may_see_events(client, customer_a, sample, role):
    signed_in(client, member(customer_a, role))

    response = client.get(EVENTS)

    assert response.status_code == 200
    assert len(keys(response)) == 6


def test_another_customers_events_never_show(client, owner_a, sample, customer_b, owner_b):
    send(
        at(
            customer_b,
            "beta-secret",
            "api_call",
            berlin(D1, 9),
            endpoint="/b",
            region="eu",
        )
    )
    signed_in(client, owner_a)

    everything = client.get(EVENTS)
    same_time = client.get(EVENTS, {"start": D1.isoformat(), "end": D1.isoformat()})
    by_meter = client.get(EVENTS, {"meter": "api_call", "property": "endpoint=/b"})

    for response in (everything, same_time, by_meter):
        assert b"beta-secret" not in response.content
    assert keys(by_meter) == ["d1"]
    assert keys(signed_in(client, owner_b).get(EVENTS)) == ["beta-secret"]


def test_a_cursor_from_another_customer_reveals_nothing(client, owner_a, sample, customer_b):
    from metering.models import UsageEvent
    from metering.views.forms import Cursor

    send(at(customer_b, "beta-1", "api_call", berlin(D1, 9), endpoint="/b", region="eu"))
    theirs = UsageEvent.objects.get(idempotency_key="beta-1")

    response = signed_in(client, owner_a).get(
        EVENTS, {"after": str(Cursor(theirs.timestamp + timedelta(days=30), theirs.pk))}
    )

    assert b"beta-1" not in response.content
    assert keys(response) == [
        "unmetered",
        "gb-d2",
        "gb-d1",
        "d1",
        "d0-early",
        "eve-late",
    ]

"""GET /api/v1/events: filters, newest-first keyset pages across monthly partitions, tenancy."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from metering.ingest import events_ingest
from metering.models import Meter
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key
from tests.metering.factories import MeterFactory, api_calls_meter, event

from .support import EVENTS, ago, iso, month_start, operator, walk

pytestmark = pytest.mark.django_db


def _ingest(*events):
    result = events_ingest(events=list(events))
    assert result.accepted == len(events), [r.as_dict() for r in result.results]


def _keys(rows) -> list[str]:
    return [row["idempotency_key"] for row in rows]


@pytest.fixture
def month_boundary_events(customer_a, customer_b):
    """Events of A on both sides of a month boundary (two partitions), several sharing a
    timestamp, and interleaved events of B."""
    boundary = month_start(1)  # midnight UTC on the first of last month
    moments = [
        boundary - timedelta(days=1),
        boundary - timedelta(seconds=1),
        boundary - timedelta(seconds=1),
        boundary - timedelta(seconds=1),
        boundary,
        boundary,
        boundary + timedelta(microseconds=1),
        boundary + timedelta(days=2),
    ]
    mine = [event(customer_a, f"a-{i}", ts=iso(m), region="eu") for i, m in enumerate(moments)]
    theirs = [event(customer_b, f"b-{i}", ts=iso(m), region="eu") for i, m in enumerate(moments)]
    # Ingested out of order, so ids are not time order.
    _ingest(*reversed(mine[4:]), *theirs, *reversed(mine[:4]))
    return boundary, mine


def _expected_order(events) -> list[str]:
    """Newest first; same timestamp: the later-stored (higher id) first."""
    from metering.models import UsageEvent

    rows = UsageEvent.objects.filter(idempotency_key__in=[e["idempotency_key"] for e in events])
    return list(rows.order_by("-timestamp", "-id").values_list("idempotency_key", flat=True))


def test_pages_walk_every_event_once_newest_first_across_partitions(
    customer_a, customer_a_token, month_boundary_events
):
    _, mine = month_boundary_events

    rows, pages = walk(api(customer_a_token), EVENTS, {"limit": 3})

    assert _keys(rows) == _expected_order(mine)
    assert len(set(_keys(rows))) == len(mine) == 8
    assert [len(p["results"]) for p in pages] == [3, 3, 2]
    assert pages[0]["previous"] is None and pages[-1]["next"] is None
    assert all(row["customer"] == "alpha" for row in rows)
    times = [row["timestamp"] for row in rows]
    assert times[0].startswith(iso(month_boundary_events[0] + timedelta(days=2))[:10])


def test_previous_links_walk_back_to_the_first_page(customer_a_token, month_boundary_events):
    client = api(customer_a_token)
    _, pages = walk(client, EVENTS, {"limit": 3})

    back = client.get(pages[-1]["previous"]).json()
    assert back["results"] == pages[1]["results"]
    first = client.get(back["previous"]).json()
    assert first["results"] == pages[0]["results"]
    assert first["previous"] is None


def test_range_filter_keeps_pages_inside_it(customer_a_token, month_boundary_events):
    boundary, _ = month_boundary_events
    params = {"start": iso(boundary - timedelta(seconds=1)), "end": iso(boundary), "limit": 2}

    rows, _ = walk(api(customer_a_token), EVENTS, params)

    assert sorted(_keys(rows)) == ["a-1", "a-2", "a-3"]


def test_operator_sees_every_customer_or_the_one_named(
    customer_a, customer_b, month_boundary_events
):
    client = operator()
    everything, _ = walk(client, EVENTS, {"limit": 5})
    assert {r["customer"] for r in everything} == {"alpha", "beta"} and len(everything) == 16

    only_b, _ = walk(client, EVENTS, {"customer": "beta", "limit": 5})
    assert {r["customer"] for r in only_b} == {"beta"} and len(only_b) == 8


def test_event_is_shown_as_stored(customer_a, customer_a_token):
    api_calls_meter()
    _ingest(event(customer_a, "shown", ts="2026-10-05T08:30:00+02:00", endpoint="/v1/x"))

    (row,) = api(customer_a_token).get(EVENTS).json()["results"]

    assert row == {
        "idempotency_key": "shown",
        "customer": "alpha",
        "event_name": "api_call",
        "timestamp": "2026-10-05T06:30:00Z",
        "received_at": row["received_at"],
        "properties": {"endpoint": "/v1/x"},
        "late": False,
        "voided_at": None,
        "void_reason": "",
    }
    assert row["received_at"].endswith("Z")


# --- Filters ----------------------------------------------------------------------------


@pytest.fixture
def assorted(customer_a):
    MeterFactory(
        code="llm_tokens",
        name="LLM tokens",
        aggregation=Meter.Aggregation.SUM,
        value_property="tokens",
        filters=[{"property": "billable", "values": ["true"]}],
        group_by=["model"],
    )
    _ingest(
        event(customer_a, "t-1", name="llm_tokens", ts=ago(hours=3), tokens=10, billable=True,
              model="large"),
        event(customer_a, "t-2", name="llm_tokens", ts=ago(hours=2), tokens=5, billable=False,
              model="small"),
        event(customer_a, "t-3", name="llm_tokens", ts=ago(hours=1), tokens=7, billable=True,
              model="small"),
        event(customer_a, "c-1", name="api_call", ts=ago(minutes=30), model="large", region="eu"),
        event(customer_a, "c-2", name="api_call", ts=ago(minutes=20), region="us", code=404),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("params", "keys"),
    [
        ({"meter": "llm_tokens"}, ["t-3", "t-1"]),  # the meter's filter: billable only
        ({"event_name": "llm_tokens"}, ["t-3", "t-2", "t-1"]),
        ({"property.model": "small"}, ["t-3", "t-2"]),
        ({"property.model": ["small", "large"]}, ["c-1", "t-3", "t-2", "t-1"]),
        ({"property.model": "large", "event_name": "api_call"}, ["c-1"]),
        ({"property.model": "small", "meter": "llm_tokens"}, ["t-3"]),
        ({"property.region": "us", "property.code": "404"}, ["c-2"]),  # numbers match as text
        ({"property.billable": "true"}, ["t-3", "t-1"]),
        ({"property.model": "medium"}, []),
    ],
)
def test_filters_narrow_the_list(customer_a_token, assorted, params, keys):
    response = api(customer_a_token).get(EVENTS, params)
    assert response.status_code == 200, response.content
    assert _keys(response.json()["results"]) == keys


def test_time_filters_are_half_open(customer_a, customer_a_token):
    api_calls_meter()
    at = month_start(1) + timedelta(days=3, hours=5)
    _ingest(event(customer_a, "edge", ts=iso(at)))
    client = api(customer_a_token)
    assert _keys(client.get(EVENTS, {"start": iso(at)}).json()["results"]) == ["edge"]
    assert _keys(client.get(EVENTS, {"end": iso(at)}).json()["results"]) == []


@pytest.mark.parametrize(
    ("params", "status", "code", "field"),
    [
        ({"meter": "nope"}, 400, "unknown_meter", "meter"),
        ({"meter": "api_call", "event_name": "api_call"}, 400, "invalid", "event_name"),
        ({"start": "2026-11-01"}, 400, "invalid", "start"),
        ({"start": "2026-11-01T00:00:00"}, 400, "invalid", "start"),
        ({"start": ago(hours=1), "end": ago(hours=2)}, 400, "invalid_range", "end"),
        ({"custmer": "beta"}, 400, "unknown_field", "custmer"),
        ({"property.bad name": "x"}, 400, "invalid", "property.bad name"),
        ({"cursor": "garbage!"}, 400, "invalid_cursor", "cursor"),
        ({"limit": "0"}, 400, "invalid", "limit"),
        ({"customer": "nobody"}, 404, "not_found", None),
    ],
)
def test_bad_filters_name_the_problem(customer_a, params, status, code, field):
    api_calls_meter()
    assert_error(operator().get(EVENTS, params), status, code, field=field)


def test_offset_written_without_url_encoding_still_reads_as_an_offset(customer_a):
    """``+02:00`` typed raw into a query string arrives as `` 02:00``."""
    api_calls_meter()
    _ingest(event(customer_a, "tz", ts="2026-10-05T08:30:00+02:00"))
    client = operator()
    url = f"{EVENTS}?start=2026-10-05T08:30:00+02:00&end=2026-10-05T08:30:01+02:00"
    assert _keys(client.get(url).json()["results"]) == ["tz"]


def test_limit_is_capped(customer_a):
    api_calls_meter()
    _ingest(*[event(customer_a, f"n-{i}", ts=ago(minutes=i)) for i in range(3)])
    response = operator().get(EVENTS, {"limit": 100_000})
    assert len(response.json()["results"]) == 3


# --- Tenancy ----------------------------------------------------------------------------


def test_customer_key_sees_only_its_own_events(customer_a_token, month_boundary_events):
    rows, _ = walk(api(customer_a_token), EVENTS, {"limit": 50})
    assert rows and {r["customer"] for r in rows} == {"alpha"}
    assert not [k for k in _keys(rows) if k.startswith("b-")]


def test_customer_key_naming_another_customer_gets_404(customer_a_token, month_boundary_events):
    assert_error(api(customer_a_token).get(EVENTS, {"customer": "beta"}), 404, "not_found")
    # Naming itself is fine.
    assert api(customer_a_token).get(EVENTS, {"customer": "alpha"}).status_code == 200


def test_customer_key_cannot_widen_its_list_with_a_cursor(customer_a_token, month_boundary_events):
    """A next link made from B's rows (by an operator) leads A only to A's events."""
    _, pages = walk(operator(), EVENTS, {"limit": 1})
    cursor = parse_qs(urlsplit(pages[0]["next"]).query)["cursor"][0]
    rows, _ = walk(api(customer_a_token), EVENTS, {"cursor": cursor, "limit": 50})
    assert {r["customer"] for r in rows} == {"alpha"}


def test_listing_needs_usage_read(customer_a):
    _, token = make_api_key(customer=customer_a, scopes=["contacts:read"])
    assert_error(api(token).get(EVENTS), 403, "insufficient_scope")

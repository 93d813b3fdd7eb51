"""GET /api/v1/usage: totals, series in the customer's time zone, breakdowns, tenancy.

The expected numbers are worked out by hand from the events each test sends. Customer A
lives in Tokyo (UTC+9, no daylight saving): its days start at 15:00 UTC, so a series by
UTC days would put the same events in different buckets.
"""

from datetime import UTC, timedelta

import pytest

from accounts.models import Customer
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key
from tests.metering.factories import api_calls_meter, data_meter, event, seats_meter, users_meter

from .support import USAGE, ago, iso, month_start, operator, send

pytestmark = pytest.mark.django_db

TOKYO = "Asia/Tokyo"


@pytest.fixture
def day0(customer_a):
    """Midnight in Tokyo on the first of last month; A's clock is Tokyo's."""
    Customer.objects.filter(pk=customer_a.pk).update(timezone=TOKYO)
    return month_start(1, TOKYO)


def _send(*events):
    body = send(operator(), list(events)).json()
    assert body["accepted"] == len(events), body


@pytest.fixture
def calls(customer_a, customer_b, day0):
    """A's api_call events (count; dimensions endpoint, region) around its first days."""
    api_calls_meter()
    h = timedelta(hours=1)
    _send(
        event(customer_a, "before", ts=iso(day0 - h / 2), endpoint="/a", region="eu"),
        event(customer_a, "e1", ts=iso(day0 + h), endpoint="/a", region="eu"),
        event(customer_a, "e2", ts=iso(day0 + 23.5 * h), endpoint="/b", region="us"),
        event(customer_a, "e3", ts=iso(day0 + 24 * h), endpoint="/a", region="eu"),
        event(customer_a, "e4", ts=iso(day0 + 24 * h + h / 6), endpoint="/a", region="us"),
        event(customer_a, "at-end", ts=iso(day0 + 72 * h), endpoint="/a", region="eu"),
        # B's usage in the same hours must never show in A's numbers.
        *[event(customer_b, f"b{i}", ts=iso(day0 + 2 * h), endpoint="/a") for i in range(5)],
    )
    return day0


def _usage(client, **params):
    params.setdefault("meter", "api_call")
    response = client.get(USAGE, params)
    assert response.status_code == 200, response.content
    return response.json()


def _window(day0, days=3):
    return {"start": iso(day0), "end": iso(day0 + timedelta(days=days))}


# --- Totals -----------------------------------------------------------------------------


def test_total_over_a_range_counts_the_events_inside_it(customer_a_token, calls):
    body = _usage(api(customer_a_token), **_window(calls))

    assert body == {
        "customer": "alpha",
        "meter": "api_call",
        "aggregation": "count",
        "unit_label": "calls",
        "timezone": TOKYO,
        "start": iso(calls.astimezone(UTC)).replace("+00:00", "Z"),
        "end": body["end"],
        "granularity": "none",
        "group_by": None,
        "where": {},
        "total": "4",  # e1..e4: "before" is before start, "at-end" is at the open end
    }


@pytest.mark.parametrize(
    ("start_h", "end_h", "total"),
    [
        (1, 72, "4"),  # start is inclusive: e1 is at exactly 01:00
        (1 + 1 / 3600, 72, "3"),  # one second later it is not
        (23.75, 72, "2"),  # a partial hour at the start: e2 (23:30) is out
        (0, 24 + 1 / 12, "3"),  # a partial hour at the end: e4 (24:10) is out
        (23.25, 23.75, "1"),  # inside one hour: only e2
        (2, 3, "0"),  # B's hour: nothing of A's
    ],
)
def test_total_is_exact_at_partial_hours(customer_a_token, calls, start_h, end_h, total):
    start, end = calls + timedelta(hours=start_h), calls + timedelta(hours=end_h)
    body = _usage(api(customer_a_token), start=iso(start), end=iso(end))
    assert body["total"] == total


def test_where_filters_on_dimensions(customer_a_token, calls):
    client = api(customer_a_token)
    assert _usage(client, **_window(calls), **{"dimension.region": "us"})["total"] == "2"
    both = {"dimension.region": "eu", "dimension.endpoint": "/a"}
    body = _usage(client, **_window(calls), **both)
    assert body["total"] == "2" and body["where"] == {"endpoint": "/a", "region": "eu"}


# --- Series -----------------------------------------------------------------------------


def test_daily_series_has_every_day_in_the_customers_time_zone(customer_a_token, calls):
    body = _usage(api(customer_a_token), **_window(calls), granularity="day")

    day = calls.strftime("%Y-%m")
    assert body["series"] == [
        {"bucket": f"{day}-01T00:00:00+09:00", "value": "2"},  # e1, e2 (23:30 Tokyo)
        {"bucket": f"{day}-02T00:00:00+09:00", "value": "2"},  # e3 at midnight, e4
        {"bucket": f"{day}-03T00:00:00+09:00", "value": "0"},
    ]


def test_daily_series_of_a_utc_customer_splits_the_same_events_differently(
    customer_a, customer_a_token, calls
):
    Customer.objects.filter(pk=customer_a.pk).update(timezone="UTC")
    start = calls.replace(tzinfo=UTC)  # the same wall-clock days, in UTC
    body = _usage(api(customer_a_token), **_window(start), granularity="day")
    # In UTC, e1 (16:00 the day before the 1st) is before start; e2 (14:30), e3 (15:00)
    # and e4 (15:10) all fall on the 1st; "at-end" (15:00 on the 3rd) is now inside.
    assert [p["value"] for p in body["series"]] == ["3", "0", "1"]
    assert body["series"][0]["bucket"].endswith("T00:00:00Z")


def test_hourly_series_has_every_hour(customer_a_token, calls):
    body = _usage(api(customer_a_token), **_window(calls), granularity="hour")

    values = [p["value"] for p in body["series"]]
    assert len(values) == 72
    assert {i: v for i, v in enumerate(values) if v != "0"} == {1: "1", 23: "1", 24: "2"}
    assert body["series"][24]["bucket"].endswith("T00:00:00+09:00")


def test_monthly_series_and_a_filtered_daily_series(customer_a_token, calls):
    client = api(customer_a_token)
    monthly = _usage(client, **_window(calls), granularity="month")["series"]
    assert monthly == [{"bucket": f"{calls:%Y-%m}-01T00:00:00+09:00", "value": "4"}]

    filtered = _usage(client, **_window(calls), granularity="day", **{"dimension.region": "us"})
    assert [p["value"] for p in filtered["series"]] == ["1", "1", "0"]


def test_series_broken_down_lists_buckets_and_groups_with_usage(customer_a_token, calls):
    body = _usage(api(customer_a_token), **_window(calls), granularity="day", group_by="endpoint")
    assert [(p["bucket"][:10], p["group"], p["value"]) for p in body["series"]] == [
        (f"{calls:%Y-%m}-01", "/a", "1"),
        (f"{calls:%Y-%m}-01", "/b", "1"),
        (f"{calls:%Y-%m}-02", "/a", "2"),
    ]


# --- Breakdown --------------------------------------------------------------------------


def test_breakdown_by_a_dimension_is_largest_first(customer_a_token, calls):
    client = api(customer_a_token)
    by_endpoint = _usage(client, **_window(calls), group_by="endpoint")
    assert by_endpoint["breakdown"] == [
        {"group": "/a", "value": "3"},
        {"group": "/b", "value": "1"},
    ]
    assert "total" not in by_endpoint and "series" not in by_endpoint
    by_region = _usage(client, **_window(calls), group_by="region", **{"dimension.endpoint": "/a"})
    assert by_region["breakdown"] == [
        {"group": "eu", "value": "2"},
        {"group": "us", "value": "1"},
    ]


# --- Other aggregations: decimals stay exact strings --------------------------------------


def test_sums_are_exact_decimal_strings(customer_a, customer_a_token, day0):
    data_meter()
    h = timedelta(hours=1)
    _send(
        event(customer_a, "d1", name="data_processed", ts=iso(day0 + h), gb="1.5"),
        event(customer_a, "d2", name="data_processed", ts=iso(day0 + 2 * h), gb=2.25),
        event(customer_a, "d3", name="data_processed", ts=iso(day0 + 30 * h), gb=0.0000001),
        event(customer_a, "d4", name="data_processed", ts=iso(day0 + 31 * h), gb=100),
    )
    client = api(customer_a_token)

    total = _usage(client, meter="data_processed", **_window(day0))["total"]
    series = _usage(client, meter="data_processed", **_window(day0), granularity="day")["series"]

    assert total == "103.7500001"
    assert [p["value"] for p in series] == ["3.75", "100.0000001", "0"]


def test_gauge_reads_its_latest_value_and_null_without_a_reading(
    customer_a, customer_a_token, day0
):
    seats_meter()
    h = timedelta(hours=1)
    _send(
        event(customer_a, "s1", name="active_seats", ts=iso(day0 + h), seats=5),
        event(customer_a, "s2", name="active_seats", ts=iso(day0 + 20 * h), seats=9),
        event(customer_a, "s3", name="active_seats", ts=iso(day0 + 25 * h), seats=7),
    )
    client = api(customer_a_token)
    window = {"meter": "active_seats", **_window(day0)}

    assert _usage(client, **window)["total"] == "7"
    series = _usage(client, **window, granularity="day")["series"]
    assert [p["value"] for p in series] == ["9", "7", None]


def test_unique_count_counts_each_value_once_per_range(customer_a, customer_a_token, day0):
    users_meter()
    h = timedelta(hours=1)
    _send(
        event(customer_a, "u1", name="user_active", ts=iso(day0 + h), user_id="ann"),
        event(customer_a, "u2", name="user_active", ts=iso(day0 + 2 * h), user_id="bob"),
        event(customer_a, "u3", name="user_active", ts=iso(day0 + 3 * h), user_id="ann"),
        event(customer_a, "u4", name="user_active", ts=iso(day0 + 26 * h), user_id="bob"),
        event(customer_a, "u5", name="user_active", ts=iso(day0 + 27 * h), user_id="cy"),
    )
    client = api(customer_a_token)
    window = {"meter": "user_active", **_window(day0)}

    assert _usage(client, **window)["total"] == "3"
    series = _usage(client, **window, granularity="day")["series"]
    assert [p["value"] for p in series] == ["2", "2", "0"]


# --- Bad queries ------------------------------------------------------------------------


def _bad(day0, **overrides):
    params = {"meter": "api_call", **_window(day0), **overrides}
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"meter": None}, "required", "meter"),
        ({"meter": "nope"}, "unknown_meter", "meter"),
        ({"start": None}, "required", "start"),
        ({"start": "2026-10-01"}, "invalid", "start"),
        ({"end": "2026-10-01T00:00:00"}, "invalid", "end"),
        ({"end": "START"}, "invalid_range", "end"),
        ({"end": "+401d"}, "invalid_range", "end"),
        ({"granularity": "hour", "end": "+32d"}, "invalid_range", "end"),
        ({"granularity": "week"}, "invalid_granularity", "granularity"),
        ({"group_by": "planet"}, "unknown_dimension", "group_by"),
        ({"dimension.planet": "mars"}, "unknown_dimension", "dimension.planet"),
        ({"dimension.region": ["eu", "us"]}, "invalid", "dimension.region"),
        ({"dimension.bad name": "x"}, "invalid", "dimension.bad name"),
        ({"where": "region=eu"}, "unknown_field", "where"),
    ],
)
def test_bad_queries_name_the_problem(customer_a_token, calls, overrides, code, field):
    if overrides.get("end") == "START":
        overrides["end"] = iso(calls)
    elif str(overrides.get("end", "")).startswith("+"):
        overrides["end"] = iso(calls + timedelta(days=int(overrides["end"][1:-1])))
    response = api(customer_a_token).get(USAGE, _bad(calls, **overrides))
    assert_error(response, 400, code, field=field)


def test_400_days_and_31_hourly_days_are_allowed(customer_a_token, calls):
    client = api(customer_a_token)
    long = {"start": iso(calls - timedelta(days=399)), "end": iso(calls + timedelta(days=1))}
    assert _usage(client, **long)["total"] == "3"  # "before", e1, e2
    hourly = {"start": iso(calls), "end": iso(calls + timedelta(days=31))}
    assert len(_usage(client, **hourly, granularity="hour")["series"]) == 31 * 24


def test_operator_must_name_the_customer(calls):
    response = operator().get(USAGE, _bad(calls))
    assert_error(response, 400, "required", field="customer")


# --- Tenancy ----------------------------------------------------------------------------


def test_customer_key_cannot_read_another_customers_usage(customer_a_token, calls):
    client = api(customer_a_token)
    assert_error(client.get(USAGE, _bad(calls, customer="beta")), 404, "not_found")
    assert_error(client.get(USAGE, _bad(calls, customer="nobody")), 404, "not_found")
    # Its own, named or implied, is the same answer.
    assert _usage(client, **_bad(calls, customer="alpha"))["total"] == "4"


def test_operator_reads_any_customer(calls):
    client = operator()
    assert _usage(client, **_bad(calls, customer="alpha"))["total"] == "4"
    assert _usage(client, **_bad(calls, customer="beta"))["total"] == "5"


def test_reading_usage_needs_usage_read(customer_a, calls):
    _, token = make_api_key(customer=customer_a, scopes=["contacts:read"])
    assert_error(api(token).get(USAGE, _bad(calls)), 403, "insufficient_scope")


def test_recent_usage_is_there_as_soon_as_it_is_sent(customer_a, customer_a_token):
    api_calls_meter()
    _send(event(customer_a, "now", ts=ago(seconds=5)))
    body = _usage(api(customer_a_token), start=ago(hours=1), end=ago(seconds=-60))
    assert body["total"] == "1"

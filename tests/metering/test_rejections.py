"""Every rejection of metering.ingest, at the service level, and where its boundaries lie.

A rejected event is answered with its code; the valid events of the same batch are still
stored, and a rejected event's key stays free for a corrected retry.
"""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from accounts.errors import TooLarge
from metering.ingest import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_AGE,
    MAX_PROPERTIES_BYTES,
    events_ingest,
)
from metering.models import EventKey, UsageEvent, UsageRollup
from tests.metering.factories import MeterFactory, data_meter, event, users_meter

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
TS = "2026-11-02T10:15:00Z"


def one(raw, *, now=NOW):
    """Ingest ``raw`` next to a valid event; return the answer for ``raw``."""
    result = events_ingest(events=[raw, _control()], now=now)
    assert result.results[1].status == "accepted", "the valid neighbour must be stored"
    return result.results[0]


_control_keys = itertools.count()


def _control():
    return {
        "idempotency_key": f"control-{next(_control_keys)}",
        "customer": "alpha",
        "event_name": "control",
        "timestamp": TS,
        "properties": {},
    }


@pytest.fixture(autouse=True)
def _alpha(customer_a):
    """Customer A (external id "alpha") exists in every test: the control events use it."""


def assert_rejected(raw, code, *, now=NOW):
    answer = one(raw, now=now) if isinstance(raw, dict) else None
    if answer is None:
        answer = events_ingest(events=[raw], now=now).results[0]
    assert (answer.status, answer.code) == ("rejected", code), answer
    assert answer.message
    return answer


def accepted(raw, *, now=NOW):
    answer = events_ingest(events=[raw], now=now).results[0]
    assert answer.status == "accepted", answer
    return answer


# --- Shape --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [[], "api_call", 42, None, True])
def test_an_event_that_is_not_an_object_is_invalid_event(raw):
    result = events_ingest(events=[raw, _control()], now=NOW)
    assert (result.results[0].status, result.results[0].code) == ("rejected", "invalid_event")
    assert result.results[0].idempotency_key is None
    assert result.results[1].status == "accepted"


def test_an_unknown_field_is_named(customer_a):
    answer = assert_rejected({**event(customer_a, "k"), "value": 3}, "unknown_field")
    assert "value" in answer.message


# --- Keys and customers -------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", 17, ["k"], "k" * 256, "nul\x00key"], ids=repr)
def test_a_bad_idempotency_key_is_invalid_idempotency_key(customer_a, key):
    raw = event(customer_a, "placeholder")
    raw["idempotency_key"] = key
    if key is None:
        del raw["idempotency_key"]
    assert_rejected(raw, "invalid_idempotency_key")


def test_a_key_of_255_characters_is_accepted(customer_a):
    accepted(event(customer_a, "k" * 255))
    assert EventKey.objects.filter(idempotency_key="k" * 255).exists()


@pytest.mark.parametrize("customer", [None, "", 7, {"id": "alpha"}], ids=repr)
def test_a_missing_or_non_text_customer_is_invalid_customer(customer_a, customer):
    raw = event(customer_a, "k")
    raw["customer"] = customer
    assert_rejected(raw, "invalid_customer")


def test_an_unknown_external_id_is_unknown_customer(customer_a):
    raw = event(customer_a, "k")
    raw["customer"] = "nobody"
    answer = assert_rejected(raw, "unknown_customer")
    assert "nobody" in answer.message


def test_a_customer_id_with_a_nul_byte_is_refused_alone_not_the_batch(customer_a):
    raw = event(customer_a, "k")
    raw["customer"] = "al\x00pha"
    result = events_ingest(events=[raw, event(customer_a, "fine")], now=NOW)
    assert (result.results[0].status, result.results[0].code) == ("rejected", "invalid_customer")
    assert result.results[1].status == "accepted"


# --- Event names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [None, "", "1st", "api call", "api/call", "a" * 129, "api_call\n", "api\x00call", 5],
    ids=repr,
)
def test_a_bad_event_name_is_invalid_event_name(customer_a, name):
    raw = event(customer_a, "k")
    raw["event_name"] = name
    assert_rejected(raw, "invalid_event_name")


def test_event_names_use_letters_digits_and_separators(customer_a):
    accepted(event(customer_a, "1", name="a" * 128))
    accepted(event(customer_a, "2", name="llm.tokens:in-put_2"))


# --- Timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ts",
    [
        None,
        1762078500,
        "",
        "yesterday",
        "2026-11-02",  # a date is not a moment
        "2026-11-02T10:15:00",  # no offset: which 10:15?
        "2026-11-02 10:15:00",
        "2026-13-02T10:15:00Z",
        "2026-11-02T25:15:00Z",
        "2026-11-02T10:15:00+25:00",
    ],
    ids=repr,
)
def test_a_timestamp_without_date_time_and_offset_is_invalid_timestamp(customer_a, ts):
    raw = event(customer_a, "k", ts=ts)
    assert_rejected(raw, "invalid_timestamp")


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-02T10:15:00Z",
        "2026-11-02T10:15:00+00:00",
        "2026-11-02T12:15:00+02:00",
        "2026-11-02T05:15:00-05:00",
        "2026-11-02T15:45:00+05:30",
        "2026-11-02T10:15:00.000000Z",
        "2026-11-02 10:15:00Z",
    ],
)
def test_a_timestamp_with_an_offset_is_stored_in_utc(customer_a, ts):
    accepted(event(customer_a, "k", ts=ts))
    assert UsageEvent.objects.get(idempotency_key="k").timestamp == datetime(
        2026, 11, 2, 10, 15, tzinfo=UTC
    )


def test_up_to_five_minutes_ahead_is_accepted_and_beyond_is_timestamp_in_future(customer_a):
    edge = NOW + timedelta(minutes=5)
    accepted(event(customer_a, "edge", ts=edge.isoformat()))
    accepted(event(customer_a, "edge-offset", ts=edge.astimezone(_plus(2)).isoformat()))
    beyond = edge + timedelta(microseconds=1)
    assert_rejected(event(customer_a, "beyond", ts=beyond.isoformat()), "timestamp_in_future")
    assert_rejected(
        event(customer_a, "beyond-offset", ts=beyond.astimezone(_plus(-7)).isoformat()),
        "timestamp_in_future",
    )


def test_more_than_three_years_back_is_timestamp_too_old(customer_a):
    oldest = NOW - MAX_EVENT_AGE
    accepted(event(customer_a, "oldest", ts=oldest.isoformat()))
    before = oldest - timedelta(microseconds=1)
    assert_rejected(event(customer_a, "older", ts=before.isoformat()), "timestamp_too_old")


def _plus(hours):
    from datetime import timezone

    return timezone(timedelta(hours=hours))


# --- Properties ---------------------------------------------------------------------------


@pytest.mark.parametrize("properties", [[1, 2], "gb=3", 3, True], ids=repr)
def test_properties_that_are_not_an_object_are_invalid_properties(customer_a, properties):
    raw = event(customer_a, "k")
    raw["properties"] = properties
    assert_rejected(raw, "invalid_properties")


def test_missing_or_null_properties_are_an_empty_object(customer_a):
    raw = event(customer_a, "missing")
    del raw["properties"]
    accepted(raw)
    raw = event(customer_a, "null")
    raw["properties"] = None
    accepted(raw)
    assert [e.properties for e in UsageEvent.objects.exclude(event_name="control")] == [{}, {}]


@pytest.mark.parametrize(
    "properties",
    [{"note": "a\x00b"}, {"key\x00": 1}, {"nested": {"deep": ["x\x00"]}}],
    ids=["value", "key", "nested"],
)
def test_nul_characters_in_properties_are_invalid_properties(customer_a, properties):
    assert_rejected(event(customer_a, "k", **properties), "invalid_properties")


def test_an_integer_beyond_64_bits_is_invalid_properties_not_a_failed_batch(customer_a):
    assert_rejected(event(customer_a, "k", count=2**64), "invalid_properties")


def test_properties_up_to_the_byte_limit_are_accepted_and_one_more_byte_is_too_large(
    customer_a,
):
    overhead = len('{"p":""}')
    accepted(event(customer_a, "at-limit", p="x" * (MAX_PROPERTIES_BYTES - overhead)))
    assert_rejected(
        event(customer_a, "over", p="x" * (MAX_PROPERTIES_BYTES - overhead + 1)),
        "properties_too_large",
    )


def test_the_byte_limit_counts_utf8_bytes_not_characters(customer_a):
    overhead = len('{"p":""}')
    characters = (MAX_PROPERTIES_BYTES - overhead) // 2 + 1  # "é" is two bytes
    assert_rejected(event(customer_a, "k", p="é" * characters), "properties_too_large")


# --- Values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "abc",
        "1,5",
        "0x10",
        True,
        [1],
        {"v": 1},
        float("nan"),
        float("inf"),
        "5\u2003",  # an em space around a number: PostgreSQL's cast refuses it
        "5\u00a0",
        "1e100000",
        10**18,
        -(10**18),
        "1e18",
        1e18,
    ],
    ids=repr,
)
def test_a_value_a_numeric_meter_cannot_use_is_invalid_value(customer_a, value):
    meter = data_meter()
    raw = event(customer_a, "k", name=meter.code, gb=value)
    answer = assert_rejected(raw, "invalid_value")
    assert "gb" in answer.message


def test_a_missing_value_property_is_invalid_value(customer_a):
    data_meter()
    assert_rejected(event(customer_a, "k", name="data_processed", other=1), "invalid_value")


@pytest.mark.parametrize(
    "value", [0, -3, "2.5", " 7 ", "\t1e3\n", ".5", "+4", 10**18 - 1, "999999999999999999.9"]
)
def test_numbers_and_numeric_strings_below_10_18_are_values(customer_a, value):
    meter = data_meter()
    accepted(event(customer_a, "k", name=meter.code, gb=value))
    assert UsageRollup.objects.filter(meter=meter).count() == 1


@pytest.mark.parametrize("value", [None, [1], {"id": 1}], ids=repr)
def test_a_unique_count_meter_needs_a_scalar_value(customer_a, value):
    users_meter()
    assert_rejected(event(customer_a, "k", name="user_active", user_id=value), "invalid_value")


def test_values_are_only_checked_for_events_the_meter_counts(customer_a):
    MeterFactory(
        code="gpu",
        aggregation="sum",
        value_property="seconds",
        filters=[{"property": "tier", "values": ["paid"]}],
    )
    accepted(event(customer_a, "free", name="gpu", tier="free"))
    assert_rejected(event(customer_a, "paid", name="gpu", tier="paid"), "invalid_value")
    MeterFactory(code="off", aggregation="sum", value_property="v", is_active=False)
    accepted(event(customer_a, "inactive", name="off"))


# --- Batches ------------------------------------------------------------------------------


def test_a_rejected_event_leaves_its_key_free_for_the_corrected_retry(customer_a):
    data_meter()
    bad = event(customer_a, "retry-me", name="data_processed", gb="lots")
    assert_rejected(bad, "invalid_value")
    assert not EventKey.objects.filter(idempotency_key="retry-me").exists()

    accepted(event(customer_a, "retry-me", name="data_processed", gb=3))


def test_answers_come_in_order_with_their_keys(customer_a):
    batch = [
        event(customer_a, "a"),
        {**event(customer_a, "b"), "timestamp": "soon"},
        event(customer_a, "a"),
        {**event(customer_a, "c"), "customer": "nobody"},
    ]
    result = events_ingest(events=batch, now=NOW)
    assert [(r.index, r.idempotency_key, r.status, r.code) for r in result.results] == [
        (0, "a", "accepted", None),
        (1, "b", "rejected", "invalid_timestamp"),
        (2, "a", "duplicate", None),
        (3, "c", "rejected", "unknown_customer"),
    ]
    assert (result.accepted, result.duplicates, result.rejected) == (1, 1, 2)
    assert result.results[1].as_dict()["code"] == "invalid_timestamp"


def test_a_batch_over_the_limit_is_too_large_and_says_the_limit(customer_a):
    too_many = [event(customer_a, f"k{i}") for i in range(MAX_BATCH_EVENTS + 1)]
    with pytest.raises(TooLarge) as caught:
        events_ingest(events=too_many, now=NOW)
    assert caught.value.code == "batch_too_large"
    assert "10,000" in caught.value.message
    assert not UsageEvent.objects.exists()


def test_a_batch_at_the_limit_is_taken(customer_a):
    batch = [{**event(customer_a, f"k{i}"), "customer": "nobody"} for i in range(MAX_BATCH_EVENTS)]
    result = events_ingest(events=batch, now=NOW)
    assert result.rejected == MAX_BATCH_EVENTS

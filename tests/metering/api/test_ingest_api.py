"""POST /api/v1/events through HTTP: per-event answers, exactly once, limits, refusals."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from accounts.models import ApiKey
from metering.models import EventKey, UsageEvent, UsageRollup
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key
from tests.metering.factories import api_calls_meter, data_meter, event

from .support import EVENTS, USAGE, ago, operator, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def meters(db):
    return api_calls_meter(), data_meter()


def _stored_keys() -> set[str]:
    return set(UsageEvent.objects.values_list("idempotency_key", flat=True))


def _total(client, customer, meter, **params) -> str:
    response = client.get(
        USAGE,
        {
            "customer": customer.external_id,
            "meter": meter,
            "start": ago(days=2),
            "end": ago(seconds=-600),
            **params,
        },
    )
    assert response.status_code == 200, response.content
    return response.json()["total"]


# --- Accepted ---------------------------------------------------------------------------


def test_batch_is_answered_per_event_in_order_and_stored(customer_a, meters):
    batch = [
        event(customer_a, "k-1", ts=ago(minutes=5), endpoint="/v1/x", region="eu"),
        event(customer_a, "k-2", ts=ago(minutes=4), endpoint="/v1/y", region="us"),
        event(customer_a, "k-3", name="data_processed", ts=ago(minutes=3), gb="1.25"),
    ]

    response = send(operator(), batch)

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {
        "accepted": 3,
        "duplicates": 0,
        "rejected": 0,
        "results": [
            {"index": 0, "idempotency_key": "k-1", "status": "accepted"},
            {"index": 1, "idempotency_key": "k-2", "status": "accepted"},
            {"index": 2, "idempotency_key": "k-3", "status": "accepted"},
        ],
    }
    stored = UsageEvent.objects.get(idempotency_key="k-1")
    assert stored.customer == customer_a
    assert stored.properties == {"endpoint": "/v1/x", "region": "eu"}
    assert stored.received_at is not None and not stored.late
    assert _total(operator(), customer_a, "data_processed") == "1.25"


def test_object_with_an_events_list_is_a_batch_too(customer_a, meters):
    response = send(operator(), {"events": [event(customer_a, "obj-1", ts=ago(minutes=1))]})
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1
    assert _stored_keys() == {"obj-1"}


def test_event_for_a_name_no_meter_counts_yet_is_stored_raw(customer_a, meters):
    response = send(operator(), [event(customer_a, "raw-1", name="not_metered", ts=ago(hours=1))])
    assert response.json()["results"][0]["status"] == "accepted"
    assert UsageEvent.objects.filter(event_name="not_metered").count() == 1
    assert not UsageRollup.objects.exists()


def test_empty_batch_is_answered_with_nothing_done(customer_a):
    response = send(operator(), [])
    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 0, "rejected": 0, "results": []}


# --- Rejected, per event ----------------------------------------------------------------

REJECTIONS = [
    ("invalid_event", lambda e: 42),
    ("unknown_field", lambda e: {**e, "amount": 3}),
    ("invalid_idempotency_key", lambda e: {**e, "idempotency_key": ""}),
    ("invalid_idempotency_key", lambda e: {**e, "idempotency_key": "k" * 256}),
    ("invalid_customer", lambda e: {**e, "customer": 7}),
    ("unknown_customer", lambda e: {**e, "customer": "nobody-here"}),
    ("invalid_event_name", lambda e: {**e, "event_name": "9 lives"}),
    ("invalid_timestamp", lambda e: {**e, "timestamp": "yesterday"}),
    ("invalid_timestamp", lambda e: {**e, "timestamp": "2026-01-01T10:00:00"}),  # no offset
    ("invalid_timestamp", lambda e: {**e, "timestamp": 1767261600}),
    ("timestamp_in_future", lambda e: {**e, "timestamp": ago(minutes=-10)}),
    ("timestamp_too_old", lambda e: {**e, "timestamp": ago(days=4 * 366)}),
    ("invalid_properties", lambda e: {**e, "properties": ["gb", 1]}),
    ("properties_too_large", lambda e: {**e, "properties": {"blob": "x" * 9000}}),
    ("invalid_value", lambda e: {**e, "event_name": "data_processed", "properties": {}}),
    ("invalid_value", lambda e: {**e, "event_name": "data_processed", "properties": {"gb": "a"}}),
]


@pytest.mark.parametrize(("code", "spoil"), REJECTIONS)
def test_each_invalid_event_is_rejected_with_its_code_and_the_valid_one_kept(
    customer_a, meters, code, spoil
):
    good = event(customer_a, "good", ts=ago(minutes=2))
    bad = spoil(event(customer_a, "bad", ts=ago(minutes=2)))

    response = send(operator(), [bad, good])

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 1)
    rejected, accepted = body["results"]
    assert rejected["status"] == "rejected" and rejected["code"] == code, rejected
    assert rejected["index"] == 0 and rejected["message"]
    assert accepted == {"index": 1, "idempotency_key": "good", "status": "accepted"}
    assert _stored_keys() == {"good"}


def test_mixed_batch_answers_every_event_and_stores_only_the_valid_ones(customer_a, meters):
    batch = [event(customer_a, f"ok-{i}", ts=ago(minutes=10 + i)) for i in range(3)]
    batch.insert(1, {**event(customer_a, "bad-customer", ts=ago(minutes=1)), "customer": "ghost"})
    batch.insert(3, event(customer_a, "bad-time", ts="soon"))
    batch.append(event(customer_a, "ok-0", ts=ago(minutes=10)))  # repeated inside the batch

    body = send(operator(), batch).json()

    assert [(r["idempotency_key"], r["status"], r.get("code")) for r in body["results"]] == [
        ("ok-0", "accepted", None),
        ("bad-customer", "rejected", "unknown_customer"),
        ("ok-1", "accepted", None),
        ("bad-time", "rejected", "invalid_timestamp"),
        ("ok-2", "accepted", None),
        ("ok-0", "duplicate", None),
    ]
    assert [r["index"] for r in body["results"]] == list(range(6))
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 1, 2)
    assert _stored_keys() == {"ok-0", "ok-1", "ok-2"}
    assert _total(operator(), customer_a, "api_call") == "3"


def test_same_batch_sent_twice_is_stored_and_counted_once(customer_a, meters):
    batch = [
        event(customer_a, "twice-1", ts=ago(minutes=30)),
        event(customer_a, "twice-2", name="data_processed", ts=ago(minutes=20), gb=2.5),
    ]
    client = operator()

    first = send(client, batch).json()
    second = send(client, batch).json()

    assert (first["accepted"], first["duplicates"]) == (2, 0)
    assert (second["accepted"], second["duplicates"]) == (0, 2)
    assert [r["status"] for r in second["results"]] == ["duplicate", "duplicate"]
    assert UsageEvent.objects.count() == 2 and EventKey.objects.count() == 2
    assert _total(client, customer_a, "api_call") == "1"
    assert _total(client, customer_a, "data_processed") == "2.5"


def test_same_key_for_two_customers_is_two_events(customer_a, customer_b, meters):
    batch = [event(customer_a, "shared", ts=ago(minutes=3)), event(customer_b, "shared", ts=ago())]
    body = send(operator(), batch).json()
    assert body["accepted"] == 2


# --- Not a batch: 400 and 415 ----------------------------------------------------------


def test_malformed_json_is_a_parse_error():
    assert_error(send(operator(), b'[{"idempotency_key": "half'), 400, "parse_error")


@pytest.mark.parametrize(
    "body",
    [b"42", b'"events"', b"null", b"{}", b'{"events": "many"}', b'{"evts": []}',
     b'{"events": [], "dry_run": true}'],
)  # fmt: skip
def test_json_that_is_not_a_batch_is_refused(body):
    error = assert_error(send(operator(), body), 400, "invalid_batch")
    assert "JSON array" in error["message"]


def test_empty_body_is_not_a_batch():
    assert_error(operator().post(EVENTS), 400, "invalid_batch")


def test_form_data_is_an_unsupported_media_type():
    response = operator().post(EVENTS, {"idempotency_key": "form"})
    assert_error(response, 415, "unsupported_media_type")


# --- Too large: 413 ---------------------------------------------------------------------


def test_body_over_the_byte_limit_is_refused_with_the_limit(customer_a, meters):
    batch = [event(customer_a, f"big-{i}", ts=ago(minutes=1), note="x" * 100) for i in range(20)]
    client = operator()
    with override_settings(METERING_EVENTS_MAX_BODY_BYTES=2_000):
        error = assert_error(send(client, batch), 413, "payload_too_large")
    assert "2,000 bytes" in error["message"]
    assert not UsageEvent.objects.exists()


def test_default_byte_limit_is_ten_mebibytes_and_named_in_the_message():
    assert settings.METERING_EVENTS_MAX_BODY_BYTES == 10 * 1024 * 1024
    # The declared length alone is enough: the body is never read (a FakePayload would
    # raise if more than its 2 bytes were read).
    response = send(operator(), b"[]", CONTENT_LENGTH=str(10 * 1024 * 1024 + 1))
    error = assert_error(response, 413, "payload_too_large")
    assert "10 MiB" in error["message"]


def test_more_than_ten_thousand_events_is_refused_as_a_whole(customer_a, meters):
    batch = [event(customer_a, f"n-{i}", ts=ago(minutes=1)) for i in range(10_001)]
    error = assert_error(send(operator(), batch), 413, "batch_too_large")
    assert "10,000" in error["message"]
    assert not UsageEvent.objects.exists()


def test_ten_thousand_events_are_one_batch(customer_a, meters):
    batch = [event(customer_a, f"n-{i}", ts=ago(seconds=i % 3600)) for i in range(10_000)]
    body = send(operator(), batch).json()
    assert body["accepted"] == 10_000 and len(body["results"]) == 10_000
    assert UsageEvent.objects.count() == 10_000


# --- Who may send -----------------------------------------------------------------------


def test_customer_key_may_not_send_events(customer_a, customer_a_token, meters):
    response = send(api(customer_a_token), [event(customer_a, "mine", ts=ago())])
    error = assert_error(response, 403, "insufficient_scope")
    assert "events:write" in error["message"]
    assert not UsageEvent.objects.exists()


def test_customer_key_is_refused_even_holding_the_scope(customer_a, customer_b, meters):
    """events:write is operator-only; a key forced to hold it still cannot send anyone's
    usage (or another tenant's)."""
    key, token = make_api_key(customer=customer_a)
    ApiKey.objects.filter(pk=key.pk).update(scopes=["events:write", "usage:read"])
    response = send(api(token), [event(customer_b, "forged", ts=ago())])
    assert_error(response, 403, "operator_key_required")
    assert not UsageEvent.objects.exists()


def test_operator_key_without_the_scope_is_refused(customer_a, meters):
    _, token = make_api_key(scopes=["usage:read"])
    assert_error(send(api(token), [event(customer_a, "x", ts=ago())]), 403, "insufficient_scope")


def test_request_without_a_key_is_refused():
    assert_error(send(api(), []), 401, "authentication_failed")


def test_future_tolerance_is_five_minutes(customer_a, meters):
    soon = (timezone.now() + timedelta(minutes=4)).isoformat()
    assert send(operator(), [event(customer_a, "soon", ts=soon)]).json()["accepted"] == 1

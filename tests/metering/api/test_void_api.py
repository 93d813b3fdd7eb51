"""POST /api/v1/events/void: usage drops at once, the rows stay, the void is audited."""

import pytest

from accounts.models import ApiKey, AuditLog
from metering import services
from metering.models import UsageEvent
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key
from tests.metering.factories import api_calls_meter, event

from .support import EVENTS, USAGE, VOID, ago, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_key(db):
    return make_api_key(name="billing backend")


@pytest.fixture
def client(operator_key):
    return api(operator_key[1])


@pytest.fixture
def usage_of_a(customer_a, client):
    api_calls_meter()
    batch = [event(customer_a, f"call-{i}", ts=ago(hours=i + 1), region="eu") for i in range(4)]
    assert send(client, batch).json()["accepted"] == 4
    return batch


def _total(client, customer) -> str:
    response = client.get(
        USAGE,
        {"customer": customer.external_id, "meter": "api_call", "start": ago(days=1), "end": ago()},
    )
    assert response.status_code == 200, response.content
    return response.json()["total"]


def test_void_takes_events_out_of_usage_at_once_and_is_audited(
    customer_a, client, operator_key, usage_of_a
):
    assert _total(client, customer_a) == "4"

    response = client.post(
        VOID,
        {
            "customer": "alpha",
            "idempotency_keys": ["call-1", "call-3", "never-sent", "call-1"],
            "reason": "Test traffic from the vendor's staging system",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "voided": 2,
        "results": [
            {"idempotency_key": "call-1", "status": "voided"},
            {"idempotency_key": "call-3", "status": "voided"},
            {"idempotency_key": "never-sent", "status": "not_found"},
        ],
    }
    assert _total(client, customer_a) == "2"
    # The raw rows stay, marked void, and say so in the event list.
    voided = UsageEvent.objects.get(idempotency_key="call-1")
    assert voided.voided_at is not None
    assert voided.void_reason == "Test traffic from the vendor's staging system"
    listed = {e["idempotency_key"]: e for e in client.get(EVENTS).json()["results"]}
    assert listed["call-1"]["voided_at"] and listed["call-0"]["voided_at"] is None
    entry = AuditLog.objects.get(action="usage.events_voided")
    assert entry.customer_id == customer_a.pk
    assert entry.actor_api_key_id == operator_key[0].pk
    assert entry.after == {
        "idempotency_keys": ["call-1", "call-3"],
        "reason": "Test traffic from the vendor's staging system",
    }


def test_voiding_again_reports_already_void_and_changes_nothing(customer_a, client, usage_of_a):
    body = {"customer": "alpha", "idempotency_keys": ["call-0"], "reason": "duplicate send"}
    assert client.post(VOID, body, format="json").json()["voided"] == 1

    again = client.post(VOID, body, format="json").json()

    assert again == {
        "voided": 0,
        "results": [{"idempotency_key": "call-0", "status": "already_void"}],
    }
    assert _total(client, customer_a) == "3"
    assert AuditLog.objects.filter(action="usage.events_voided").count() == 1


def test_voided_key_stays_taken(customer_a, client, usage_of_a):
    """Exactly once is for the event's whole life: resending a voided event does not
    bring it back."""
    client.post(
        VOID,
        {"customer": "alpha", "idempotency_keys": ["call-2"], "reason": "wrong"},
        format="json",
    )
    resent = send(client, [usage_of_a[2]]).json()
    assert resent["results"][0]["status"] == "duplicate"
    assert _total(client, customer_a) == "3"


def test_events_of_a_closed_period_are_not_voided(customer_a, client, usage_of_a):
    closed_through = UsageEvent.objects.get(idempotency_key="call-0").timestamp
    services.usage_close_through(actor=None, customer=customer_a, closed_through=closed_through)

    body = client.post(
        VOID,
        {"customer": "alpha", "idempotency_keys": ["call-3", "call-0"], "reason": "refund"},
        format="json",
    ).json()

    # call-3 (four hours ago) is before the close; call-0 (the close itself) is not.
    assert body["results"] == [
        {"idempotency_key": "call-3", "status": "period_closed"},
        {"idempotency_key": "call-0", "status": "voided"},
    ]


def test_keys_of_another_customer_are_not_found(customer_a, customer_b, client, usage_of_a):
    body = client.post(
        VOID,
        {"customer": "beta", "idempotency_keys": ["call-0"], "reason": "wrong customer"},
        format="json",
    ).json()
    assert body["results"] == [{"idempotency_key": "call-0", "status": "not_found"}]
    assert _total(client, customer_a) == "4"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"idempotency_keys": ["a"], "reason": "x"}, "required", "customer"),
        ({"customer": "ghost", "idempotency_keys": ["a"], "reason": "x"}, "does_not_exist",
         "customer"),
        ({"customer": "alpha", "idempotency_keys": [], "reason": "x"}, "invalid",
         "idempotency_keys"),
        ({"customer": "alpha", "idempotency_keys": "call-1", "reason": "x"}, "not_a_list",
         "idempotency_keys"),
        ({"customer": "alpha", "idempotency_keys": ["a"], "reason": "  "}, "blank", "reason"),
        ({"customer": "alpha", "idempotency_keys": ["a"]}, "required", "reason"),
        ({"customer": "alpha", "idempotency_keys": ["a"], "reason": "x", "force": True},
         "unknown_field", "force"),
    ],
)  # fmt: skip
def test_bad_void_requests_name_the_problem(customer_a, client, usage_of_a, body, code, field):
    assert_error(client.post(VOID, body, format="json"), 400, code, field=field)
    assert not UsageEvent.objects.filter(voided_at__isnull=False).exists()


def test_customer_keys_cannot_void(customer_a, customer_a_token, usage_of_a):
    body = {"customer": "alpha", "idempotency_keys": ["call-0"], "reason": "mine"}
    assert_error(api(customer_a_token).post(VOID, body, format="json"), 403, "insufficient_scope")

    key, token = make_api_key(customer=customer_a)
    ApiKey.objects.filter(pk=key.pk).update(scopes=["events:write"])
    assert_error(api(token).post(VOID, body, format="json"), 403, "operator_key_required")
    assert not UsageEvent.objects.filter(voided_at__isnull=False).exists()

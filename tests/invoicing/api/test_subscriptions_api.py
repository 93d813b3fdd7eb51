"""/api/v1/subscriptions: operators put customers on plans; everyone reads their own."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditLog
from invoicing.models import Subscription
from tests.accounts.api.support import assert_error
from tests.accounts.factories import CustomerFactory
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter

from . import SUBSCRIPTIONS, customer_client, forced_customer_client, operator

pytestmark = pytest.mark.django_db

OCT = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def meter():
    return api_calls_meter()


@pytest.fixture
def growth(meter):
    plan_version(components=[flat("99.00"), per_unit(meter, "0.002", included="1000")])
    return plan_version(components=[flat("109.00"), per_unit(meter, "0.002", included="1000")])


@pytest.fixture
def scale(meter):
    return plan_version(code="scale", components=[flat("310.00"), per_unit(meter, "0.001")])


def test_operator_subscribes_a_customer_to_the_latest_version(customer_a, growth):
    response = operator().post(
        SUBSCRIPTIONS,
        {"customer": "alpha", "plan": "growth", "started_at": "2026-10-01T00:00:00Z"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        "id": body["id"],
        "customer": "alpha",
        "plan": "growth",
        "version": 2,
        "interval": "month",
        "currency": "USD",
        "status": "active",
        "started_at": "2026-10-01T00:00:00Z",
        "billing_anchor": "2026-10-01T00:00:00Z",
        "ends_at": None,
        "canceled_at": None,
        "billed_through": "2026-10-01T00:00:00Z",
        "current_period_start": "2026-10-01T00:00:00Z",
        "current_period_end": "2026-11-01T00:00:00Z",
        "phases": [
            {"plan": "growth", "version": 2, "starts_at": "2026-10-01T00:00:00Z", "ends_at": None}
        ],
        "created_at": body["created_at"],
    }
    assert AuditLog.objects.get(action="subscription.created").actor_api_key is not None


def test_a_named_version_and_anchor_are_kept(customer_a, growth):
    response = operator().post(
        SUBSCRIPTIONS,
        {
            "customer": "alpha",
            "plan": "growth",
            "version": 1,
            "started_at": "2026-10-20T12:00:00+02:00",
            "billing_anchor": "2026-10-01T00:00:00Z",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["version"], body["started_at"]) == (1, "2026-10-20T10:00:00Z")
    assert body["current_period_end"] == "2026-11-01T00:00:00Z"


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"plan": "nope"}, 400, "unknown_plan", "plan"),
        ({"version": 7}, 400, "unknown_version", "version"),
        ({"customer": "ghost"}, 400, "does_not_exist", "customer"),
        ({"started_at": "2026-10-01T00:00:00"}, 400, "invalid", "started_at"),
        ({"billing_anchor": "2026-10-02T00:00:00Z"}, 400, "invalid", "billing_anchor"),
        ({"trial_days": 14}, 400, "unknown_field", "trial_days"),
        ({"version": "two"}, 400, "invalid", "version"),
    ],
)
def test_bad_subscriptions_are_refused_by_name(customer_a, growth, change, status, code, field):
    body = {"customer": "alpha", "plan": "growth", "started_at": "2026-10-01T00:00:00Z"}
    response = operator().post(SUBSCRIPTIONS, {**body, **change}, format="json")
    assert_error(response, status, code, field=field)
    assert not Subscription.objects.exists()


def test_one_active_subscription_per_customer_and_the_currency_must_match(customer_a, growth):
    client = operator()
    body = {"customer": "alpha", "plan": "growth"}
    assert client.post(SUBSCRIPTIONS, body, format="json").status_code == 201
    assert_error(client.post(SUBSCRIPTIONS, body, format="json"), 409, "already_subscribed")

    CustomerFactory(external_id="euro", currency="EUR")
    response = client.post(SUBSCRIPTIONS, {**body, "customer": "euro"}, format="json")
    assert_error(response, 400, "currency_mismatch", field="plan")


def test_customers_read_only_their_own_subscriptions(customer_a, customer_b, growth):
    mine = subscribe(customer_a, growth, at=OCT)
    theirs = subscribe(customer_b, growth, at=OCT)
    client = customer_client(customer_a)

    listed = client.get(SUBSCRIPTIONS).json()["results"]
    assert [s["id"] for s in listed] == [mine.pk]
    assert client.get(f"{SUBSCRIPTIONS}/{mine.pk}").json()["customer"] == "alpha"
    assert_error(client.get(f"{SUBSCRIPTIONS}/{theirs.pk}"), 404, "not_found")
    # Naming another customer is a 404 too, exactly as for one that does not exist.
    assert_error(client.get(SUBSCRIPTIONS, {"customer": "beta"}), 404, "not_found")
    assert_error(client.get(SUBSCRIPTIONS, {"customer": "nobody"}), 404, "not_found")


def test_operators_see_everyones_and_filter_by_customer_and_status(customer_a, customer_b, growth):
    mine = subscribe(customer_a, growth, at=OCT)
    theirs = subscribe(customer_b, growth, at=OCT)
    client = operator()

    assert {s["id"] for s in client.get(SUBSCRIPTIONS).json()["results"]} == {mine.pk, theirs.pk}
    only_b = client.get(SUBSCRIPTIONS, {"customer": "beta"}).json()["results"]
    assert [s["id"] for s in only_b] == [theirs.pk]
    assert client.get(SUBSCRIPTIONS, {"status": "canceled"}).json()["results"] == []
    assert_error(
        client.get(SUBSCRIPTIONS, {"custmer": "beta"}), 400, "unknown_field", field="custmer"
    )


def test_change_plan_starts_a_new_phase(customer_a, growth, scale):
    subscription = subscribe(customer_a, growth, at=OCT)
    at = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    url = f"{SUBSCRIPTIONS}/{subscription.pk}/change-plan"

    response = operator().post(url, {"plan": "scale", "at": at.isoformat()}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["plan"], body["version"]) == ("scale", 1)
    assert [(p["plan"], p["ends_at"] is None) for p in body["phases"]] == [
        ("growth", False),
        ("scale", True),
    ]
    assert_error(operator().post(url, {"plan": "scale"}, format="json"), 409, "same_plan")
    assert_error(
        operator().post(url, {"plan": "growth", "version": 9}, format="json"),
        400,
        "unknown_version",
        field="version",
    )


def test_cancel_at_period_end_then_now(customer_a, growth):
    subscription = subscribe(customer_a, growth, at=timezone.now() - timedelta(days=3))
    url = f"{SUBSCRIPTIONS}/{subscription.pk}/cancel"
    client = operator()

    assert_error(client.post(url, {}, format="json"), 400, "required", field="at_period_end")
    later = client.post(url, {"at_period_end": True}, format="json").json()
    assert later["status"] == "active"  # still billing to the period's end
    assert later["ends_at"] == later["current_period_end"]

    now = client.post(url, {"at_period_end": False}, format="json").json()
    assert now["status"] == "canceled" and now["canceled_at"]
    assert_error(
        client.post(url, {"at_period_end": False}, format="json"), 409, "subscription_ended"
    )
    assert AuditLog.objects.filter(action="subscription.canceled").count() == 2


def test_only_operator_keys_change_subscriptions(customer_a, growth, scale):
    subscription = subscribe(customer_a, growth, at=OCT)
    body = {"customer": "alpha", "plan": "growth"}
    client = customer_client(customer_a)
    forced = forced_customer_client(customer_a, ["subscriptions:write", "invoices:read"])

    for attempt in (client, forced):
        expected = "insufficient_scope" if attempt is client else "operator_key_required"
        assert_error(attempt.post(SUBSCRIPTIONS, body, format="json"), 403, expected)
        assert_error(
            attempt.post(
                f"{SUBSCRIPTIONS}/{subscription.pk}/change-plan", {"plan": "scale"}, format="json"
            ),
            403,
            expected,
        )
        assert_error(
            attempt.post(
                f"{SUBSCRIPTIONS}/{subscription.pk}/cancel", {"at_period_end": False}, format="json"
            ),
            403,
            expected,
        )
    subscription.refresh_from_db()
    assert (subscription.status, subscription.plan_version_id) == ("active", growth.pk)

"""Stripe's webhooks at /webhooks/stripe/: signed by the SDK, stored once, never backwards."""

import json
import time
from datetime import UTC, datetime

import pytest
import stripe
from django.db import IntegrityError, transaction
from django.test import Client, override_settings

from accounts.models import AuditLog
from invoicing import services
from invoicing.models import Invoice, StripeWebhookEvent
from invoicing.services.stripe_webhooks import TRANSITIONS
from tests.concurrency import in_threads
from tests.invoicing_stripe.test_sync import finalized_invoice

pytestmark = pytest.mark.django_db

URL = "/webhooks/stripe/"
SECRET = "whsec_test"  # what stripe_env configures


@pytest.fixture
def invoice(customer_a):
    return finalized_invoice(customer_a)


@pytest.fixture
def synced(stripe_env, invoice):
    """Our invoice, pushed to the fake Stripe: (invoice, Stripe invoice id)."""
    services.invoice_stripe_sync(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    return invoice


def sign(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, timestamp)


def post(client, payload: bytes, signature: str | None = "sign"):
    headers = {}
    if signature is not None:
        headers["HTTP_STRIPE_SIGNATURE"] = sign(payload) if signature == "sign" else signature
    return client.post(URL, data=payload, content_type="application/json", **headers)


def event_for(env, type: str, invoice: Invoice) -> bytes:
    return env.fake.build_event(type, env.fake.invoice(invoice.stripe_invoice_id))


def status_of(invoice) -> str:
    invoice.refresh_from_db()
    return invoice.status


@pytest.mark.parametrize("type", ["invoice.paid", "invoice.payment_succeeded"])
def test_a_payment_marks_the_invoice_paid(stripe_env, synced, client, type):
    stripe_env.client().v1.invoices.pay(synced.stripe_invoice_id, {"paid_out_of_band": True})
    payload = event_for(stripe_env, type, synced)

    response = post(client, payload)

    assert response.status_code == 200
    event = json.loads(payload)
    assert response.json() == {
        "received": True,
        "event": event["id"],
        "duplicate": False,
        "outcome": f"applied: {synced.number} open -> paid",
    }
    assert status_of(synced) == "paid"
    paid_at = event["data"]["object"]["status_transitions"]["paid_at"]
    assert synced.paid_at == datetime.fromtimestamp(paid_at, UTC)
    stored = StripeWebhookEvent.objects.get()
    assert (stored.event_id, stored.type, stored.payload) == (event["id"], type, event)
    assert stored.stripe_created == datetime.fromtimestamp(event["created"], UTC)
    audit = AuditLog.objects.get(action="invoice.paid")
    assert (audit.object_id, audit.before, audit.after["status"]) == (
        str(synced.pk),
        {"status": "open"},
        "paid",
    )
    assert audit.after["stripe_event"] == event["id"]


def test_a_failed_payment_is_applied(stripe_env, synced, client):
    response = post(client, event_for(stripe_env, "invoice.payment_failed", synced))

    assert response.status_code == 200
    assert status_of(synced) == "payment_failed"
    assert AuditLog.objects.filter(action="invoice.payment_failed").count() == 1


def test_marked_uncollectible_is_applied(stripe_env, synced, client):
    stripe_env.client().v1.invoices.mark_uncollectible(synced.stripe_invoice_id)

    response = post(client, event_for(stripe_env, "invoice.marked_uncollectible", synced))

    assert response.status_code == 200
    assert status_of(synced) == "uncollectible"
    assert AuditLog.objects.filter(action="invoice.marked_uncollectible").count() == 1


def test_a_replayed_event_is_processed_once(stripe_env, synced, client):
    payload = event_for(stripe_env, "invoice.paid", synced)
    first = post(client, payload)
    synced.refresh_from_db()
    paid_at = synced.paid_at

    again = post(client, payload)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["duplicate"] is True
    assert again.json()["outcome"] == first.json()["outcome"]
    assert StripeWebhookEvent.objects.count() == 1
    assert AuditLog.objects.filter(action="invoice.paid").count() == 1
    synced.refresh_from_db()
    assert synced.paid_at == paid_at


def test_a_late_payment_failure_never_undoes_a_payment(stripe_env, synced, client):
    failed = event_for(stripe_env, "invoice.payment_failed", synced)  # older, arrives last
    stripe_env.client().v1.invoices.pay(synced.stripe_invoice_id, {"paid_out_of_band": True})
    paid = event_for(stripe_env, "invoice.paid", synced)

    assert post(client, paid).status_code == 200
    response = post(client, failed)

    assert response.status_code == 200
    assert response.json()["outcome"] == (
        f"ignored: {synced.number} is paid; paid -> payment_failed is not allowed"
    )
    assert status_of(synced) == "paid"
    assert StripeWebhookEvent.objects.count() == 2
    assert AuditLog.objects.filter(action__startswith="invoice.pa").count() == 1


# For each event type: from each finalized status, the status after the event. "void" goes
# last: nothing leaves it, so the same invoice walks the whole row.
EXPECTED = {
    "invoice.paid": {
        "open": "paid", "payment_failed": "paid", "uncollectible": "paid", "paid": "paid",
        "void": "void",
    },
    "invoice.payment_succeeded": {
        "open": "paid", "payment_failed": "paid", "uncollectible": "paid", "paid": "paid",
        "void": "void",
    },
    "invoice.payment_failed": {
        "open": "payment_failed", "payment_failed": "payment_failed",
        "uncollectible": "uncollectible", "paid": "paid", "void": "void",
    },
    "invoice.marked_uncollectible": {
        "open": "uncollectible", "payment_failed": "uncollectible",
        "uncollectible": "uncollectible", "paid": "paid", "void": "void",
    },
}  # fmt: skip
AUDITED = ["invoice.paid", "invoice.payment_failed", "invoice.marked_uncollectible"]


@pytest.mark.parametrize("type", EXPECTED)
def test_each_transition(invoice, client, settings, fake_stripe_server, type):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    for before, after in EXPECTED[type].items():
        Invoice.objects.filter(pk=invoice.pk).update(status=before, stripe_invoice_id="in_t")
        audits = AuditLog.objects.filter(action__in=AUDITED).count()
        payload = fake_stripe_server.build_event(type, {"id": "in_t", "object": "invoice"})

        response = post(client, payload)

        assert response.status_code == 200
        assert (before, status_of(invoice)) == (before, after)
        outcome = StripeWebhookEvent.objects.get(pk=json.loads(payload)["id"]).outcome
        if before != after:
            expected = "applied"
        elif after == TRANSITIONS[type][0]:
            expected = "unchanged"
        else:
            expected = "ignored"
        assert outcome.startswith(expected), (before, outcome)
        assert AuditLog.objects.filter(action__in=AUDITED).count() == audits + (before != after)


def test_a_stripe_invoice_belongs_to_one_invoice_only(invoice, customer_b):
    """The database keeps the link one-to-one (and indexes the webhook's lookup)."""
    other = finalized_invoice(customer_b)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id="in_shared")
    Invoice.objects.filter(pk=other.pk).update(stripe_invoice_id="")  # unpushed: any number
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=other.pk).update(stripe_invoice_id="in_shared")


def test_the_transition_table_is_what_the_tests_cover():
    assert {t: (to, sorted(src)) for t, (to, src) in TRANSITIONS.items()} == {
        "invoice.paid": ("paid", ["open", "payment_failed", "uncollectible"]),
        "invoice.payment_succeeded": ("paid", ["open", "payment_failed", "uncollectible"]),
        "invoice.payment_failed": ("payment_failed", ["open"]),
        "invoice.marked_uncollectible": ("uncollectible", ["open", "payment_failed"]),
    }


def test_an_event_for_an_unknown_invoice_is_recorded(stripe_env, client):
    payload = stripe_env.fake.build_event(
        "invoice.paid", {"id": "in_elsewhere", "object": "invoice"}
    )

    response = post(client, payload)

    assert response.status_code == 200
    assert StripeWebhookEvent.objects.get().outcome == "unknown invoice: in_elsewhere"
    assert not AuditLog.objects.filter(action="invoice.paid").exists()


def test_an_event_type_we_do_not_handle_is_recorded(stripe_env, synced, client):
    response = post(client, event_for(stripe_env, "invoice.finalized", synced))

    assert response.status_code == 200
    assert StripeWebhookEvent.objects.get().outcome == "ignored: event type not handled"
    assert status_of(synced) == "open"


def test_a_bad_signature_answers_400_and_stores_nothing(stripe_env, synced, client):
    payload = event_for(stripe_env, "invoice.paid", synced)
    forgeries = {
        "tampered body": (payload.replace(b'"invoice.paid"', b'"invoice.voided"'), sign(payload)),
        "wrong secret": (payload, sign(payload, secret="whsec_other")),
        "too old": (payload, sign(payload, timestamp=int(time.time()) - 3600)),
        "garbage": (payload, "t=1,v1=deadbeef"),
        "missing": (payload, None),
    }
    for name, (body, signature) in forgeries.items():
        response = post(client, body, signature=signature)

        assert response.status_code == 400, name
        assert response.json()["error"]["code"] == "invalid_signature", name
        assert response.json()["error"]["message"], name
    assert not StripeWebhookEvent.objects.exists()
    assert status_of(synced) == "open"
    assert post(client, payload).status_code == 200  # the genuine one still goes through


def test_a_signed_body_that_is_not_an_event_answers_400(stripe_env, client):
    response = post(client, b'{"hello": "world"}')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payload"
    assert not StripeWebhookEvent.objects.exists()


def test_without_a_webhook_secret_nothing_is_accepted(stripe_env, synced, client, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""

    response = post(client, event_for(stripe_env, "invoice.paid", synced))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webhooks_not_configured"
    assert not StripeWebhookEvent.objects.exists()


def test_only_post_is_allowed(client):
    assert client.get(URL).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_end_to_end_finalize_sync_pay_webhook_over_http(stripe_env, customer_a, live_server):
    invoice = finalized_invoice(customer_a)  # commits: the sync runs after commit (eager)
    invoice.refresh_from_db()
    assert invoice.stripe_invoice_id == stripe_env.fake.invoices[0]["id"]

    stripe_env.client().v1.invoices.pay(invoice.stripe_invoice_id, {"paid_out_of_band": True})
    delivery = stripe_env.fake.send_event(
        "invoice.paid",
        stripe_env.fake.invoice(invoice.stripe_invoice_id),
        live_server.url + URL,
        stripe_env.webhook_secret,
    )

    assert delivery.status == 200
    assert status_of(invoice) == "paid"
    assert stripe_env.fake.deliver(delivery.payload, live_server.url + URL, SECRET) == 200
    assert StripeWebhookEvent.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b'"an event"',
        b"null",
        b'{"id": "evt_1", "type": "invoice.paid", "created": 99999999999999,'
        b' "data": {"object": {"id": "in_1"}}}',
        b'{"id": "evt_1", "type": "invoice.paid", "created": true,'
        b' "data": {"object": {"id": "in_1"}}}',
    ],
    ids=["list", "string", "null", "created out of range", "created not a time"],
)
def test_a_signed_body_that_is_json_but_not_an_event_answers_400(stripe_env, client, body):
    response = post(client, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payload"
    assert not StripeWebhookEvent.objects.exists()


def test_a_body_that_is_not_utf8_is_a_bad_signature(stripe_env, client):
    response = post(client, b'{"id": "\xff"}', signature="t=1,v1=deadbeef")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_one_event_at_once_apply_it_once(stripe_env, customer_a):
    with override_settings(STRIPE_API_KEY=""):  # no sync after the finalize commits
        invoice = finalized_invoice(customer_a)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id="in_twice")
    payload = stripe_env.fake.build_event("invoice.paid", {"id": "in_twice", "object": "invoice"})

    responses = in_threads(2, lambda i: post(Client(), payload).json())

    assert sorted(r["duplicate"] for r in responses) == [False, True]
    assert {r["outcome"] for r in responses} == {f"applied: {invoice.number} open -> paid"}
    assert status_of(invoice) == "paid"
    assert AuditLog.objects.filter(action="invoice.paid").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_payment_and_an_older_failure_at_once_end_paid(stripe_env, customer_a):
    with override_settings(STRIPE_API_KEY=""):
        invoice = finalized_invoice(customer_a)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id="in_race")
    obj = {"id": "in_race", "object": "invoice"}
    payloads = [
        stripe_env.fake.build_event("invoice.payment_failed", obj),
        stripe_env.fake.build_event("invoice.paid", obj),
    ]

    in_threads(2, lambda i: post(Client(), payloads[i]).status_code)

    assert status_of(invoice) == "paid"
    assert StripeWebhookEvent.objects.count() == 2

"""Invoices and credit notes pushed to Stripe exactly once, over HTTP through the real SDK.

localstripe holds the customers; the fake Stripe holds invoices, items and credit notes
(see tests/stripe_servers). Faults are in test_sync_faults.py.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from accounts.models import AuditLog
from invoicing import services, tasks
from invoicing.models import CreditNote, Invoice, StripeCustomer
from invoicing.services import CreditRequest
from invoicing.services.stripe_sync import StripeSyncConflict
from invoicing.stripe_gateway import StripeRejected, StripeUnavailable
from tests.concurrency import in_threads
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter

pytestmark = pytest.mark.django_db

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
FINALIZED_AT = NOV + timedelta(hours=2)


def finalized_invoice(customer, *, usage_meter=None) -> Invoice:
    """$50 platform + $30 support, 10% off: 5,000 + 3,000 - 800 cents (a negative line).

    With ``usage_meter``, the support line is that meter's usage at $1.00, with no usage.
    """
    second = per_unit(usage_meter, "1.00") if usage_meter else flat("30.00", "Support")
    version = plan_version(
        components=[flat("50.00"), second, {"kind": "percent_discount", "percent": "10"}]
    )
    subscription = subscribe(customer, version, at=OCT)
    draft = services.period_close(subscription_id=subscription.pk, now=NOV)
    return services.invoice_finalize(actor=None, invoice=draft, now=FINALIZED_AT)


@pytest.fixture
def invoice(customer_a):
    return finalized_invoice(customer_a)


def posts(env, path=r""):
    return [r for r in env.fake.requests if r.method == "POST" and r.path.startswith(path)]


def localstripe_customers(env) -> list:
    return env.client().v1.customers.list().data


# --- invoices ----------------------------------------------------------------------------


def test_a_full_sync_makes_one_finalized_stripe_invoice_matching_our_lines(stripe_env, invoice):
    synced = services.invoice_stripe_sync(invoice_id=invoice.pk)

    [remote] = stripe_env.fake.invoices
    assert synced.stripe_invoice_id == remote["id"]
    assert synced.stripe_synced_at is not None
    assert (synced.stripe_sync_attempts, synced.stripe_last_error) == (1, "")
    assert remote["status"] == "open"
    assert remote["collection_method"] == "send_invoice"
    assert remote["days_until_due"] == 30
    assert remote["auto_advance"] is False
    assert remote["currency"] == "usd"
    assert remote["metadata"] == {
        "meterbook_invoice": str(invoice.pk),
        "meterbook_number": invoice.number,
    }
    assert remote["total"] == remote["amount_due"] == invoice.total_minor == 7200
    ours = [(str(line.pk), line.amount_minor) for line in invoice.lines.order_by("position")]
    theirs = [(i["metadata"]["meterbook_line"], i["amount"]) for i in stripe_env.fake.invoice_items]
    assert theirs == ours == [(theirs[0][0], 5000), (theirs[1][0], 3000), (theirs[2][0], -800)]
    assert {i["invoice"] for i in stripe_env.fake.invoice_items} == {remote["id"]}

    [customer] = localstripe_customers(stripe_env)
    assert customer.id == StripeCustomer.objects.get(customer=invoice.customer).stripe_customer_id
    assert customer.email == invoice.customer.billing_email
    assert customer.metadata["meterbook_customer"] == str(invoice.customer.pk)
    assert customer.metadata["meterbook_external_id"] == "alpha"

    keys = [r.idempotency_key for r in posts(stripe_env)]
    lines = [f"meterbook:invoice:{invoice.pk}:line:{line.pk}" for line in invoice.lines.all()]
    assert keys == [
        f"meterbook:invoice:{invoice.pk}:create",
        *lines,
        f"meterbook:invoice:{invoice.pk}:finalize",
    ]


def test_running_the_sync_again_sends_nothing(stripe_env, invoice):
    assert tasks.invoice_stripe_sync.apply(args=[invoice.pk]).get() is True
    requests = len(stripe_env.proxy.log)

    assert tasks.invoice_stripe_sync.apply(args=[invoice.pk]).get() is True
    again = services.invoice_stripe_sync(invoice_id=invoice.pk)

    assert len(stripe_env.proxy.log) == requests
    assert len(stripe_env.fake.invoices) == 1
    assert again.stripe_sync_attempts == 1
    assert tasks.invoice_stripe_sync.autoretry_for == (StripeUnavailable,)


def test_customers_are_created_once(stripe_env, invoice, customer_b):
    first = services.stripe_customer_ensure(customer=invoice.customer)
    second = services.stripe_customer_ensure(customer=invoice.customer)
    services.invoice_stripe_sync(invoice_id=invoice.pk)
    other = services.stripe_customer_ensure(customer=customer_b)

    assert first == second
    assert other.stripe_customer_id != first.stripe_customer_id
    assert len(localstripe_customers(stripe_env)) == 2
    assert len(stripe_env.proxy.passages("POST", r"^/v1/customers$")) == 2
    assert AuditLog.objects.filter(action="stripe_customer.created").count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_syncs_at_once_make_one_stripe_invoice_and_one_customer(stripe_env, customer_a):
    with override_settings(STRIPE_API_KEY=""):  # no sync after the finalize commits
        invoice = finalized_invoice(customer_a)

    results = in_threads(2, lambda i: services.invoice_stripe_sync(invoice_id=invoice.pk))

    [remote] = stripe_env.fake.invoices
    assert [r.stripe_invoice_id for r in results] == [remote["id"]] * 2
    assert remote["status"] == "open" and remote["total"] == 7200
    assert len(stripe_env.fake.invoice_items) == 3
    assert len(localstripe_customers(stripe_env)) == 1
    invoice.refresh_from_db()
    assert invoice.stripe_invoice_id == remote["id"]
    assert invoice.stripe_synced_at is not None
    assert StripeCustomer.objects.count() == 1


def test_zero_lines_are_not_pushed(stripe_env, customer_a):
    invoice = finalized_invoice(customer_a, usage_meter=api_calls_meter())
    amounts = sorted(invoice.lines.values_list("amount_minor", flat=True))
    assert amounts == [-500, 0, 5000]  # the usage line has no usage

    services.invoice_stripe_sync(invoice_id=invoice.pk)

    assert sorted(i["amount"] for i in stripe_env.fake.invoice_items) == [
        a for a in amounts if a != 0
    ]
    assert stripe_env.fake.invoices[0]["total"] == invoice.total_minor


def test_drafts_are_not_pushed(stripe_env, customer_a):
    version = plan_version(components=[flat("50.00")])
    subscription = subscribe(customer_a, version, at=OCT)
    draft = services.period_close(subscription_id=subscription.pk, now=NOV)

    assert services.invoice_stripe_sync(invoice_id=draft.pk) is None
    assert stripe_env.proxy.log == []


def test_without_an_api_key_sync_is_a_no_op(stripe_env, invoice, settings):
    settings.STRIPE_API_KEY = ""

    assert services.invoice_stripe_sync(invoice_id=invoice.pk) is None
    assert services.credit_note_stripe_sync(credit_note_id=0) is None
    assert tasks.invoice_stripe_sync.apply(args=[invoice.pk]).get() is False
    assert stripe_env.proxy.log == []
    invoice.refresh_from_db()
    assert (invoice.stripe_invoice_id, invoice.stripe_sync_attempts) == ("", 0)


def test_finalizing_queues_the_sync_after_commit(
    stripe_env, customer_a, django_capture_on_commit_callbacks
):
    version = plan_version(components=[flat("50.00")])
    subscription = subscribe(customer_a, version, at=OCT)
    draft = services.period_close(subscription_id=subscription.pk, now=NOV)

    with django_capture_on_commit_callbacks() as callbacks:
        services.invoice_finalize(actor=None, invoice=draft, now=FINALIZED_AT)
    assert stripe_env.fake.invoices == []  # nothing before the commit
    for callback in callbacks:
        callback()  # the commit: the (eager) task runs

    [remote] = stripe_env.fake.invoices
    draft.refresh_from_db()
    assert draft.stripe_invoice_id == remote["id"] and remote["status"] == "open"


def test_the_sweep_requeues_what_the_fast_path_lost(stripe_env, invoice, customer_b):
    draft_only = subscribe(customer_b, plan_version(components=[flat("9.00")]), at=OCT)
    services.period_close(subscription_id=draft_only.pk, now=NOV)

    assert tasks.stripe_sync_sweep.apply().get() == 1  # finalized hours ago, never synced

    invoice.refresh_from_db()
    assert invoice.stripe_invoice_id == stripe_env.fake.invoices[0]["id"]
    assert services.stripe_sync_pending() == ([], [])


def test_a_stripe_total_that_disagrees_stops_before_finalizing(stripe_env, invoice):
    stripe_env.proxy.on("POST", r"/finalize$").respond(400)  # the first attempt stops there
    with pytest.raises(StripeRejected):
        services.invoice_stripe_sync(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    # Meanwhile someone adds an item to the Stripe draft by hand.
    stripe_env.client().v1.invoice_items.create(
        params={"invoice": invoice.stripe_invoice_id, "amount": 100, "currency": "usd"}
    )

    with pytest.raises(StripeSyncConflict):
        services.invoice_stripe_sync(invoice_id=invoice.pk)

    invoice.refresh_from_db()
    assert invoice.stripe_synced_at is None
    assert invoice.stripe_last_error.startswith("StripeSyncConflict (stripe_conflict): ")
    assert "7300" in invoice.stripe_last_error and "7200" in invoice.stripe_last_error
    assert stripe_env.fake.invoices[0]["status"] == "draft"


# --- voids -------------------------------------------------------------------------------


def test_a_void_after_the_sync_is_pushed(stripe_env, invoice, django_capture_on_commit_callbacks):
    services.invoice_stripe_sync(invoice_id=invoice.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.invoice_void(actor=None, invoice=invoice, reason="Wrong entity")

    [remote] = stripe_env.fake.invoices
    assert remote["status"] == "void"
    assert stripe_env.fake.credit_notes == []  # the void's credit note: covered by the void
    assert posts(stripe_env, "/v1/credit_notes") == []
    invoice.refresh_from_db()
    assert invoice.stripe_synced_at >= invoice.voided_at

    # Again: one read to confirm, no write.
    writes = len(posts(stripe_env))
    services.invoice_stripe_sync(invoice_id=invoice.pk)
    assert len(posts(stripe_env)) == writes


def test_a_void_before_any_sync_creates_finalizes_and_voids_one_invoice(stripe_env, invoice):
    services.invoice_void(actor=None, invoice=invoice, reason="Wrong entity")

    services.invoice_stripe_sync(invoice_id=invoice.pk)

    [remote] = stripe_env.fake.invoices
    assert remote["status"] == "void" and remote["total"] == 7200
    assert [r.idempotency_key.rsplit(":", 1)[-1] for r in posts(stripe_env)][-2:] == [
        "finalize",
        "void",
    ]


def test_a_void_while_a_sync_runs_is_pushed_by_the_same_run(stripe_env, invoice, monkeypatch):
    from invoicing.services import stripe_sync

    real_push = stripe_sync._invoice_push
    voided = []

    def push_then_void(api, plan):
        real_push(api, plan)
        if not voided:  # finance voids while the first round talks to Stripe
            voided.append(services.invoice_void(actor=None, invoice=invoice, reason="Oops"))

    monkeypatch.setattr(stripe_sync, "_invoice_push", push_then_void)

    synced = services.invoice_stripe_sync(invoice_id=invoice.pk)

    assert synced.status == "void"
    assert stripe_env.fake.invoices[0]["status"] == "void"
    assert synced.stripe_sync_attempts == 2  # the first round's mark found the void


# --- credit notes ------------------------------------------------------------------------


def issue_credit(invoice, amount=1200, reason="billing_error"):
    support = invoice.lines.get(description="Support")
    return services.credit_note_issue(
        actor=None,
        invoice=invoice,
        reason=reason,
        memo="Retried requests were counted",
        lines=[CreditRequest(support.pk, amount)],
    )


def test_a_credit_note_is_pushed_once(stripe_env, invoice):
    services.invoice_stripe_sync(invoice_id=invoice.pk)
    note = issue_credit(invoice)

    first = services.credit_note_stripe_sync(credit_note_id=note.pk)
    second = services.credit_note_stripe_sync(credit_note_id=note.pk)

    [remote] = stripe_env.fake.credit_notes
    assert first.stripe_credit_note_id == second.stripe_credit_note_id == remote["id"]
    assert first.stripe_synced_at is not None
    invoice.refresh_from_db()
    assert remote["invoice"] == invoice.stripe_invoice_id
    assert (remote["amount"], remote["reason"]) == (1200, "order_change")
    assert remote["memo"] == "Retried requests were counted"
    assert remote["metadata"] == {
        "meterbook_credit_note": str(note.pk),
        "meterbook_number": note.number,
        "meterbook_reason": "billing_error",
    }
    assert [r.idempotency_key for r in posts(stripe_env, "/v1/credit_notes")] == [
        f"meterbook:credit_note:{note.pk}:create"
    ]
    assert stripe_env.fake.invoice(remote["invoice"])["amount_due"] == 7200 - 1200


def test_a_credit_note_on_an_unsynced_invoice_syncs_the_invoice_first(stripe_env, invoice):
    note = issue_credit(invoice, reason="goodwill")

    assert tasks.credit_note_stripe_sync.apply(args=[note.pk]).get() is True

    [remote_invoice] = stripe_env.fake.invoices
    [remote_note] = stripe_env.fake.credit_notes
    assert remote_invoice["status"] == "open"
    assert remote_note["invoice"] == remote_invoice["id"]
    assert remote_note["reason"] is None  # Stripe has no "goodwill"; ours is in metadata


def test_issuing_a_credit_note_queues_its_sync_after_commit(
    stripe_env, invoice, django_capture_on_commit_callbacks
):
    services.invoice_stripe_sync(invoice_id=invoice.pk)

    with django_capture_on_commit_callbacks(execute=True):
        note = issue_credit(invoice)

    note.refresh_from_db()
    assert note.stripe_credit_note_id == stripe_env.fake.credit_notes[0]["id"]


def test_credit_notes_of_a_void_invoice_are_covered_by_the_void(stripe_env, invoice):
    note = issue_credit(invoice)
    services.invoice_void(actor=None, invoice=invoice, reason="Wrong entity")
    void_note = CreditNote.objects.get(invoice=invoice, reason="invoice_voided")

    for pk in (note.pk, void_note.pk):
        assert services.credit_note_stripe_sync(credit_note_id=pk).stripe_credit_note_id == ""
    services.invoice_stripe_sync(invoice_id=invoice.pk)

    assert stripe_env.fake.credit_notes == []
    assert stripe_env.fake.invoices[0]["status"] == "void"

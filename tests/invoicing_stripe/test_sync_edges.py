"""Stripe sync edges found in review: Stripe's own units, a void made in Stripe, what the
sweep leaves to a person, and no transaction open while Stripe answers."""

from datetime import timedelta

import pytest
from django.db import connection

from invoicing import services
from invoicing.models import CreditNote, Invoice, StripeCustomer
from invoicing.services import CreditRequest, stripe_sync
from invoicing.services.stripe_sync import StripeSyncConflict
from invoicing.stripe_gateway import StripeRejected
from tests.accounts.factories import CustomerFactory
from tests.invoicing.factories import flat, plan_version, subscribe
from tests.invoicing_stripe.test_sync import FINALIZED_AT, NOV, OCT, finalized_invoice

pytestmark = pytest.mark.django_db


def isk_invoice() -> Invoice:
    """5,000 kr platform + 1,200 kr support: ISK has no minor unit in ISO 4217."""
    customer = CustomerFactory(name="Hekla Data", external_id="hekla", currency="ISK")
    version = plan_version(
        code="nordic", currency="ISK", components=[flat("5000"), flat("1200", "Support")]
    )
    subscription = subscribe(customer, version, at=OCT)
    draft = services.period_close(subscription_id=subscription.pk, now=NOV)
    return services.invoice_finalize(actor=None, invoice=draft, now=FINALIZED_AT)


def test_isk_amounts_go_to_stripe_as_two_decimal(stripe_env):
    # Stripe keeps ISK two-decimal in its API (100 = 1 krona): 6,200 kr is 620000.
    invoice = isk_invoice()
    assert invoice.total_minor == 6200

    synced = services.invoice_stripe_sync(invoice_id=invoice.pk)

    [remote] = stripe_env.fake.invoices
    assert synced.stripe_synced_at is not None
    assert remote["currency"] == "isk"
    assert sorted(i["amount"] for i in stripe_env.fake.invoice_items) == [120000, 500000]
    assert remote["total"] == 620000

    support = invoice.lines.get(description="Support")
    note = services.credit_note_issue(
        actor=None,
        invoice=invoice,
        reason="billing_error",
        memo="Support was not used",
        lines=[CreditRequest(support.pk, 200)],
    )
    services.credit_note_stripe_sync(credit_note_id=note.pk)

    [remote_note] = stripe_env.fake.credit_notes
    assert remote_note["amount"] == 20000
    assert stripe_env.fake.invoice(remote["id"])["amount_due"] == 600000


def crash_before_marking_synced(monkeypatch, invoice):
    """Push the invoice to Stripe (open there) but stop before it is marked synced."""
    monkeypatch.setattr(
        stripe_sync, "_invoice_mark_synced", lambda *a, **k: (_ for _ in ()).throw(KeyError)
    )
    with pytest.raises(KeyError):
        services.invoice_stripe_sync(invoice_id=invoice.pk)
    monkeypatch.undo()
    invoice.refresh_from_db()
    assert invoice.stripe_invoice_id and invoice.stripe_synced_at is None


def test_a_stripe_invoice_voided_in_stripe_is_a_conflict_not_synced(
    stripe_env, customer_a, monkeypatch
):
    invoice = finalized_invoice(customer_a)
    crash_before_marking_synced(monkeypatch, invoice)
    stripe_env.client().v1.invoices.void_invoice(invoice.stripe_invoice_id)  # by hand

    with pytest.raises(StripeSyncConflict):
        services.invoice_stripe_sync(invoice_id=invoice.pk)

    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.stripe_synced_at is None
    assert invoice.stripe_last_error.startswith("StripeSyncConflict")
    assert f"{invoice.stripe_invoice_id} is void" in invoice.stripe_last_error


def test_a_round_that_finds_our_own_void_pushed_is_no_conflict(stripe_env, customer_a, monkeypatch):
    # A round decided "not void", then finance voided ours and another run voided Stripe's.
    invoice = finalized_invoice(customer_a)
    crash_before_marking_synced(monkeypatch, invoice)
    _, stale_plan = stripe_sync._invoice_claim(invoice.pk)
    services.invoice_void(actor=None, invoice=invoice, reason="Wrong entity")
    stripe_env.client().v1.invoices.void_invoice(invoice.stripe_invoice_id)

    stripe_sync._invoice_push(stripe_sync._Api.from_settings(lambda s: None), stale_plan)
    synced = services.invoice_stripe_sync(invoice_id=invoice.pk)

    assert synced.stripe_synced_at is not None and synced.stripe_last_error == ""


def test_the_sweep_leaves_credit_notes_of_an_invoice_that_needs_a_person(
    stripe_env, invoice, monkeypatch
):
    monkeypatch.setattr(stripe_sync, "SWEEP_AFTER", timedelta(0))  # the note is new
    note = services.credit_note_issue(
        actor=None, invoice=invoice, reason="duplicate", memo="Charged twice"
    )
    Invoice.objects.filter(pk=invoice.pk).update(
        stripe_last_error="StripeSyncConflict (stripe_conflict): totals disagree"
    )
    assert services.stripe_sync_pending() == ([], [])

    Invoice.objects.filter(pk=invoice.pk).update(
        stripe_last_error="StripeUnavailable (stripe_unavailable): timeout"
    )
    assert services.stripe_sync_pending() == ([invoice.pk], [note.pk])


@pytest.fixture
def invoice(customer_a):
    return finalized_invoice(customer_a)


@pytest.mark.django_db(transaction=True)
def test_no_transaction_is_open_while_stripe_creates_the_customer(
    stripe_env, customer_a, monkeypatch
):
    real_call = stripe_sync._Api.call
    seen = []

    def call(api, operation, params, key):
        seen.append((key, connection.in_atomic_block))
        return real_call(api, operation, params, key)

    monkeypatch.setattr(stripe_sync._Api, "call", call)

    record = services.stripe_customer_ensure(customer=customer_a)

    assert seen == [(f"meterbook:customer:{customer_a.pk}:create", False)]
    assert StripeCustomer.objects.get(customer=customer_a) == record


def test_a_refused_credit_note_is_recorded_and_left_for_a_person(stripe_env, monkeypatch):
    monkeypatch.setattr(stripe_sync, "SWEEP_AFTER", timedelta(0))  # the note is new
    invoice = finalized_invoice(CustomerFactory())
    services.invoice_stripe_sync(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    # Someone marked it uncollectible in Stripe: Stripe takes no credit notes on it now.
    stripe_env.client().v1.invoices.mark_uncollectible(invoice.stripe_invoice_id)
    note = services.credit_note_issue(
        actor=None, invoice=invoice, reason="duplicate", memo="Charged twice"
    )

    with pytest.raises(StripeRejected):
        services.credit_note_stripe_sync(credit_note_id=note.pk)

    note.refresh_from_db()
    assert note.stripe_credit_note_id == ""
    assert note.stripe_last_error.startswith("StripeRejected")
    assert services.stripe_sync_pending() == ([], [])  # not retried every sweep
    # A passing outage is retried by the sweep.
    CreditNote.objects.filter(pk=note.pk).update(
        stripe_last_error="StripeUnavailable (stripe_unavailable): timeout"
    )
    assert services.stripe_sync_pending() == ([], [note.pk])

"""Credit notes within their bounds, voids, disputes: corrections only in the open."""

from datetime import UTC, datetime, timedelta

import pytest

from accounts.errors import Conflict, Forbidden, InvalidInput
from accounts.models import AuditLog
from invoicing import services
from invoicing.models import CreditNote, Dispute
from invoicing.services import CreditRequest
from tests.accounts.factories import MembershipFactory
from tests.invoicing.factories import flat, ingest_usage, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter

pytestmark = pytest.mark.django_db

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def invoice(customer_a):
    meter = api_calls_meter()
    # $50 flat + 300 calls at $0.10, 10% off: 5,000 + 3,000 - 800 = 7,200 cents.
    version = plan_version(
        components=[
            flat("50.00"),
            per_unit(meter, "0.10"),
            {"kind": "percent_discount", "percent": "10"},
        ]
    )
    subscription = subscribe(customer_a, version, at=OCT)
    ingest_usage(customer_a, meter, [OCT + timedelta(minutes=i) for i in range(300)], now=NOV)
    draft = services.period_close(subscription_id=subscription.pk, now=NOV)
    return services.invoice_finalize(actor=None, invoice=draft, now=NOV + timedelta(hours=2))


def lines(invoice):
    return {line.kind: line for line in invoice.lines.all()}


def test_the_invoice_under_test_is_what_we_think(invoice):
    assert [(k, v.amount_minor) for k, v in lines(invoice).items()] == [
        ("flat_fee", 5000),
        ("usage", 3000),
        ("discount", -800),
    ]
    assert invoice.total_minor == 7200


def test_a_partial_credit_note_per_line_then_bounds(invoice):
    usage = lines(invoice)["usage"]
    note = services.credit_note_issue(
        actor=None,
        invoice=invoice,
        reason="billing_error",
        memo="Retried requests were counted",
        lines=[CreditRequest(usage.pk, 1200)],
    )
    assert (note.number, note.total_minor) == ("CN-2026-000001", 1200)

    with pytest.raises(InvalidInput) as too_much:
        services.credit_note_issue(
            actor=None,
            invoice=invoice,
            reason="billing_error",
            memo="again",
            lines=[CreditRequest(usage.pk, 1801)],
        )
    assert too_much.value.code == "credit_exceeds_line"
    with pytest.raises(InvalidInput):
        services.credit_note_issue(
            actor=None,
            invoice=invoice,
            reason="billing_error",
            memo="a discount line is no charge",
            lines=[CreditRequest(lines(invoice)["discount"].pk, 1)],
        )


def test_line_credits_can_never_exceed_the_invoice_total(invoice):
    # Both charges in full would be 8,000 > the 7,200 invoiced (the discount took 800).
    charges = lines(invoice)
    with pytest.raises(InvalidInput) as refused:
        services.credit_note_issue(
            actor=None,
            invoice=invoice,
            reason="billing_error",
            memo="everything",
            lines=[
                CreditRequest(charges["flat_fee"].pk, 5000),
                CreditRequest(charges["usage"].pk, 3000),
            ],
        )
    assert refused.value.code == "credit_exceeds_invoice"


def test_a_full_credit_note_credits_what_is_left_and_nothing_more(invoice):
    services.credit_note_issue(
        actor=None,
        invoice=invoice,
        reason="billing_error",
        memo="part",
        lines=[CreditRequest(lines(invoice)["flat_fee"].pk, 1000)],
    )
    full = services.credit_note_issue(
        actor=None, invoice=invoice, reason="goodwill", memo="the rest"
    )
    assert full.total_minor == 6200
    with pytest.raises(Conflict) as nothing:
        services.credit_note_issue(actor=None, invoice=invoice, reason="goodwill", memo="more")
    assert nothing.value.code == "nothing_to_credit"


def test_credit_notes_need_a_finalized_invoice_and_a_memo(invoice, customer_a):
    with pytest.raises(InvalidInput):
        services.credit_note_issue(actor=None, invoice=invoice, reason="goodwill", memo=" ")
    with pytest.raises(InvalidInput):
        services.credit_note_issue(actor=None, invoice=invoice, reason="because", memo="x")


def test_voiding_an_unpaid_invoice_issues_the_matching_credit_note(invoice):
    voided = services.invoice_void(actor=None, invoice=invoice, reason="Sent to the wrong entity")
    assert voided.status == "void"
    note = CreditNote.objects.get(invoice=invoice)
    assert (note.reason, note.total_minor) == ("invoice_voided", 7200)
    with pytest.raises(Conflict):
        services.invoice_void(actor=None, invoice=invoice, reason="twice")


def test_a_paid_invoice_cannot_be_voided(invoice):
    type(invoice).objects.filter(pk=invoice.pk).update(status="paid")
    invoice.refresh_from_db()
    with pytest.raises(Conflict) as refused:
        services.invoice_void(actor=None, invoice=invoice, reason="too late")
    assert refused.value.code == "invoice_not_voidable"


def test_dispute_flow_accept_credits_the_line(invoice, customer_a, owner_a):
    usage = lines(invoice)["usage"]
    dispute = services.dispute_open(
        actor=owner_a.user, invoice_line=usage, message="We were down on the 3rd"
    )
    with pytest.raises(Conflict) as again:
        services.dispute_open(actor=owner_a.user, invoice_line=usage, message="again")
    assert again.value.code == "dispute_already_open"

    accepted = services.dispute_accept(
        actor=None, dispute=dispute, resolution="Outage confirmed", amount_minor=500
    )
    assert accepted.status == Dispute.Status.ACCEPTED
    assert accepted.credit_note.total_minor == 500
    assert accepted.credit_note.reason == "dispute_accepted"
    actions = set(AuditLog.objects.values_list("action", flat=True))
    assert {"dispute.opened", "dispute.accepted", "credit_note.issued"} <= actions


def test_dispute_reject_needs_an_explanation_the_customer_sees(invoice, owner_a):
    dispute = services.dispute_open(
        actor=owner_a.user, invoice_line=lines(invoice)["flat_fee"], message="Why?"
    )
    with pytest.raises(InvalidInput):
        services.dispute_reject(actor=None, dispute=dispute, resolution="")
    rejected = services.dispute_reject(
        actor=None, dispute=dispute, resolution="The platform fee is fixed."
    )
    assert (rejected.status, rejected.resolution) == ("rejected", "The platform fee is fixed.")
    with pytest.raises(Conflict):
        services.dispute_accept(actor=None, dispute=dispute, resolution="changed my mind")


def test_only_the_invoices_customer_can_dispute_it(invoice, customer_b):
    outsider = MembershipFactory(customer=customer_b, role="owner")
    with pytest.raises(Forbidden):
        services.dispute_open(
            actor=outsider.user, invoice_line=lines(invoice)["usage"], message="not ours"
        )


def test_only_roles_that_may_dispute_can_and_only_lines_that_charge(invoice, customer_a):
    developer = MembershipFactory(customer=customer_a, role="developer")
    with pytest.raises(Forbidden):
        services.dispute_open(
            actor=developer.user, invoice_line=lines(invoice)["usage"], message="not my call"
        )
    finance = MembershipFactory(customer=customer_a, role="finance")
    with pytest.raises(Conflict) as refused:
        services.dispute_open(
            actor=finance.user, invoice_line=lines(invoice)["discount"], message="more off?"
        )
    assert refused.value.code == "line_not_disputable"
    assert not Dispute.objects.exists()
    services.dispute_open(actor=finance.user, invoice_line=lines(invoice)["usage"], message="Hm")
    assert Dispute.objects.count() == 1


@pytest.mark.parametrize("reason", ["invoice_voided", "dispute_accepted"])
def test_flow_reasons_cannot_be_used_for_a_plain_credit_note(invoice, reason):
    with pytest.raises(InvalidInput) as refused:
        services.credit_note_issue(actor=None, invoice=invoice, reason=reason, memo="sneaky")
    assert refused.value.field == "reason"

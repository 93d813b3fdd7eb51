"""Corrections, always in the open: credit notes, voids and disputes.

A finalized invoice never changes; what was billed wrongly is credited. Credit notes are
bounded per line (never more than the line charged, less what was credited before) and
per invoice (never more than its total), checked under the invoice's row lock so two
finance users crediting at once cannot exceed it together.
"""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.errors import Conflict, Forbidden, InvalidInput
from accounts.models import User
from accounts.roles import Ability, role_allows
from accounts.services import Actor, actor_label, audit_record

from ..models import CreditNote, CreditNoteLine, Dispute, Invoice, InvoiceLine
from ..selectors import line_disputable
from .period_close import document_number
from .stripe_sync import credit_note_stripe_sync_enqueue, invoice_stripe_sync_enqueue

# Reasons only their own flows give a credit note.
FLOW_REASONS = (CreditNote.Reason.INVOICE_VOIDED, CreditNote.Reason.DISPUTE_ACCEPTED)


@dataclass(frozen=True)
class CreditRequest:
    """Credit ``amount_minor`` of one invoice line."""

    line_id: int
    amount_minor: int


def credited_by_line(invoice: Invoice) -> dict[int, int]:
    rows = (
        CreditNoteLine.objects.filter(credit_note__invoice=invoice)
        .values("invoice_line")
        .annotate(total=Sum("amount_minor"))
    )
    return {row["invoice_line"]: row["total"] for row in rows}


def creditable_minor(invoice: Invoice) -> int:
    """What is left to credit on the invoice as a whole."""
    credited = invoice.credit_notes.aggregate(total=Sum("total_minor"))["total"] or 0
    return invoice.total_minor - credited


def _full_credit(invoice: Invoice, lines: list[InvoiceLine]) -> list[CreditRequest]:
    # Everything still creditable, spread over the charged lines in order (discounts and
    # drawdowns already lowered the total, so the charges are credited only up to it).
    left = creditable_minor(invoice)
    credited = credited_by_line(invoice)
    requests = []
    for line in lines:
        room = line.amount_minor - credited.get(line.pk, 0)
        if left <= 0:
            break
        if room > 0:
            requests.append(CreditRequest(line.pk, min(room, left)))
            left -= min(room, left)
    return requests


def _issue(
    *,
    actor: Actor,
    invoice: Invoice,
    reason: str,
    memo: str,
    requests: list[CreditRequest] | None,
) -> CreditNote:
    """The one way a credit note comes to be; the caller holds the invoice row lock."""
    if invoice.status not in Invoice.BILLED:
        raise Conflict("Only a finalized invoice can be credited.", code="invoice_not_creditable")
    if reason not in CreditNote.Reason.values:
        raise InvalidInput(
            f"reason must be one of: {', '.join(CreditNote.Reason.values)}.", field="reason"
        )
    if not memo.strip():
        raise InvalidInput("Say why (the memo is shown to the customer).", field="memo")
    lines = {line.pk: line for line in invoice.lines.order_by("position")}
    if requests is None:
        requests = _full_credit(invoice, list(lines.values()))
    if not requests:
        raise Conflict("Nothing is left to credit on this invoice.", code="nothing_to_credit")
    credited = credited_by_line(invoice)
    seen = set()
    for request in requests:
        line = lines.get(request.line_id)
        if line is None:
            raise InvalidInput(
                f"Line {request.line_id} is not on invoice {invoice}.", field="lines"
            )
        if request.line_id in seen:
            raise InvalidInput("Name each line once.", field="lines")
        seen.add(request.line_id)
        if isinstance(request.amount_minor, bool) or not isinstance(request.amount_minor, int):
            raise InvalidInput("amount_minor must be a whole number of minor units.", field="lines")
        if request.amount_minor <= 0:
            raise InvalidInput("A credited amount must be positive.", field="lines")
        room = line.amount_minor - credited.get(line.pk, 0)
        if request.amount_minor > room:
            raise InvalidInput(
                f"Line {line.position} ({line.description}) has {max(room, 0)} minor units "
                f"left to credit; {request.amount_minor} asked.",
                field="lines",
                code="credit_exceeds_line",
            )
    total = sum(r.amount_minor for r in requests)
    if total > creditable_minor(invoice):
        raise InvalidInput(
            f"The invoice has {creditable_minor(invoice)} minor units left to credit; "
            f"{total} asked.",
            field="lines",
            code="credit_exceeds_invoice",
        )
    now = timezone.now()
    _, _, number = document_number("CN", now)
    note = CreditNote.objects.create(
        invoice=invoice,
        customer=invoice.customer,
        number=number,
        reason=reason,
        memo=memo,
        total_minor=total,
        issued_at=now,
        issued_by=actor_label(actor)[:200],
    )
    CreditNoteLine.objects.bulk_create(
        CreditNoteLine(
            credit_note=note,
            invoice_line=lines[r.line_id],
            description=lines[r.line_id].description,
            amount_minor=r.amount_minor,
        )
        for r in requests
    )
    audit_record(
        actor=actor,
        action="credit_note.issued",
        obj=note,
        customer=invoice.customer,
        after={
            "invoice": invoice.number,
            "total_minor": total,
            "reason": reason,
            "lines": {str(r.line_id): r.amount_minor for r in requests},
        },
    )
    transaction.on_commit(lambda: credit_note_stripe_sync_enqueue(note.pk))
    return note


def _locked_invoice(invoice: Invoice) -> Invoice:
    return (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("customer")
        .get(pk=invoice.pk)
    )


@transaction.atomic
def credit_note_issue(
    *,
    actor: Actor,
    invoice: Invoice,
    reason: str,
    memo: str,
    lines: list[CreditRequest] | None = None,
) -> CreditNote:
    """Credit the whole invoice (``lines=None``) or given amounts of given lines."""
    if reason in FLOW_REASONS:
        raise InvalidInput(
            f"A {reason} credit note is issued by its own flow (voiding, accepting a dispute).",
            field="reason",
        )
    return _issue(
        actor=actor, invoice=_locked_invoice(invoice), reason=reason, memo=memo, requests=lines
    )


@transaction.atomic
def invoice_void(*, actor: Actor, invoice: Invoice, reason: str) -> Invoice:
    """Void a finalized invoice that was never paid; what is left to credit on it is
    credited by a matching credit note."""
    invoice = _locked_invoice(invoice)
    if invoice.status not in Invoice.NEVER_PAID:
        raise Conflict(
            f"Only a finalized, unpaid invoice can be voided (this one is {invoice.status}).",
            code="invoice_not_voidable",
        )
    if not reason.strip():
        raise InvalidInput("Say why the invoice is voided.", field="reason")
    before = invoice.status
    note = None
    if creditable_minor(invoice) > 0:
        note = _issue(
            actor=actor,
            invoice=invoice,
            reason=CreditNote.Reason.INVOICE_VOIDED,
            memo=f"Invoice {invoice.number} voided: {reason}",
            requests=None,
        )
    invoice.status = Invoice.Status.VOID
    invoice.voided_at = timezone.now()
    invoice.void_reason = reason[:500]
    invoice.save(update_fields=["status", "voided_at", "void_reason", "updated_at"])
    audit_record(
        actor=actor,
        action="invoice.voided",
        obj=invoice,
        customer=invoice.customer,
        before={"status": before},
        after={"status": "void", "reason": reason, "credit_note": note.number if note else None},
    )
    transaction.on_commit(lambda: invoice_stripe_sync_enqueue(invoice.pk))
    return invoice


@transaction.atomic
def dispute_open(*, actor: User, invoice_line: InvoiceLine, message: str) -> Dispute:
    """A customer user disputes a line of one of their finalized invoices."""
    membership = getattr(actor, "membership", None)
    invoice = invoice_line.invoice
    if membership is None or membership.customer_id != invoice.customer_id:
        raise Forbidden("Only the invoice's customer can dispute it.")
    if not role_allows(membership.role, Ability.DISPUTE_INVOICES):
        raise Forbidden("Your role cannot dispute invoices.")
    if invoice.status not in Invoice.BILLED:
        raise Conflict("Only a finalized invoice can be disputed.", code="invoice_not_disputable")
    if not line_disputable(invoice, invoice_line):
        raise Conflict(
            "Only a line that charges an amount can be disputed.",
            code="line_not_disputable",
            field="line",
        )
    if not message.strip():
        raise InvalidInput("Tell us what looks wrong.", field="message")
    try:
        with transaction.atomic():
            dispute = Dispute.objects.create(
                customer=invoice.customer,
                invoice_line=invoice_line,
                opened_by=actor,
                message=message[:5000],
            )
    except IntegrityError:
        raise Conflict(
            "This line already has an open dispute.", code="dispute_already_open", field="line"
        ) from None
    audit_record(
        actor=actor,
        action="dispute.opened",
        obj=dispute,
        customer=invoice.customer,
        after={"invoice": invoice.number, "line": invoice_line.position, "message": message},
    )
    return dispute


def _locked_open_dispute(dispute: Dispute) -> Dispute:
    dispute = Dispute.objects.select_for_update().get(pk=dispute.pk)
    if dispute.status != Dispute.Status.OPEN:
        raise Conflict("This dispute is already resolved.", code="dispute_resolved")
    return dispute


@transaction.atomic
def dispute_accept(
    *, actor: Actor, dispute: Dispute, resolution: str, amount_minor: int | None = None
) -> Dispute:
    """Accept: credit the line (what is left of it, or ``amount_minor``)."""
    dispute = _locked_open_dispute(dispute)
    line = dispute.invoice_line
    invoice = _locked_invoice(line.invoice)
    if amount_minor is None:
        amount_minor = min(
            line.amount_minor - credited_by_line(invoice).get(line.pk, 0),
            creditable_minor(invoice),
        )
    note = _issue(
        actor=actor,
        invoice=invoice,
        reason=CreditNote.Reason.DISPUTE_ACCEPTED,
        memo=resolution,
        requests=[CreditRequest(line.pk, amount_minor)],
    )
    dispute.status = Dispute.Status.ACCEPTED
    dispute.resolution = resolution
    dispute.resolved_by = actor_label(actor)[:200]
    dispute.resolved_at = timezone.now()
    dispute.credit_note = note
    dispute.save()
    audit_record(
        actor=actor,
        action="dispute.accepted",
        obj=dispute,
        customer=dispute.customer,
        after={"credit_note": note.number, "amount_minor": amount_minor, "resolution": resolution},
    )
    return dispute


@transaction.atomic
def dispute_reject(*, actor: Actor, dispute: Dispute, resolution: str) -> Dispute:
    """Reject, with an explanation the customer sees."""
    dispute = _locked_open_dispute(dispute)
    if not resolution.strip():
        raise InvalidInput("Explain the decision: the customer sees it.", field="resolution")
    dispute.status = Dispute.Status.REJECTED
    dispute.resolution = resolution
    dispute.resolved_by = actor_label(actor)[:200]
    dispute.resolved_at = timezone.now()
    dispute.save()
    audit_record(
        actor=actor,
        action="dispute.rejected",
        obj=dispute,
        customer=dispute.customer,
        after={"resolution": resolution},
    )
    return dispute

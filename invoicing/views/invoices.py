"""One invoice as a clean, printable page (the browser's "Save as PDF" makes the file):
issuer and customer, lines with their tier breakdowns, credit notes, totals, status.

A fixed number of queries whatever the invoice holds: the invoice, its lines, its credit
notes with their lines, and the disputes on its lines.
"""

from django.conf import settings
from django.utils import timezone

from .. import selectors
from ..currency import format_money
from ..models import Invoice
from . import InvoiceObjectView
from .display import disputes_by_line, format_money_or_none, line_row

PAGE = "invoicing/invoice.html"
UNPAID = (Invoice.Status.OPEN, Invoice.Status.PAYMENT_FAILED)


def issuer() -> dict:
    """Who issues the invoices: ``settings.INVOICING_ISSUER`` (name, address lines, email)."""
    return {
        "name": "Meterbook",
        "address": [],
        "email": "",
        **getattr(settings, "INVOICING_ISSUER", {}),
    }


class InvoiceDetailView(InvoiceObjectView):
    def get(self, request, invoice_id):
        invoice = self.object
        currency = invoice.currency
        disputes = disputes_by_line(
            selectors.dispute_list(principal=self.membership)
            .filter(invoice_line__invoice=invoice)
            .select_related("opened_by")
        )
        rows = [
            line_row(
                line,
                currency=currency,
                invoice=invoice,
                disputes=disputes.get(line.pk, ()),
                can_dispute=self.can_dispute,
            )
            for line in selectors.invoice_lines(invoice=invoice)
        ]
        notes = list(
            selectors.credit_note_list(principal=self.membership, invoice=invoice)
            .prefetch_related("lines")
            .order_by("issued_at", "id")
        )
        for note in notes:
            note.total_display = format_money(note.total_minor, currency)
            for note_line in note.lines.all():
                note_line.amount_display = format_money(note_line.amount_minor, currency)
        credited = sum(note.total_minor for note in notes)
        adjustments = invoice.total_minor - invoice.subtotal_minor
        context = {
            "invoice": invoice,
            "issuer": issuer(),
            "rows": rows,
            "credit_notes": notes,
            "subtotal": format_money(invoice.subtotal_minor, currency),
            "adjustments": format_money_or_none(adjustments, currency),
            "total": format_money(invoice.total_minor, currency),
            "credited": format_money_or_none(credited, currency),
            "after_credits": format_money(invoice.total_minor - credited, currency),
            "overdue": invoice.status in UNPAID
            and invoice.due_at is not None
            and invoice.due_at < timezone.now(),
        }
        return self.render(PAGE, context)

"""Helpers for the billing pages' tests."""

from datetime import UTC, datetime, timedelta

from invoicing.models import Invoice, InvoiceLine


def extra_invoice(customer, meter, *, index: int, lines: int = 2) -> Invoice:
    """A finalized invoice written straight to the tables (no subscription, periods in
    2024-2025 so they sort after the real ones): for tests that need many invoices."""
    year, month = 2024 + index // 12, index % 12 + 1
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    invoice = Invoice.objects.create(
        customer=customer,
        currency="USD",
        period_start=start,
        period_end=end,
        subtotal_minor=250 * lines,
        total_minor=250 * lines,
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=InvoiceLine.Kind.USAGE,
            description=f"Calls, part {position}",
            meter=meter,
            period_start=start,
            period_end=end,
            quantity=250,
            unit_price="0.01",
            amount_minor=250,
            tiers=[
                {
                    "tier": 1,
                    "first_unit": "0",
                    "up_to": None,
                    "quantity": "250",
                    "unit_price": "0.01",
                    "flat_fee": "0",
                    "amount": "2.50",
                }
            ],
        )
        for position in range(1, lines + 1)
    )
    seq = 100 + index
    Invoice.objects.filter(pk=invoice.pk).update(
        status=Invoice.Status.PAID,
        number=f"INV-{year}-{seq:06d}",
        number_year=year,
        number_seq=seq,
        finalized_at=end,
        due_at=end + timedelta(days=30),
        paid_at=end + timedelta(days=3),
    )
    invoice.refresh_from_db()
    return invoice

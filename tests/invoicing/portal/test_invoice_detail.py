"""The invoice page: a clean, printable document with issuer and customer, lines with
their tiers, credit notes and totals; scoped to the member's own finalized invoices."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from invoicing import services
from invoicing.services import CreditRequest
from tests.accounts.portal.helpers import signed_in
from tests.invoicing.portal.helpers import extra_invoice

pytestmark = pytest.mark.django_db


def invoice_url(invoice) -> str:
    return reverse("billing:invoice", args=[invoice.pk])


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_invoice_shows_parties_lines_tiers_and_totals(client, owner_a, billed_a):
    page = signed_in(client, owner_a).get(invoice_url(billed_a.invoice)).content.decode()
    words = text(page)

    invoice = billed_a.invoice
    assert f"Invoice {invoice.number}" in words
    assert "Bill to Alpha Analytics Account alpha billing@alpha.example.com" in words
    assert "Issued Nov 1, 2026" in words and "Due Dec 1, 2026" in words
    assert "Status Finalized, awaiting payment" in words
    assert "Period Oct 1, 2026 – Nov 1, 2026" in words  # noqa: RUF001
    # Lines: the flat fee, then 60 calls on graduated tiers (50 free, 10 at $0.01).
    assert "1 Platform fee Flat fee 1 99.00 USD 99.00 USD" in words
    assert "2 API calls Usage · api_call 60" in words
    assert "1 to 50 50 0.00 USD — 0.00 USD" in words
    assert "51 to 100 10 0.01 USD — 0.10 USD" in words
    assert '<details class="tiers">' in page  # expandable
    assert "Subtotal 99.10 USD" in words
    assert re.search(r'data-testid="invoice-total">99\.10 USD<', page)
    assert "Credited" not in words
    # The usage line leads to its events; the flat fee has none.
    events = reverse("billing:line_events", args=[invoice.pk, billed_a.usage_line.pk])
    flat_events = reverse("billing:line_events", args=[invoice.pk, billed_a.flat_line.pk])
    assert events in page and flat_events not in page


def test_the_invoice_prints_without_the_portal(client, owner_a, billed_a):
    page = signed_in(client, owner_a).get(invoice_url(billed_a.invoice)).content.decode()

    assert 'onclick="window.print()"' in page
    assert 'class="btn btn-primary no-print"' in page
    assert '<details class="dispute-form no-print"' in page
    css = (Path(settings.BASE_DIR) / "static/css/portal.css").read_text()
    print_rules = css[css.index("@media print") :]
    assert ".sidebar" in print_rules and ".no-print" in print_rules
    assert "display: none" in print_rules


def test_credit_notes_against_the_invoice_and_the_total_after_them(client, owner_a, billed_a):
    invoice = billed_a.invoice
    note = services.credit_note_issue(
        actor=None,
        invoice=invoice,
        reason="goodwill",
        memo="Sorry about the outage",
        lines=[CreditRequest(billed_a.flat_line.pk, 990)],
    )

    words = text(signed_in(client, owner_a).get(invoice_url(invoice)).content.decode())

    assert f"{note.number} · " in words and "Goodwill · 9.90 USD" in words
    assert "Sorry about the outage" in words
    assert "Platform fee: 9.90 USD" in words
    assert "Credited −9.90 USD" in words  # noqa: RUF001
    assert "Total after credits 89.20 USD" in words


def test_a_paid_invoice_says_when_and_a_void_one_says_why(client, owner_a, billed_a, meter):
    paid = extra_invoice(billed_a.customer, meter, index=3)
    services.invoice_void(actor=None, invoice=billed_a.invoice, reason="Billed twice")
    signed_in(client, owner_a)

    assert "Status Paid (May 4, 2024)" in text(client.get(invoice_url(paid)).content.decode())
    void = text(client.get(invoice_url(billed_a.invoice)).content.decode())
    assert "This invoice was voided: Billed twice" in void
    assert "Invoice voided" in void  # the matching credit note


def test_another_customers_invoice_is_not_found(client, owner_a, billed_a, billed_b):
    signed_in(client, owner_a)

    assert client.get(invoice_url(billed_b.invoice)).status_code == 404
    assert client.get(invoice_url(billed_a.invoice)).status_code == 200
    assert client.get("/billing/invoices/999999/").status_code == 404


def test_queries_do_not_grow_with_lines_credit_notes_or_disputes(
    client, owner_a, billed_a, meter, django_assert_max_num_queries
):
    # The baseline has one of each kind of row (an empty prefetch costs no query).
    services.dispute_open(actor=owner_a.user, invoice_line=billed_a.usage_line, message="Hm")
    services.credit_note_issue(
        actor=None,
        invoice=billed_a.invoice,
        reason="goodwill",
        memo="Credit",
        lines=[CreditRequest(billed_a.flat_line.pk, 100)],
    )
    signed_in(client, owner_a)
    client.get(invoice_url(billed_a.invoice))  # warm the session
    with CaptureQueriesContext(connection) as baseline:
        client.get(invoice_url(billed_a.invoice))
    assert len(baseline) <= 10, [q["sql"] for q in baseline.captured_queries]

    big = extra_invoice(billed_a.customer, meter, index=0, lines=12)
    lines = list(big.lines.all())
    for line in lines[:5]:
        services.dispute_open(actor=owner_a.user, invoice_line=line, message="Why so many?")
    for line in lines[5:8]:
        services.credit_note_issue(
            actor=None,
            invoice=big,
            reason="goodwill",
            memo="Credit",
            lines=[CreditRequest(line.pk, 100)],
        )
    with django_assert_max_num_queries(len(baseline)):
        page = client.get(invoice_url(big)).content.decode()
    assert page.count("Calls, part") >= 12
    assert page.count("Why so many?") == 5
    assert page.count("Credit</p>") == 3

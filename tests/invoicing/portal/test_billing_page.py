"""The Billing page: plan, period, the invoice so far and its projection, the invoices
(never drafts or held ones), roles, and bounded queries."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.roles import Role
from invoicing import hooks, selectors, services
from invoicing.currency import format_money
from invoicing.models import Invoice
from tests.accounts.portal.helpers import HTMX, member, signed_in
from tests.invoicing.portal.conftest import NOV
from tests.invoicing.portal.helpers import extra_invoice

pytestmark = pytest.mark.django_db

BILLING = reverse("billing:home")


def invoice_numbers(page: str) -> list[str]:
    """The numbers in the invoices list (not the disputes section)."""
    listing = page[page.index('id="invoices"') :]
    listing = listing[: listing.index("</section>")]
    return re.findall(r">(INV-\d{4}-\d{6})</a>", listing)


def test_the_page_shows_plan_period_the_invoice_so_far_and_its_projection(
    client, owner_a, billed_a
):
    page = signed_in(client, owner_a).get(BILLING).content.decode()

    assert "Growth" in page and "version 1" in page and "Monthly, in USD" in page
    # The current period [Nov 1, Dec 1) UTC, as dates in Berlin.
    assert "Nov 1, 2026</time>" in page and "Dec 1, 2026</time>" in page
    upcoming = selectors.upcoming_invoice(customer=billed_a.customer, now=timezone.now())
    so_far = re.search(r'data-testid="upcoming-total">([^<]+)<', page).group(1)
    projected = re.search(r'data-testid="projected-total">([^<]+)<', page).group(1)
    assert so_far == format_money(upcoming.total_minor, "USD") == "99.00 USD"
    # Alerts' projected-cost provider answers, so the forecast replaces the straight line
    # (both sides: tests/invoicing/portal/test_billing_projection.py).
    forecast = hooks.projected_cost(
        billed_a.customer, timezone.now(), period=(upcoming.period_start, upcoming.period_end)
    )
    assert projected == format_money(forecast.p50_minor, "USD")
    assert "Forecast from your daily usage" in page
    # The invoice so far lists each line.
    assert "Platform fee" in page and "API calls" in page


def test_the_invoices_list_shows_number_period_status_total_and_due_date(client, owner_a, billed_a):
    page = signed_in(client, owner_a).get(BILLING).content.decode()

    invoice = billed_a.invoice
    assert invoice_numbers(page) == [invoice.number]
    assert reverse("billing:invoice", args=[invoice.pk]) in page
    row = page[page.index(invoice.number) :]
    assert "Oct 1, 2026 – Nov 1, 2026" in row  # noqa: RUF001
    assert "Finalized, awaiting payment" in row
    assert "99.10 USD" in row
    assert "Dec 1, 2026" in row  # due 30 days after finalization, in Berlin


def test_customers_never_see_draft_or_held_invoices(client, owner_a, billed_a):
    """November closes into a draft; make another one held: neither is listed, both 404."""
    draft = services.period_close(
        subscription_id=billed_a.subscription.pk, now=NOV + timedelta(days=30)
    )
    assert draft.status == Invoice.Status.DRAFT
    signed_in(client, owner_a)

    page = client.get(BILLING).content.decode()
    assert invoice_numbers(page) == [billed_a.invoice.number]
    assert client.get(reverse("billing:invoice", args=[draft.pk])).status_code == 404
    line = draft.lines.get(kind="usage")
    for name in ("line_events", "line_events_export", "line_dispute"):
        assert client.get(reverse(f"billing:{name}", args=[draft.pk, line.pk])).status_code == 404
    assert (
        client.post(
            reverse("billing:line_dispute", args=[draft.pk, line.pk]), {"message": "x"}
        ).status_code
        == 404
    )

    Invoice.objects.filter(pk=draft.pk).update(status=Invoice.Status.HELD)
    assert client.get(reverse("billing:invoice", args=[draft.pk])).status_code == 404
    assert draft.number is None and "Draft" not in client.get(BILLING).content.decode()


def test_invoices_are_paginated_and_htmx_pages_swap_only_the_list(client, owner_a, billed_a, meter):
    for index in range(13):
        extra_invoice(billed_a.customer, meter, index=index)
    signed_in(client, owner_a)

    first = client.get(BILLING).content.decode()
    assert len(invoice_numbers(first)) == 12
    assert "Page 1 of 2" in first and f"{BILLING}?page=2" in first

    second = client.get(BILLING, {"page": 2}, headers=HTMX)
    html = second.content.decode()
    assert second.status_code == 200
    assert html.lstrip().startswith('<section class="card" id="invoices"')
    assert "<html" not in html and "Disputes" not in html
    assert len(invoice_numbers(html)) == 2
    assert set(invoice_numbers(first)).isdisjoint(invoice_numbers(html))
    # A page number out of range shows the last page rather than an error.
    assert client.get(BILLING, {"page": 99}).status_code == 200


def test_without_a_subscription_the_page_says_so(client, owner_a):
    page = signed_in(client, owner_a).get(BILLING).content.decode()

    assert "No active subscription" in page
    assert "No invoices yet" in page
    assert "No disputes" in page


def test_another_customers_invoices_never_show(client, owner_a, billed_a, billed_b):
    page = signed_in(client, owner_a).get(BILLING).content.decode()

    assert invoice_numbers(page) == [billed_a.invoice.number]
    assert billed_b.invoice.number not in page


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.OWNER, True),
        (Role.ADMIN, True),
        (Role.FINANCE, True),
        (Role.DEVELOPER, False),
        (Role.VIEWER, False),
    ],
)
def test_billing_is_for_roles_that_may_see_invoices(client, customer_a, billed_a, role, allowed):
    signed_in(client, member(customer_a, role))
    invoice, line = billed_a.invoice, billed_a.usage_line

    urls = [
        BILLING,
        reverse("billing:invoice", args=[invoice.pk]),
        reverse("billing:line_events", args=[invoice.pk, line.pk]),
        reverse("billing:line_events_export", args=[invoice.pk, line.pk]),
    ]
    for url in urls:
        assert client.get(url).status_code == (200 if allowed else 403), url
    nav = client.get(reverse("usage:dashboard")).content.decode()
    nav = nav[nav.index('<nav class="nav"') : nav.index("</nav>")]
    assert (f'href="{BILLING}"' in nav) is allowed


def test_the_billing_link_is_marked_current_on_billing_pages(client, owner_a, billed_a):
    signed_in(client, owner_a)
    for url in (BILLING, reverse("billing:invoice", args=[billed_a.invoice.pk])):
        page = client.get(url).content.decode()
        assert re.search(rf'<a href="{BILLING}" class="active" aria-current="page">', page)


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get(BILLING)

    assert response.status_code == 302 and response.url.startswith(reverse("portal:login"))


def test_queries_do_not_grow_with_invoices_or_disputes(
    client, owner_a, billed_a, meter, django_assert_max_num_queries
):
    services.dispute_open(
        actor=owner_a.user, invoice_line=billed_a.usage_line, message="Too many calls"
    )
    signed_in(client, owner_a)
    client.get(BILLING)  # warm the session
    with CaptureQueriesContext(connection) as baseline:
        assert client.get(BILLING).status_code == 200
    # Session, member, the subscription, the upcoming invoice (its own queries depend on the
    # plan, not on the invoices), the invoices page and its count, the disputes.

    for index in range(6):
        invoice = extra_invoice(billed_a.customer, meter, index=index, lines=3)
        for line in invoice.lines.all():
            services.dispute_open(actor=owner_a.user, invoice_line=line, message="Why?")
    with django_assert_max_num_queries(len(baseline)):
        page = client.get(BILLING).content.decode()
    assert len(invoice_numbers(page)) == 7
    assert page.count("Why?") == 18

"""Disputing a line in the portal: open it, see it, and see the answer; refusals come back
as form errors (422), never a 500; only roles with the dispute ability may post."""

import re

import pytest
from django.urls import reverse

from accounts.models import AuditLog
from accounts.roles import _ABILITIES, Ability, Role
from invoicing import services
from invoicing.models import Dispute
from tests.accounts.portal.helpers import HTMX, member, signed_in
from tests.invoicing.factories import flat, plan_version, subscribe
from tests.invoicing.portal.conftest import OCT, close_and_finalize

pytestmark = pytest.mark.django_db

BILLING = reverse("billing:home")


def dispute_url(line) -> str:
    return reverse("billing:line_dispute", args=[line.invoice_id, line.pk])


def events_url(line) -> str:
    return reverse("billing:line_events", args=[line.invoice_id, line.pk])


def invoice_url(line) -> str:
    return reverse("billing:invoice", args=[line.invoice_id])


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_dispute_opened_from_the_drill_down_shows_there_and_on_the_billing_page(
    client, finance_a, billed_a
):
    line = billed_a.usage_line
    signed_in(client, finance_a)
    page = client.get(events_url(line)).content.decode()
    assert f'hx-post="{dispute_url(line)}"' in page
    assert '<input type="hidden" name="back" value="events">' in page

    response = client.post(
        dispute_url(line),
        {"message": "About 20 of these came from our staging system.", "back": "events"},
        headers=HTMX,
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(f'<div class="line-dispute" id="dispute-{line.pk}">')
    assert "Open" in html and "About 20 of these came from our staging system." in html
    assert "Under review" in html
    assert "<form" not in html  # one open dispute per line: no second form
    assert 'hx-swap-oob="true"' in html and "Your dispute of “API calls” is open" in html
    dispute = Dispute.objects.get()
    assert (dispute.invoice_line, dispute.opened_by, dispute.status) == (
        line,
        finance_a.user,
        "open",
    )
    assert AuditLog.objects.filter(action="dispute.opened", object_id=str(dispute.pk)).exists()

    drill_down = text(client.get(events_url(line)).content.decode())
    assert "Open Disputed" in drill_down and "by ap@alpha.example.com" in drill_down
    billing = text(client.get(BILLING).content.decode())
    assert "INV-2026-000001 · API calls" in billing
    assert "About 20 of these came from our staging system." in billing
    assert "Under review" in billing
    invoice_page = text(client.get(invoice_url(line)).content.decode())
    assert "API calls Usage · api_call Disputed" in invoice_page


def test_without_htmx_the_post_returns_to_where_it_came_from(client, owner_a, billed_a):
    signed_in(client, owner_a)

    from_events = client.post(
        dispute_url(billed_a.usage_line), {"message": "Too many", "back": "events"}
    )
    from_invoice = client.post(
        dispute_url(billed_a.flat_line), {"message": "Fee doubled?", "back": "invoice"}
    )

    assert from_events.status_code == 302
    assert from_events.url == events_url(billed_a.usage_line)
    assert from_invoice.url == f"{invoice_url(billed_a.flat_line)}#line-{billed_a.flat_line.pk}"
    # Anything else is not a place to go: back to the invoice.
    services.dispute_reject(
        actor=None, dispute=Dispute.objects.get(invoice_line=billed_a.flat_line), resolution="No"
    )
    elsewhere = client.post(
        dispute_url(billed_a.flat_line), {"message": "Again", "back": "https://evil.example"}
    )
    assert elsewhere.url.startswith(invoice_url(billed_a.flat_line))
    assert "is open" in client.get(elsewhere.url).content.decode()  # the flash message


def test_a_second_open_dispute_on_a_line_is_a_form_error(client, owner_a, billed_a):
    line = billed_a.usage_line
    signed_in(client, owner_a)
    client.post(dispute_url(line), {"message": "First"}, headers=HTMX)

    again = client.post(dispute_url(line), {"message": "Second"}, headers=HTMX)

    assert again.status_code == 422
    html = again.content.decode()
    assert (
        '<div class="alert alert-error" role="alert"><p>This line already has an open dispute.'
        in html
    )
    assert Dispute.objects.count() == 1
    # The same without htmx: the dispute page again, with the error.
    plain = client.post(dispute_url(line), {"message": "Second"})
    assert plain.status_code == 422
    assert "This line already has an open dispute." in plain.content.decode()
    assert "<html" in plain.content.decode()


@pytest.mark.parametrize("message", ["", "   \n  "])
def test_an_empty_message_is_a_field_error(client, owner_a, billed_a, message):
    signed_in(client, owner_a)

    response = client.post(dispute_url(billed_a.usage_line), {"message": message}, headers=HTMX)

    assert response.status_code == 422
    assert '<p class="field-error">Tell us what looks wrong.</p>' in response.content.decode()
    assert not Dispute.objects.exists()


def test_only_lines_that_charge_offer_a_dispute(client, owner_a, customer_a):
    version = plan_version(
        code="discounted", components=[flat("99.00"), {"kind": "percent_discount", "percent": "10"}]
    )
    invoice = close_and_finalize(subscribe(customer_a, version, at=OCT))
    fee, discount = invoice.lines.order_by("position")
    assert (fee.amount_minor, discount.amount_minor) == (9900, -990)
    signed_in(client, owner_a)

    page = client.get(invoice_url(fee)).content.decode()
    assert page.count("<textarea") == 1  # the fee's form; none for the discount
    response = client.post(dispute_url(discount), {"message": "More off?"}, headers=HTMX)
    assert response.status_code == 422
    assert "Only a line that charges an amount can be disputed." in response.content.decode()
    assert not Dispute.objects.exists()


def test_a_void_invoice_cannot_be_disputed_and_says_why(client, owner_a, billed_a):
    services.invoice_void(actor=None, invoice=billed_a.invoice, reason="Billed twice")
    signed_in(client, owner_a)

    assert "<textarea" not in client.get(events_url(billed_a.usage_line)).content.decode()
    response = client.post(dispute_url(billed_a.usage_line), {"message": "Hm"}, headers=HTMX)
    assert response.status_code == 422
    assert "Only a finalized invoice can be disputed." in response.content.decode()
    assert not Dispute.objects.exists()


def test_the_answer_shows_once_the_dispute_is_resolved(client, owner_a, billed_a):
    signed_in(client, owner_a)
    usage, flat = billed_a.usage_line, billed_a.flat_line
    client.post(dispute_url(usage), {"message": "Staging traffic"})
    client.post(dispute_url(flat), {"message": "Fee too high"})
    services.dispute_reject(
        actor=None,
        dispute=Dispute.objects.get(invoice_line=usage),
        resolution="These calls came from your production key.",
    )
    services.dispute_accept(
        actor=None,
        dispute=Dispute.objects.get(invoice_line=flat),
        resolution="Credited in full.",
        amount_minor=9900,
    )

    drill_down = text(client.get(events_url(usage)).content.decode())
    assert "Rejected" in drill_down
    assert "These calls came from your production key." in drill_down
    # Resolved: a new dispute may be opened.
    assert "Dispute this line" in drill_down
    invoice_page = text(client.get(invoice_url(usage)).content.decode())
    assert "Accepted (credited)" in invoice_page and "Credited in full." in invoice_page
    assert "Dispute accepted · 99.00 USD" in invoice_page
    assert "Total after credits 0.10 USD" in invoice_page
    billing = text(client.get(BILLING).content.decode())
    assert "These calls came from your production key." in billing
    assert "Credited in full." in billing


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_roles_without_the_dispute_ability_get_403(client, customer_a, billed_a, role):
    signed_in(client, member(customer_a, role))

    for headers in ({}, HTMX):
        response = client.post(
            dispute_url(billed_a.usage_line), {"message": "Let me in"}, headers=headers
        )
        assert response.status_code == 403
    assert client.get(dispute_url(billed_a.usage_line)).status_code == 403
    assert not Dispute.objects.exists()


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.FINANCE])
def test_owners_admins_and_finance_may_dispute(client, customer_a, billed_a, role):
    signed_in(client, member(customer_a, role))

    response = client.post(dispute_url(billed_a.usage_line), {"message": "Hm"}, headers=HTMX)

    assert response.status_code == 200
    assert Dispute.objects.count() == 1


def test_a_role_that_sees_invoices_but_may_not_dispute_sees_no_form(
    client, finance_a, billed_a, monkeypatch
):
    services.dispute_open(actor=finance_a.user, invoice_line=billed_a.flat_line, message="Hm")
    # Then the role loses the ability (the dispute it opened stays).
    monkeypatch.setitem(_ABILITIES, Role.FINANCE, frozenset({Ability.VIEW_INVOICES}))
    signed_in(client, finance_a)

    for url in (events_url(billed_a.usage_line), invoice_url(billed_a.usage_line)):
        page = client.get(url).content.decode()
        assert page.count("<textarea") == 0, url
    invoice_page = text(client.get(invoice_url(billed_a.flat_line)).content.decode())
    assert "Open Disputed" in invoice_page  # the status still shows
    drill_down = text(client.get(events_url(billed_a.usage_line)).content.decode())
    assert "Your role cannot dispute invoice lines" in drill_down
    response = client.post(dispute_url(billed_a.usage_line), {"message": "Hm"})
    assert response.status_code == 403
    assert Dispute.objects.count() == 1

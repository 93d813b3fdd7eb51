"""The Billing pages in the system Chromium: a finance member signs in, opens Billing,
opens an invoice (and prints it), drills a usage line down to its raw events, filters
them, and disputes the line. Screenshots (and the printed PDF) go to test-artifacts/.
"""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.roles import Role
from invoicing.models import Dispute
from tests.accounts.factories import TEST_PASSWORD, CustomerFactory, MembershipFactory
from tests.invoicing.factories import flat, ingest_usage, plan_version, subscribe
from tests.invoicing.portal.conftest import (
    INGEST_NOW,
    NOV,
    OCT,
    close_and_finalize,
    graduated,
    october,
)
from tests.metering.factories import api_calls_meter

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def shoot(page: Page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.fixture
def northwind(transactional_db):
    """A customer on a monthly plan with October invoiced: 60 calls on graduated tiers."""
    customer = CustomerFactory(
        name="Northwind Traders", external_id="acct-northwind-traders", timezone="America/New_York"
    )
    meter = api_calls_meter()
    version = plan_version(components=[flat("99.00"), graduated(meter)])
    subscription = subscribe(customer, version, at=OCT)
    ingest_usage(customer, meter, october(45), now=INGEST_NOW, prefix="web", region="us-east")
    ingest_usage(customer, meter, october(15), now=INGEST_NOW, prefix="batch", region="eu-west")
    invoice = close_and_finalize(subscription)
    ingest_usage(customer, meter, [NOV + timedelta(days=3)], now=INGEST_NOW, prefix="nov")
    MembershipFactory(
        customer=customer,
        role=Role.FINANCE,
        user__email="fran@northwind.example.com",
        user__first_name="Fran",
        user__last_name="Finance",
    )
    return invoice


@pytest.mark.browser
def test_finance_opens_an_invoice_checks_a_lines_events_and_disputes_it(
    page: Page, live_server, northwind
):
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.set_default_timeout(10_000)
    outside, errors = [], []
    page.on(
        "request",
        lambda request: (
            outside.append(request.url)
            if not request.url.startswith((live_server.url, "data:"))
            else None
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    invoice = northwind

    page.goto(f"{live_server.url}/")
    page.get_by_label("Email").fill("fran@northwind.example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
    # Subscribed: the dashboard counts the billing period.
    expect(page.locator(".lede")).to_contain_text("the current billing period")

    # Billing: plan, the period so far with its projection, the invoices.
    page.get_by_role("link", name="Billing", exact=True).click()
    expect(page.get_by_role("heading", name="Billing", exact=True)).to_be_visible()
    expect(page.locator(".plan-name")).to_contain_text("Growth")
    expect(page.get_by_test_id("upcoming-total")).to_have_text("99.00 USD")
    expect(page.locator(".upcoming-card")).to_contain_text("Forecast from your daily usage")
    row = page.locator("#invoices tbody tr", has_text=invoice.number)
    expect(row).to_contain_text("99.10 USD")
    shoot(page, "billing.png")

    # The invoice: lines, the tier breakdown on demand, totals; printable alone.
    row.get_by_role("link", name=invoice.number).click()
    expect(page.get_by_role("heading", name=f"Invoice {invoice.number}")).to_be_visible()
    expect(page.get_by_test_id("invoice-total")).to_have_text("99.10 USD")
    usage = page.locator("tbody.invoice-line", has_text="API calls")
    tiers = usage.locator("details.tiers table")
    expect(tiers).to_be_hidden()
    usage.get_by_text("Tier breakdown").click()
    expect(tiers).to_contain_text("51 to 100")
    shoot(page, "billing-invoice.png")
    page.emulate_media(media="print")
    expect(page.locator(".sidebar")).to_be_hidden()
    expect(page.get_by_role("button", name="Print or save as PDF")).to_be_hidden()
    expect(page.locator(".invoice-doc")).to_be_visible()
    page.pdf(path=str(ARTIFACTS / "billing-invoice.pdf"), format="A4")
    page.emulate_media(media="screen")

    # The line's raw events: all 60, then only one region (htmx, URL kept).
    usage.get_by_role("link", name="Events").click()
    expect(page.get_by_role("heading", name="Events behind a line")).to_be_visible()
    expect(page.locator(".events-table tbody tr")).to_have_count(50)
    page.get_by_label("Property").fill("region=eu-west")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".events-table tbody tr")).to_have_count(15)
    expect(page).to_have_url(re.compile(r"property=region%3Deu-west"))
    expect(page.get_by_role("link", name="Export CSV")).to_have_attribute(
        "href", re.compile(r"/events/export\.csv\?property=region%3Deu-west$")
    )

    # Dispute it: an empty message is refused in place, then the dispute opens.
    page.get_by_role("button", name="Send dispute").click()  # the browser's own check first
    assert Dispute.objects.count() == 0
    page.get_by_label("What looks wrong?").fill(
        "The eu-west batch calls were a replay of a failed job."
    )
    page.get_by_role("button", name="Send dispute").click()
    expect(page.locator(".line-dispute")).to_contain_text("Under review")
    expect(page.locator(".flash-success")).to_contain_text("is open")
    expect(page.get_by_role("button", name="Send dispute")).to_have_count(0)
    dispute = Dispute.objects.get()
    assert dispute.message.startswith("The eu-west batch calls")
    assert dispute.opened_by.email == "fran@northwind.example.com"
    shoot(page, "billing-dispute.png")

    # The Billing page lists it.
    page.get_by_role("link", name="Billing", exact=True).click()
    expect(page.locator("#disputes")).to_contain_text("The eu-west batch calls")

    assert not errors, errors
    assert not outside, f"requests left the server: {outside}"

"""The usage dashboard and events page in the system Chromium.

A customer with 13 months of demo usage (seeded through the real ingest path) signs in,
lands on the dashboard with plotly charts drawn from our own static files, refreshes it
through htmx, then verifies usage on the Events page. Screenshots go to test-artifacts/.
"""

import io
import random
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.roles import Role
from metering import demo
from tests.accounts.factories import TEST_PASSWORD, CustomerFactory, MembershipFactory
from tests.metering.factories import event
from tests.metering.portal.helpers import send, this_month

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def shoot(page: Page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.fixture
def northwind(transactional_db):
    customer = CustomerFactory(
        name="Northwind Traders",
        external_id="acct-northwind-traders",
        timezone="America/New_York",
    )
    demo.seed_usage(io.StringIO(), random.Random(20260401), customers=[customer], months=13)
    # A customer of long standing: the forecast learns from its history.
    type(customer).objects.filter(pk=customer.pk).update(
        created_at=timezone.now() - timedelta(days=400)
    )
    return MembershipFactory(
        customer=customer,
        role=Role.VIEWER,  # the least privileged role sees usage too
        user__email="vera@northwind.example.com",
        user__first_name="Vera",
        user__last_name="Viewer",
    )


@pytest.mark.browser
def test_member_sees_live_usage_charts_and_verifies_events(page: Page, live_server, northwind):
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.set_default_timeout(10_000)
    outside = []
    page.on(
        "request",
        lambda request: (
            outside.append(request.url)
            if not request.url.startswith((live_server.url, "data:"))
            else None
        ),
    )
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.clock.install()  # so the test can let the 30 s poll come round at once
    page.goto(f"{live_server.url}/")
    page.get_by_label("Email").fill("vera@northwind.example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # The dashboard: big numbers and plotly charts drawn as SVG.
    expect(page).to_have_url(re.compile(r"/usage/$"))
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
    expect(page.locator(".kpi")).to_have_count(4)
    expect(page.locator("#meter-api_call .js-plotly-plot svg.main-svg").first).to_be_visible()
    expect(page.locator(".js-plotly-plot")).to_have_count(8)
    expect(page.locator(".breakdown")).to_have_count(2)
    api_calls = page.locator('.kpi-number[data-meter="api_call"]')
    before = int(api_calls.inner_text().replace(",", ""))
    assert before > 0
    # Count and sum meters: the forecast band (p10-p90 filled, p50 dashed) on the running
    # total, and where the period is heading; gauges have none.
    for code in ("api_call", "data_processed"):
        daily = page.locator(f"#meter-{code} .chart-block").first.locator(".js-plotly-plot")
        expect(daily.locator(".scatterlayer path.js-fill")).to_have_count(1)
        dashed = daily.locator(".scatterlayer path.js-line[style*='stroke-dasharray']")
        expect(dashed).to_have_count(1)
        expect(page.locator(f'[data-testid="projection-{code}"]')).to_contain_text(
            re.compile(r"Projected this month: [\d,.]+ \S+ \(range [\d,.]+–[\d,.]+\)")  # noqa: RUF001
        )
    expect(page.locator("#meter-active_seats .scatterlayer path.js-fill")).to_have_count(0)
    expect(page.locator('[data-testid="projection-active_seats"]')).to_have_count(0)
    shoot(page, "usage-dashboard.png")

    # New usage arrives; the htmx refresh shows it without a page load.
    customer = northwind.customer
    send(
        *(
            event(
                customer,
                f"live-{i}",
                ts=this_month(customer, 0.99).isoformat(),
                endpoint="/v1/live",
                region="us-east",
            )
            for i in range(5)
        )
    )
    page.evaluate("window.__sameDocument = true")
    page.clock.run_for(31_000)
    expect(api_calls).to_have_text(f"{before + 5:,}")
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator(".js-plotly-plot")).to_have_count(8)
    expect(page.locator("#meter-api_call .scatterlayer path.js-fill")).to_have_count(1)

    # Events: filter by meter and one property.
    page.get_by_role("link", name="Events", exact=True).click()
    expect(page.get_by_role("heading", name="Events", exact=True)).to_be_visible()
    page.get_by_label("Meter").select_option("api_call")
    page.get_by_label("Property").fill("endpoint=/v1/live")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".events-table tbody tr")).to_have_count(5)
    expect(page).to_have_url(re.compile(r"property=endpoint%3D%2Fv1%2Flive"))
    expect(page.get_by_role("link", name="Export CSV")).to_have_attribute(
        "href", re.compile(r"/usage/events/export\.csv\?meter=api_call&property=")
    )

    # A bad range is explained next to the field.
    page.get_by_label("From").fill("2026-11-20")
    page.get_by_label("To").fill("2026-11-01")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".field-error")).to_have_text("The end date is before the start date.")

    # Paging through all API calls.
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Meter").select_option("api_call")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".events-table tbody tr")).to_have_count(50)
    first_key = page.locator(".key-cell code").first.inner_text()
    page.get_by_role("link", name="Older →").click()
    expect(page.get_by_role("link", name="← Newer")).to_be_visible()
    assert page.locator(".key-cell code").first.inner_text() != first_key
    shoot(page, "usage-events.png")

    assert not errors, errors
    assert not outside, f"requests left the server: {outside}"

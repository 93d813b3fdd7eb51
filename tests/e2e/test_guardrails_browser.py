"""Caps & alerts in the system Chromium: a finance member caps a meter, tries an alert rule
with a level above the cap, reads the inline error, fixes it and sees the rule listed.

Runs against pytest-django's live server and keeps screenshots in ``test-artifacts/``.
"""

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.models import AuditLog
from accounts.roles import Role
from alerts import services
from alerts.models import AlertRule
from tests.accounts.factories import TEST_PASSWORD, CustomerFactory, MembershipFactory
from tests.metering.factories import api_calls_meter, data_meter

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def finance(transactional_db):
    customer = CustomerFactory(name="Northwind Analytics", external_id="northwind")
    member = MembershipFactory(
        customer=customer, role=Role.FINANCE, user__email="fin@northwind.example.com"
    )
    calls = api_calls_meter()
    data_meter()
    services.cap_set(actor=None, customer=customer, meter=calls, limit="50000")
    services.authorize(customer=customer, meter=calls, quantity="12000")
    services.rule_create(
        actor=None, customer=customer, kind="velocity", meter=calls, audience=["developer"]
    )
    return member


@pytest.mark.browser
def test_an_invalid_level_is_explained_inline_then_the_fixed_rule_is_listed(
    page: Page, live_server, finance
):
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.set_default_timeout(5000)

    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Email").fill("fin@northwind.example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Caps & alerts").click()
    expect(page.get_by_role("heading", name="Caps & alerts", exact=True)).to_be_visible()
    cap_row = page.locator("#caps-list tr", has_text="API calls")
    expect(cap_row).to_contain_text("50,000 calls")
    expect(cap_row).to_contain_text("Rejected")
    expect(cap_row).to_contain_text("12,000 of 50,000 calls")

    # The kind decides which settings the form shows.
    form = page.locator("#rule-form-card")
    form.get_by_label("Alert when").select_option("velocity")
    expect(form.get_by_label("Factor")).to_be_visible()
    expect(form.get_by_label("Levels", exact=True)).to_have_count(0)
    form = page.locator("#rule-form-card")
    form.get_by_label("Alert when").select_option("threshold")
    expect(form.get_by_label("Levels", exact=True)).to_be_visible()

    # A level past the hard cap: the error shows on the field, nothing is saved.
    form.get_by_label("Watch").select_option("api_call")
    form.get_by_label("Levels", exact=True).fill("40000, 60000")
    form.get_by_label("Name").fill("Calls budget")
    form.get_by_role("button", name="Add rule").click()
    error = page.locator("#rule-form-card .field-error")
    expect(error).to_contain_text("60000 is above the hard cap of 50000 calls")
    expect(page.locator("#rule-form-card").get_by_label("Name")).to_have_value("Calls budget")
    assert not AlertRule.objects.filter(name="Calls budget").exists()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "guardrails-error.png"), full_page=True)

    # Fixed: the rule is listed, and the form is fresh again.
    page.locator("#rule-form-card").get_by_label("Levels", exact=True).fill("40000, 48000")
    page.locator("#rule-form-card").get_by_role("button", name="Add rule").click()
    expect(page.locator(".flash-success")).to_contain_text("Calls budget")
    listed = page.locator("#rules-list tr", has_text="Calls budget")
    expect(listed).to_contain_text("At 40,000 · 48,000 calls")
    expect(listed).to_contain_text("Enabled")
    expect(page.locator("#rule-form-card").get_by_label("Name")).to_have_value("")
    expect(page.locator("#rule-form-card .field-error")).to_have_count(0)
    rule = AlertRule.objects.get(name="Calls budget")
    assert rule.levels == [40000, 48000]
    assert AuditLog.objects.filter(action="alert_rule.created", object_id=str(rule.pk)).exists()
    assert re.search(r"/alerts/$", page.url)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "guardrails.png"), full_page=True)

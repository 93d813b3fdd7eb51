"""Alerts in the system Chromium: the banner on the landing page, dismissing it (htmx), the
unread badge dropping, and the notification center marking what it shows as seen.
Screenshots go to test-artifacts/."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.roles import Role
from alerts.models import AlertSeen
from tests.accounts.factories import TEST_PASSWORD, CustomerFactory, MembershipFactory
from tests.alerts.alert_factories import make_alert, make_delivery
from tests.metering.factories import api_calls_meter

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def shoot(page: Page, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.fixture
def alerted(transactional_db):
    """A developer whose customer has three unseen alerts: a critical and a warning that
    are open, and an older info."""
    customer = CustomerFactory(name="Contoso Cloud", external_id="contoso")
    member = MembershipFactory(
        customer=customer, role=Role.DEVELOPER, user__email="dev@contoso.example.com"
    )
    now, calls = timezone.now(), api_calls_meter()
    make_alert(
        customer,
        title="Data export volume is rising fast",
        kind="velocity",
        severity="info",
        triggered_at=now - timedelta(days=2),
    )
    warning = make_alert(
        customer,
        title="API calls passed 80% of the included 100,000",
        meter=calls,
        triggered_at=now - timedelta(hours=5),
    )
    critical = make_alert(
        customer,
        title="API calls will pass the hard cap in 3 days (85% likely)",
        kind="predictive",
        severity="critical",
        meter=calls,
        triggered_at=now - timedelta(minutes=20),
    )
    make_delivery(critical, attempts=[("failed", 503), ("delivered", 200)])
    return member, warning, critical


@pytest.mark.browser
def test_member_sees_the_banner_dismisses_it_and_reads_notifications(
    page: Page, live_server, alerted
):
    member, warning, critical = alerted
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.set_default_timeout(10_000)

    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Email").fill("dev@contoso.example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # The banner shows the newest open warning-or-worse; the badge counts every unseen alert.
    banner = page.get_by_test_id("alert-banner")
    expect(banner).to_contain_text(critical.title)
    badge = page.get_by_test_id("unread-count")
    expect(badge).to_have_text("3")
    shoot(page, "alerts-banner.png")

    # Dismissing it (htmx): the next one takes its place and the count drops by one.
    banner.get_by_role("button", name="Dismiss this alert").click()
    expect(page.get_by_test_id("alert-banner")).to_contain_text(warning.title)
    expect(badge).to_have_text("2")
    assert AlertSeen.objects.filter(user=member.user, alert=critical).exists()

    # The notification center: unread ones highlighted this once, and now counted as seen.
    page.get_by_role("link", name=re.compile(r"^Notifications")).click()
    expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()
    expect(page.locator(".notice.is-unread")).to_have_count(2)
    expect(page.locator(".notice")).to_have_count(3)
    expect(page.get_by_test_id("unread-count")).to_be_hidden()
    expect(page.get_by_test_id("alert-banner")).to_have_count(0)
    shoot(page, "alerts-notifications.png")
    assert AlertSeen.objects.filter(user=member.user).count() == 3

    # The history expands an alert in place with its deliveries and attempts.
    page.get_by_role("link", name="Alert history").click()
    row = page.locator("tr", has_text=critical.title)
    row.get_by_role("link", name="Details").click()
    detail = page.locator(f"#alert-{critical.pk}-detail")
    expect(detail).to_contain_text("HTTP 503")
    expect(detail).to_contain_text("Delivered")
    shoot(page, "alerts-history.png")

    # Webhooks: an internal address is refused inline; a good URL shows its secret once.
    page.get_by_role("link", name="Webhooks").click()
    form = page.locator("#endpoint-form-card")
    form.get_by_label("URL").fill("http://10.0.0.7/hooks")
    form.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#endpoint-form-card .field-error")).to_have_text(
        "Alerts cannot be sent to internal addresses: 10.0.0.7 is a private address."
    )
    page.locator("#endpoint-form-card").get_by_label("URL").fill(
        "https://ops.contoso.example.com/meterbook"
    )
    page.locator("#endpoint-form-card").get_by_role("button", name="Add endpoint").click()
    secret = page.get_by_test_id("new-secret")
    expect(secret).to_contain_text("whsec_")
    expect(page.locator("#endpoints-list")).to_contain_text("ops.contoso.example.com")
    shoot(page, "alerts-webhooks.png")

"""The portal in the system Chromium: sign in, add a contact, create and revoke a key.

Runs against pytest-django's live server (its static handler serves htmx and the CSS) and
keeps full-page screenshots in ``test-artifacts/``.
"""

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts import services
from accounts.models import ApiKey, AuditLog, Contact
from accounts.roles import Role
from tests.accounts.factories import (
    TEST_PASSWORD,
    ContactFactory,
    CustomerFactory,
    MembershipFactory,
    make_api_key,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TOKEN_RE = re.compile(r"^mb_live_cu_[0-9A-Za-z]{12}_[0-9A-Za-z]{40}$")


def shoot(page: Page, name: str) -> None:
    # From the top, so the sticky sidebar is drawn where a reader expects it.
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.fixture
def team(transactional_db):
    """A customer with a few members, contacts and a key, so the pages look lived in."""
    customer = CustomerFactory(name="Northwind Analytics", external_id="northwind")
    owner = MembershipFactory(
        customer=customer,
        role=Role.OWNER,
        user__email="olivia@northwind.example.com",
        user__first_name="Olivia",
        user__last_name="Owens",
    )
    for email, role in (
        ("dev@northwind.example.com", Role.DEVELOPER),
        ("ap@northwind.example.com", Role.FINANCE),
    ):
        MembershipFactory(customer=customer, role=role, user__email=email, invited_by=owner.user)
    MembershipFactory(
        customer=customer,
        role=Role.VIEWER,
        user__email="new.hire@northwind.example.com",
        invited_by=owner.user,
        accepted_at=None,
    )
    ContactFactory(
        customer=customer,
        name="Priya Patel",
        persona="procurement",
        email="priya@northwind.example.com",
    )
    ContactFactory(
        customer=customer,
        name="Platform on-call",
        persona="developer",
        email="",
        slack_webhook_url="https://hooks.slack.com/services/T0/B0/abc",
        webhook_url="https://ops.northwind.example.com/hooks/meterbook",
    )
    _, token = make_api_key(
        customer=customer, name="Usage dashboard", scopes=["usage:read", "alerts:read"]
    )
    services.api_key_authenticate(token)  # so "last used" shows a time
    return owner


@pytest.mark.browser
def test_member_signs_in_adds_a_contact_creates_and_revokes_a_key(page: Page, live_server, team):
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
    page.set_default_timeout(5000)

    # Sign in.
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/"))
    shoot(page, "portal-login.png")
    page.get_by_label("Email").fill("olivia@northwind.example.com")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
    page.get_by_role("link", name="Team & contacts").click()
    expect(page.get_by_role("heading", name="Team & contacts")).to_be_visible()
    expect(page.locator(".tenant-name")).to_have_text("Northwind Analytics")

    # Add a contact through the htmx form: first an inline error, then success.
    form = page.locator("#contact-form-card")
    form.get_by_label("Name").fill("Fiona Finance")
    form.get_by_label("Persona").select_option("finance")
    form.get_by_label("Email").fill("fiona@northwind.example.com")
    form.get_by_label("Teams webhook URL").fill("not a url")
    form.get_by_role("button", name="Add contact").click()
    expect(page.locator("#contact-form-card .field-error")).to_have_text("Enter a valid URL.")
    expect(page.locator("#contact-form-card").get_by_label("Name")).to_have_value("Fiona Finance")

    page.locator("#contact-form-card").get_by_label("Teams webhook URL").fill(
        "https://northwind.webhook.office.com/webhookb2/finance"
    )
    page.locator("#contact-form-card").get_by_role("button", name="Add contact").click()
    expect(page.locator(".flash-success")).to_have_text("Contact Fiona Finance added.")
    row = page.locator("#contacts-list tr", has_text="Fiona Finance")
    expect(row).to_contain_text("Finance")
    expect(row).to_contain_text("Teams")
    expect(page.locator("#contact-form-card").get_by_label("Name")).to_have_value("")
    contact = Contact.objects.get(email="fiona@northwind.example.com")
    assert contact.teams_webhook_url.endswith("/finance")
    assert AuditLog.objects.filter(action="contact.created", object_id=str(contact.pk)).exists()
    shoot(page, "portal-team.png")

    # Create a key: the token is shown once.
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    page.get_by_label("Name").fill("Finance export")
    page.locator(".segmented label", has_text="Live").click()
    page.get_by_label("invoices:read").check()
    page.get_by_label("usage:read").check()
    page.get_by_role("button", name="Create key").click()
    token_box = page.get_by_test_id("new-token")
    expect(token_box).to_be_visible()
    token = token_box.inner_text().strip()
    assert TOKEN_RE.match(token), token
    expect(page.locator("#key-form-card")).to_contain_text("It will not be shown again")
    expect(page.locator("#keys-list tr", has_text="Finance export")).to_contain_text("Active")
    key = services.api_key_authenticate(token)
    assert key.name == "Finance export" and key.scopes == ["invoices:read", "usage:read"]
    shoot(page, "portal-key-created.png")

    page.get_by_role("link", name="I've copied it").click()
    expect(page.get_by_role("button", name="Create key")).to_be_visible()
    assert token not in page.content()
    page.reload()
    assert token not in page.content()

    # Revoke it (confirmed in a dialog); the row turns revoked without a reload.
    key_row = page.locator("#keys-list tr", has_text="Finance export")
    key_row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#keys-list tr", has_text="Finance export")).to_contain_text("Revoked")
    expect(page.locator(".flash-success")).to_contain_text("is revoked")
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    with pytest.raises(services.ApiKeyRejected):
        services.api_key_authenticate(token)

    shoot(page, "portal.png")

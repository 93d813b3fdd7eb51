"""Contacts on the team page: add, edit, delete, with inline errors and audit rows."""

import pytest
from django.urls import reverse

from accounts.models import AuditLog, Contact
from accounts.roles import Role
from tests.accounts.factories import ContactFactory
from tests.accounts.portal.helpers import HTMX, member, row, signed_in

pytestmark = pytest.mark.django_db

CREATE = reverse("portal:contact_create")
VALID = {
    "name": "Fran Finance",
    "persona": "finance",
    "email": "fran@alpha.example.com",
    "slack_webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX",
    "teams_webhook_url": "",
    "webhook_url": "",
}


@pytest.fixture
def developer(client, customer_a, owner_a):
    """A signed-in developer: developers may manage contacts, and no more."""
    membership = member(customer_a, Role.DEVELOPER)
    signed_in(client, membership)
    return membership


def test_add_contact_over_htmx_returns_fresh_form_list_and_flash(client, developer, customer_a):
    response = client.post(CREATE, VALID, headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert body.index('id="contact-form-card"') < body.index('id="contacts-list"')
    assert 'id="contacts-list" class="table-wrap" hx-swap-oob="true"' in body
    assert "Contact Fran Finance added." in body
    contact = Contact.objects.get(customer=customer_a, email="fran@alpha.example.com")
    assert contact.channels == ["email", "slack"]
    log = AuditLog.objects.get(action="contact.created")
    assert log.customer == customer_a and log.actor_user == developer.user
    assert log.object_id == str(contact.pk)
    assert log.after["slack_webhook_url"] == VALID["slack_webhook_url"]


def test_add_contact_with_a_plain_post_redirects_to_the_contacts(client, developer, customer_a):
    response = client.post(CREATE, VALID)

    assert response.status_code == 302
    assert response.url == reverse("portal:team") + "#contacts"
    assert "Contact Fran Finance added." in client.get(response.url).content.decode()


@pytest.mark.parametrize(
    ("change", "field_error"),
    [
        ({"email": "nope"}, "Enter a valid email address."),
        ({"slack_webhook_url": "not a url"}, "Enter a valid URL."),
        ({"teams_webhook_url": "ftp://x"}, "Enter a valid URL."),
        ({"persona": "astronaut"}, "Select a valid choice."),
        ({"name": ""}, "This field is required."),
        ({"email": "", "slack_webhook_url": ""}, "Give at least one channel"),
    ],
    ids=["email", "slack-url", "teams-scheme", "persona", "name", "no-channel"],
)
def test_invalid_contact_is_refused_inline_over_htmx(client, developer, change, field_error):
    response = client.post(CREATE, {**VALID, **change}, headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 422
    assert field_error in body
    assert body.lstrip().startswith('<div class="card" id="contact-form-card">')
    assert "<html" not in body
    assert not Contact.objects.exists()
    assert not AuditLog.objects.filter(action="contact.created").exists()


def test_invalid_contact_on_a_plain_post_rerenders_the_page_with_errors(client, developer):
    response = client.post(CREATE, {**VALID, "email": "nope"})

    assert response.status_code == 422
    assert b"<html" in response.content and b"Enter a valid email address." in response.content


def test_duplicate_contact_email_is_refused_on_the_email_field(client, developer, customer_a):
    ContactFactory(customer=customer_a, email="fran@alpha.example.com")

    response = client.post(CREATE, VALID, headers=HTMX)

    assert response.status_code == 422
    assert b"already uses fran@alpha.example.com" in response.content
    assert Contact.objects.filter(customer=customer_a).count() == 1


def test_edit_contact_form_then_save_changes_and_audits(client, developer, customer_a):
    contact = ContactFactory(customer=customer_a, name="Old Name", email="old@alpha.example.com")
    url = reverse("portal:contact_edit", args=[contact.pk])

    form = client.get(url, headers=HTMX)
    response = client.post(
        url, {**VALID, "name": "New Name", "email": "old@alpha.example.com"}, headers=HTMX
    )

    assert (
        form.status_code == 200
        and b'value="Old Name"' in form.content
        and b"Edit Old Name" in form.content
    )
    assert response.status_code == 200 and b"Contact New Name saved." in response.content
    contact.refresh_from_db()
    assert contact.name == "New Name"
    assert contact.slack_webhook_url == VALID["slack_webhook_url"]
    log = AuditLog.objects.get(action="contact.updated")
    assert log.before["name"] == "Old Name" and log.after["name"] == "New Name"


def test_edit_contact_without_js_is_a_page(client, developer, customer_a):
    contact = ContactFactory(customer=customer_a)
    url = reverse("portal:contact_edit", args=[contact.pk])

    page = client.get(url)
    invalid = client.post(url, {**VALID, "webhook_url": "bad"})

    assert page.status_code == 200 and b"<html" in page.content and b"Edit contact" in page.content
    assert invalid.status_code == 422 and b"Enter a valid URL." in invalid.content
    assert row(Contact, contact.pk)["webhook_url"] == ""


def test_invalid_edit_changes_nothing(client, developer, customer_a):
    contact = ContactFactory(customer=customer_a)
    before = row(Contact, contact.pk)

    response = client.post(
        reverse("portal:contact_edit", args=[contact.pk]),
        {**VALID, "email": "", "slack_webhook_url": ""},
        headers=HTMX,
    )

    assert response.status_code == 422
    assert b"Give at least one channel" in response.content
    assert row(Contact, contact.pk) == before


def test_cancel_edit_gets_an_empty_add_form(client, developer):
    response = client.get(CREATE, headers=HTMX)

    assert response.status_code == 200
    assert b"Add a contact" in response.content and b"<html" not in response.content


def test_delete_contact_is_confirmed_and_audited(client, developer, customer_a):
    contact = ContactFactory(customer=customer_a, name="Gone Soon")
    url = reverse("portal:contact_delete", args=[contact.pk])

    confirm = client.get(url)
    response = client.post(url, headers=HTMX)

    assert confirm.status_code == 200 and b"Delete <strong>Gone Soon</strong>" in confirm.content
    assert response.status_code == 200
    assert (
        b"Contact Gone Soon deleted." in response.content and b"No contacts yet" in response.content
    )
    assert not Contact.objects.filter(pk=contact.pk).exists()
    log = AuditLog.objects.get(action="contact.deleted")
    assert log.before["name"] == "Gone Soon" and log.object_id == str(contact.pk)


def test_contact_list_shows_persona_and_channels(client, developer, customer_a):
    ContactFactory(
        customer=customer_a,
        name="Exec Erin",
        persona="executive",
        email="",
        teams_webhook_url="https://example.webhook.office.com/x",
        webhook_url="https://hooks.example.com/meterbook",
    )

    page = client.get(reverse("portal:team")).content.decode()

    assert "Exec Erin" in page and "Executive" in page
    assert ">Teams<" in page and ">Webhook<" in page

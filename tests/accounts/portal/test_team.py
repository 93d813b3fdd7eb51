"""Team page: invitations end to end, roles, removal, and service refusals shown inline."""

import re
import time
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import AuditLog, Membership
from accounts.roles import Role
from accounts.services import invitation_token
from tests.accounts.factories import ContactFactory, MembershipFactory
from tests.accounts.portal.helpers import HTMX, login, member, row, signed_in

pytestmark = pytest.mark.django_db

TEAM = reverse("portal:team")
INVITE = reverse("portal:member_invite")
NEW_PASSWORD = "plum orchard sunrise 19"


def invite(client, capture, email="new.dev@alpha.example.com", role=Role.DEVELOPER, **extra):
    with capture(execute=True):
        return client.post(INVITE, {"email": email, "role": role}, **extra)


def link_in(message) -> str:
    """The path of the invitation link in an email."""
    match = re.search(r"https?://\S+/invitations/\S+/", message.body)
    assert match, message.body
    return urlsplit(match.group(0)).path


def test_invite_emails_a_link_that_sets_a_password_and_signs_in(
    client, owner_a, django_capture_on_commit_callbacks
):
    signed_in(client, owner_a)

    response = invite(client, django_capture_on_commit_callbacks)

    assert response.status_code == 302
    invited = Membership.objects.get(user__email="new.dev@alpha.example.com")
    assert (
        invited.is_pending and invited.invited_by == owner_a.user and invited.role == Role.DEVELOPER
    )
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new.dev@alpha.example.com"]
    assert "Alpha Analytics" in message.subject
    assert "owner@alpha.example.com has invited you" in message.body
    team_page = client.get(TEAM).content.decode()
    assert "new.dev@alpha.example.com" in team_page and "Pending" in team_page

    # The invitee follows the link, in a fresh browser.
    client.logout()
    path = link_in(message)
    page = client.get(path)
    assert page.status_code == 200
    assert b"Join Alpha Analytics" in page.content and b"new.dev@alpha.example.com" in page.content

    mismatch = client.post(path, {"password": NEW_PASSWORD, "password_again": "something else"})
    assert mismatch.status_code == 422 and b"The two passwords differ" in mismatch.content
    weak = client.post(path, {"password": "123", "password_again": "123"})
    assert weak.status_code == 422 and b"too short" in weak.content

    accepted = client.post(path, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert accepted.status_code == 302 and accepted.url == TEAM
    assert client.get(TEAM).status_code == 200  # signed in
    invited.refresh_from_db()
    assert not invited.is_pending
    assert AuditLog.objects.filter(action="membership.accepted", object_id=str(invited.pk)).exists()

    # The link is spent; the password works from the login page.
    client.logout()
    reuse = client.get(path)
    assert reuse.status_code == 409 and b"already accepted" in reuse.content
    # Signing in again lands on the usage dashboard, like every member.
    assert login(client, "new.dev@alpha.example.com", NEW_PASSWORD).url == reverse(
        "usage:dashboard"
    )


def test_resend_invalidates_the_old_link(client, owner_a, django_capture_on_commit_callbacks):
    signed_in(client, owner_a)
    invite(client, django_capture_on_commit_callbacks)
    invited = Membership.objects.get(user__email="new.dev@alpha.example.com")
    old_link = link_in(mail.outbox[0])

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("portal:member_resend", args=[invited.pk]), headers=HTMX)

    assert response.status_code == 200
    assert b"Invitation re-sent" in response.content
    assert len(mail.outbox) == 2
    new_link = link_in(mail.outbox[1])
    assert new_link != old_link
    assert AuditLog.objects.filter(action="membership.invitation_resent").count() == 1
    client.logout()
    stale = client.get(old_link)
    assert stale.status_code == 404 and b"not valid" in stale.content
    assert (
        client.post(
            old_link, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
        ).status_code
        == 404
    )
    assert client.get(new_link).status_code == 200


def test_resend_to_an_accepted_member_is_refused_inline(client, customer_a, owner_a):
    accepted = member(customer_a, Role.DEVELOPER)
    signed_in(client, owner_a)

    response = client.post(reverse("portal:member_resend", args=[accepted.pk]), headers=HTMX)

    assert response.status_code == 422
    assert b"already accepted" in response.content


def test_expired_invitation_says_so(client, customer_a, owner_a, settings):
    pending = MembershipFactory(customer=customer_a, role=Role.VIEWER, accepted_at=None)
    path = reverse("portal:invitation_accept", kwargs={"token": invitation_token(pending)})
    later = time.time() + (settings.INVITATION_TTL_DAYS + 1) * 86400
    with mock.patch("django.core.signing.time.time", return_value=later):
        response = client.get(path)

    assert response.status_code == 400
    assert b"Invitation expired" in response.content and b"ask for a new one" in response.content


def test_garbage_invitation_token_is_not_valid(client, db):
    response = client.get(reverse("portal:invitation_accept", kwargs={"token": "not-a-token"}))

    assert response.status_code == 404
    assert b"Invitation not valid" in response.content


def test_invite_errors_show_inline_in_the_htmx_partial(client, customer_a, owner_a, customer_b):
    MembershipFactory(customer=customer_b, user__email="taken@beta.example.com")
    signed_in(client, owner_a)

    response = client.post(
        INVITE, {"email": "taken@beta.example.com", "role": "viewer"}, headers=HTMX
    )
    bad_email = client.post(INVITE, {"email": "not an email", "role": "viewer"}, headers=HTMX)

    assert response.status_code == 422
    body = response.content.decode()
    assert 'id="invite-card"' in body and "<html" not in body
    assert "already a member of another customer" in body
    assert (
        bad_email.status_code == 422 and "Enter a valid email address" in bad_email.content.decode()
    )
    assert not Membership.objects.filter(user__email="not an email").exists()


def test_invite_success_over_htmx_swaps_a_fresh_form_and_the_member_list(client, owner_a):
    signed_in(client, owner_a)

    response = client.post(
        INVITE, {"email": "ann@alpha.example.com", "role": "finance"}, headers=HTMX
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert body.index('id="invite-card"') < body.index('id="members-list"')
    assert 'id="members-list" class="table-wrap" hx-swap-oob="true"' in body
    assert "ann@alpha.example.com" in body and "Invitation sent to ann@alpha.example.com" in body


def test_admin_cannot_invite_an_owner(client, customer_a, owner_a):
    admin = member(customer_a, Role.ADMIN)
    signed_in(client, admin)

    response = client.post(
        INVITE, {"email": "boss@alpha.example.com", "role": "owner"}, headers=HTMX
    )

    assert response.status_code == 422
    assert b"Only an owner can change, add or remove an owner" in response.content
    assert not Membership.objects.filter(user__email="boss@alpha.example.com").exists()


def test_change_role_updates_the_row_and_is_audited(client, customer_a, owner_a):
    developer = member(customer_a, Role.DEVELOPER)
    signed_in(client, owner_a)

    response = client.post(
        reverse("portal:member_role", args=[developer.pk]), {"role": "finance"}, headers=HTMX
    )

    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith(f'<tr id="member-{developer.pk}"')
    developer.refresh_from_db()
    assert developer.role == Role.FINANCE
    log = AuditLog.objects.get(action="membership.role_changed")
    assert (log.before, log.after, log.actor_user) == (
        {"role": "developer"},
        {"role": "finance"},
        owner_a.user,
    )


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain-post"])
def test_last_owner_cannot_be_demoted(client, owner_a, htmx):
    signed_in(client, owner_a)
    before = row(Membership, owner_a.pk)

    response = client.post(
        reverse("portal:member_role", args=[owner_a.pk]),
        {"role": "admin"},
        headers=HTMX if htmx else {},
    )

    assert response.status_code == 422
    assert b"at least one owner" in response.content
    assert (b"<html" in response.content) is not htmx
    assert row(Membership, owner_a.pk) == before
    assert not AuditLog.objects.filter(action="membership.role_changed").exists()


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain-post"])
def test_last_owner_cannot_be_removed(client, customer_a, owner_a, htmx):
    admin = member(customer_a, Role.ADMIN)
    MembershipFactory(
        customer=customer_a, role=Role.OWNER, accepted_at=None
    )  # pending owners don't count
    signed_in(client, owner_a)
    before = row(Membership, owner_a.pk)

    response = client.post(
        reverse("portal:member_remove", args=[owner_a.pk]), headers=HTMX if htmx else {}
    )

    assert response.status_code == 422
    assert b"The last owner cannot be removed" in response.content
    assert row(Membership, owner_a.pk) == before
    assert Membership.objects.filter(pk=admin.pk).exists()


def test_admin_cannot_remove_an_owner(client, customer_a, owner_a):
    signed_in(client, member(customer_a, Role.ADMIN))

    response = client.post(reverse("portal:member_remove", args=[owner_a.pk]), headers=HTMX)

    assert response.status_code == 422
    assert b"Only an owner" in response.content
    assert Membership.objects.filter(pk=owner_a.pk).exists()


def test_remove_member_deletes_the_row_and_closes_the_account(client, customer_a, owner_a):
    developer = member(customer_a, Role.DEVELOPER)
    signed_in(client, owner_a)

    confirm = client.get(reverse("portal:member_remove", args=[developer.pk]))
    response = client.post(reverse("portal:member_remove", args=[developer.pk]), headers=HTMX)

    assert confirm.status_code == 200 and b"Remove member" in confirm.content
    assert response.status_code == 200
    assert f"{developer.user.email} was removed" in response.content.decode()
    assert "<tr" not in response.content.decode()  # the row is swapped for nothing
    assert not Membership.objects.filter(pk=developer.pk).exists()
    developer.user.refresh_from_db()
    assert not developer.user.is_active
    assert AuditLog.objects.filter(
        action="membership.removed", object_id=str(developer.pk)
    ).exists()


def test_owner_who_removes_themselves_is_signed_out(client, customer_a, owner_a):
    MembershipFactory(customer=customer_a, role=Role.OWNER)
    signed_in(client, owner_a)

    response = client.post(reverse("portal:member_remove", args=[owner_a.pk]), headers=HTMX)

    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == reverse("portal:login")
    assert client.get(TEAM).status_code == 302


def test_demoting_yourself_refreshes_the_page(client, customer_a, owner_a):
    admin = member(customer_a, Role.ADMIN)
    signed_in(client, admin)

    response = client.post(
        reverse("portal:member_role", args=[admin.pk]), {"role": "viewer"}, headers=HTMX
    )

    assert response.headers["HX-Refresh"] == "true"
    assert (
        client.post(INVITE, {"email": "x@alpha.example.com", "role": "viewer"}).status_code == 403
    )


def test_unknown_role_is_refused_inline(client, customer_a, owner_a):
    developer = member(customer_a, Role.DEVELOPER)
    signed_in(client, owner_a)

    response = client.post(
        reverse("portal:member_role", args=[developer.pk]), {"role": "emperor"}, headers=HTMX
    )

    assert response.status_code == 422
    assert b"Select a valid choice" in response.content
    developer.refresh_from_db()
    assert developer.role == Role.DEVELOPER


def test_team_page_query_count_does_not_grow_with_members_and_contacts(
    client, customer_a, owner_a, django_assert_max_num_queries
):
    for i in range(15):
        MembershipFactory(customer=customer_a, role=Role.DEVELOPER, invited_by=owner_a.user)
        MembershipFactory(
            customer=customer_a, role=Role.VIEWER, accepted_at=None, invited_by=owner_a.user
        )
        ContactFactory(
            customer=customer_a, slack_webhook_url=f"https://hooks.slack.com/services/T/{i}"
        )
    signed_in(client, owner_a)

    # session, user, membership + customer, members (+ users, inviters), contacts; the
    # layout's alert banner and unread badge (alerts.context_processors)
    with django_assert_max_num_queries(6 + 2):
        response = client.get(TEAM)

    assert response.status_code == 200
    assert response.content.decode().count('<tr id="member-') == 31
    assert response.content.decode().count('<tr id="contact-') == 15

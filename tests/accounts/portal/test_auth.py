"""Signing in and out, the front door, password change, and who may use the portal."""

import pytest
from django.urls import reverse

from accounts import services
from accounts.roles import Role
from tests.accounts.factories import TEST_PASSWORD, UserFactory
from tests.accounts.portal.helpers import login, member, signed_in

pytestmark = pytest.mark.django_db

TEAM = reverse("portal:team")
DASHBOARD = reverse("usage:dashboard")  # where members land
LOGIN = reverse("portal:login")


def test_member_logs_in_with_email_and_lands_on_the_usage_dashboard(client, owner_a):
    response = login(client, "owner@alpha.example.com")

    assert response.status_code == 302
    assert response.url == DASHBOARD
    page = client.get(DASHBOARD)
    assert page.status_code == 200
    assert b"Alpha Analytics" in page.content


def test_email_is_matched_whatever_its_case(client, owner_a):
    response = login(client, "  Owner@Alpha.EXAMPLE.com ")

    assert response.status_code == 302
    assert response.url == DASHBOARD


def test_wrong_password_shows_an_error_and_does_not_sign_in(client, owner_a):
    response = login(client, "owner@alpha.example.com", "not the password")

    assert response.status_code == 200
    assert b"do not match an account" in response.content
    assert "_auth_user_id" not in client.session


def test_login_honours_a_safe_next_url(client, owner_a):
    keys = reverse("portal:keys")
    response = client.post(
        f"{LOGIN}?next={keys}",
        {"username": owner_a.user.email, "password": TEST_PASSWORD, "next": keys},
    )

    assert response.url == keys


def test_staff_without_membership_land_in_the_admin(client):
    UserFactory(email="staff@vendor.example.com", is_staff=True)

    response = login(client, "staff@vendor.example.com")

    assert response.status_code == 302
    assert response.url == reverse("admin:index")
    assert client.get(TEAM).url == reverse("admin:index")
    assert client.get("/").url == reverse("admin:index")


def test_staff_see_an_admin_link_in_the_navigation_on_portal_pages(client):
    staff = UserFactory(email="staff@vendor.example.com", is_staff=True)
    client.force_login(staff)

    page = client.get(reverse("portal:password_change"))

    assert reverse("admin:index").encode() in page.content
    assert b"Team &amp; contacts" not in page.content


def test_user_without_membership_cannot_sign_in_and_is_told_why(client):
    UserFactory(email="stray@example.com")

    response = login(client, "stray@example.com")

    assert response.status_code == 200
    assert b"not a member of any customer" in response.content
    assert "_auth_user_id" not in client.session


def test_signed_in_user_without_membership_gets_a_clear_no_access_page(client):
    client.force_login(UserFactory(email="stray@example.com"))

    assert client.get("/").url == reverse("portal:no_access")
    for url in (TEAM, reverse("portal:keys"), reverse("portal:no_access")):
        response = client.get(url)
        assert response.status_code == 403
        assert b"not a member of any customer" in response.content


def test_front_door_sends_each_visitor_to_the_right_place(client, owner_a):
    assert client.get("/").url == LOGIN

    signed_in(client, owner_a)
    assert client.get("/").url == DASHBOARD
    assert client.get(LOGIN).url == DASHBOARD  # already signed in


def test_anonymous_visitor_is_sent_to_login_with_next(client, db):
    for url in (TEAM, reverse("portal:keys"), reverse("portal:password_change")):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url == f"{LOGIN}?next={url}"


def test_logout_is_a_post_and_ends_the_session(client, owner_a):
    signed_in(client, owner_a)

    assert client.get(reverse("portal:logout")).status_code == 405
    response = client.post(reverse("portal:logout"))

    assert response.status_code == 302
    assert response.url == LOGIN
    assert client.get(TEAM).status_code == 302


def test_navigation_has_logout_form_and_only_existing_pages(client, customer_a):
    owner = member(customer_a, Role.OWNER)
    page = signed_in(client, owner).get(TEAM).content.decode()

    assert f'action="{reverse("portal:logout")}"' in page
    for url in (TEAM, reverse("portal:keys"), reverse("portal:password_change")):
        assert f'href="{url}"' in page
    assert reverse("admin:index") not in page


def test_password_change_then_the_new_password_works_and_the_old_does_not(client, owner_a):
    signed_in(client, owner_a)
    new = "a brand new passphrase 77"

    form = client.get(reverse("portal:password_change"))
    response = client.post(
        reverse("portal:password_change"),
        {"old_password": TEST_PASSWORD, "new_password1": new, "new_password2": new},
    )

    assert form.status_code == 200
    assert response.url == reverse("portal:password_change_done")
    assert b"Your password was changed" in client.get(response.url).content
    client.post(reverse("portal:logout"))
    assert login(client, owner_a.user.email, TEST_PASSWORD).status_code == 200
    assert login(client, owner_a.user.email, new).url == DASHBOARD


def test_password_change_shows_the_validators_errors(client, owner_a):
    signed_in(client, owner_a)

    response = client.post(
        reverse("portal:password_change"),
        {"old_password": "wrong", "new_password1": "123", "new_password2": "123"},
    )

    assert response.status_code == 200
    assert b"Your old password was entered incorrectly" in response.content
    owner_a.user.refresh_from_db()
    assert owner_a.user.check_password(TEST_PASSWORD)


def test_removed_members_session_stops_working(client, customer_a, owner_a):
    developer = member(customer_a, Role.DEVELOPER)
    signed_in(client, developer)
    assert client.get(TEAM).status_code == 200

    services.member_remove(actor=owner_a.user, membership=developer)

    assert client.get(TEAM).url == f"{LOGIN}?next={TEAM}"

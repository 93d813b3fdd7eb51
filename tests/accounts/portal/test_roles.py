"""The role matrix: which role may open or change which portal page (403 otherwise)."""

import pytest
from django.urls import reverse

from accounts.models import ApiKey, AuditLog, Contact, Membership
from accounts.roles import Role
from tests.accounts.factories import ContactFactory, MembershipFactory, make_api_key
from tests.accounts.portal.helpers import member, row, signed_in

pytestmark = pytest.mark.django_db

ALL = {Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.FINANCE, Role.VIEWER}
TEAM_MANAGERS = {Role.OWNER, Role.ADMIN}
CONTACT_EDITORS = {Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.FINANCE}
KEY_MANAGERS = {Role.OWNER, Role.ADMIN}

CONTACT_DATA = {"name": "Dana Ops", "persona": "developer", "email": "dana@alpha.example.com"}
KEY_DATA = {"name": "ci", "environment": "test", "scopes": ["usage:read"]}

# (case name, method, url name, kwarg -> fixture object, POST data, roles allowed)
CASES = [
    ("team page", "get", "team", None, None, ALL),
    (
        "invite",
        "post",
        "member_invite",
        None,
        {"email": "new@alpha.example.com", "role": "viewer"},
        TEAM_MANAGERS,
    ),
    ("change role", "post", "member_role", "target", {"role": "finance"}, TEAM_MANAGERS),
    ("remove confirm", "get", "member_remove", "target", None, TEAM_MANAGERS),
    ("remove", "post", "member_remove", "target", {}, TEAM_MANAGERS),
    ("resend", "post", "member_resend", "target", {}, TEAM_MANAGERS),
    ("add contact", "post", "contact_create", None, CONTACT_DATA, CONTACT_EDITORS),
    ("edit contact form", "get", "contact_edit", "contact", None, CONTACT_EDITORS),
    (
        "edit contact",
        "post",
        "contact_edit",
        "contact",
        {**CONTACT_DATA, "name": "Renamed"},
        CONTACT_EDITORS,
    ),
    ("delete contact confirm", "get", "contact_delete", "contact", None, CONTACT_EDITORS),
    ("delete contact", "post", "contact_delete", "contact", {}, CONTACT_EDITORS),
    ("keys page", "get", "keys", None, None, KEY_MANAGERS),
    ("create key", "post", "keys", None, KEY_DATA, KEY_MANAGERS),
    ("revoke confirm", "get", "key_revoke", "key", None, KEY_MANAGERS),
    ("revoke", "post", "key_revoke", "key", {}, KEY_MANAGERS),
]
KWARGS = {"target": "membership_id", "contact": "contact_id", "key": "key_id"}


@pytest.fixture
def world(customer_a):
    """An owner (so the last-owner rule never interferes), a pending member, a contact, a key."""
    MembershipFactory(customer=customer_a, role=Role.OWNER)
    target = MembershipFactory(customer=customer_a, role=Role.DEVELOPER, accepted_at=None)
    return {
        "target": target,
        "contact": ContactFactory(customer=customer_a),
        "key": make_api_key(customer=customer_a)[0],
    }


def snapshot(world, customer):
    return (
        row(Membership, world["target"].pk),
        row(Contact, world["contact"].pk),
        row(ApiKey, world["key"].pk),
        Membership.objects.filter(customer=customer).count(),
        Contact.objects.filter(customer=customer).count(),
        ApiKey.objects.filter(customer=customer).count(),
        AuditLog.objects.filter(customer=customer).count(),
    )


@pytest.mark.parametrize("role", sorted(ALL))
@pytest.mark.parametrize(
    ("case", "method", "name", "obj", "data", "allowed"), CASES, ids=[c[0] for c in CASES]
)
def test_role_matrix(client, customer_a, world, role, case, method, name, obj, data, allowed):
    signed_in(client, member(customer_a, role))
    url = reverse(f"portal:{name}", kwargs={KWARGS[obj]: world[obj].pk} if obj else None)
    before = snapshot(world, customer_a)

    response = getattr(client, method)(url, data) if method == "post" else client.get(url)

    if role in allowed:
        assert response.status_code in (200, 201, 302), (case, role, response.status_code)
        if method == "post":
            assert snapshot(world, customer_a) != before, f"{case} as {role} changed nothing"
    else:
        assert response.status_code == 403, (case, role, response.status_code)
        assert b"cannot" in response.content
        assert snapshot(world, customer_a) == before, f"{case} as {role} changed data"


@pytest.mark.parametrize(
    ("role", "sees_invite", "sees_contact_form", "sees_keys_link"),
    [
        (Role.OWNER, True, True, True),
        (Role.ADMIN, True, True, True),
        (Role.DEVELOPER, False, True, False),
        (Role.FINANCE, False, True, False),
        (Role.VIEWER, False, False, False),
    ],
)
def test_team_page_offers_only_what_the_role_may_do(
    client, customer_a, world, role, sees_invite, sees_contact_form, sees_keys_link
):
    page = signed_in(client, member(customer_a, role)).get(reverse("portal:team")).content.decode()

    assert ('id="invite-card"' in page) is sees_invite
    assert ('name="role"' in page) is sees_invite  # role selects on member rows
    assert ('id="contact-form-card"' in page) is sees_contact_form
    assert (reverse("portal:contact_edit", args=[world["contact"].pk]) in page) is sees_contact_form
    assert (f'href="{reverse("portal:keys")}"' in page) is sees_keys_link
    # Everyone sees the members and contacts.
    assert world["target"].user.email in page
    assert world["contact"].name in page


def test_forbidden_htmx_request_gets_403_without_a_partial(client, customer_a, world):
    signed_in(client, member(customer_a, Role.VIEWER))

    response = client.post(
        reverse("portal:contact_create"), CONTACT_DATA, headers={"HX-Request": "true"}
    )

    assert response.status_code == 403
    assert not Contact.objects.filter(email=CONTACT_DATA["email"]).exists()

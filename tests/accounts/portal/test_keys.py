"""API keys page: create (token shown once), scopes, revoke, and the query budget."""

import re

import pytest
from django.urls import reverse

from accounts import services
from accounts.models import ApiKey, AuditLog
from accounts.roles import Role
from accounts.scopes import CUSTOMER_KEY_SCOPES, SCOPES
from tests.accounts.factories import MembershipFactory, make_api_key
from tests.accounts.portal.helpers import HTMX, member, row, signed_in

pytestmark = pytest.mark.django_db

KEYS = reverse("portal:keys")
TOKEN_RE = re.compile(r"mb_(?:live|test)_cu_[0-9A-Za-z]{12}_[0-9A-Za-z]{40}")


def create(client, **data):
    payload = {
        "name": "billing sync",
        "environment": "live",
        "scopes": ["usage:read", "invoices:read"],
    }
    return client.post(KEYS, {**payload, **data}, headers=HTMX)


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain-post"])
def test_created_key_is_shown_once_and_authenticates(client, customer_a, owner_a, htmx):
    signed_in(client, owner_a)

    response = client.post(
        KEYS,
        {"name": "billing sync", "environment": "test", "scopes": ["usage:read", "invoices:read"]},
        headers=HTMX if htmx else {},
    )

    assert response.status_code == (200 if htmx else 201)
    body = response.content.decode()
    tokens = TOKEN_RE.findall(body)
    assert len(set(tokens)) == 1
    token = tokens[0]
    assert token.startswith("mb_test_cu_")
    assert "It will not be shown again" in body
    assert "no-store" in response.headers["Cache-Control"]
    key = services.api_key_authenticate(token)
    assert key.customer == customer_a and key.kind == ApiKey.Kind.CUSTOMER
    assert key.scopes == ["invoices:read", "usage:read"] and key.created_by == owner_a.user
    assert key.name == "billing sync"

    second = client.get(KEYS).content.decode()
    assert token not in second and key.prefix in second
    assert not TOKEN_RE.search(second)
    assert token not in str(dict(client.session))
    log = AuditLog.objects.get(action="api_key.created")
    assert log.customer == customer_a and token not in str(log.after)


def test_htmx_create_swaps_the_reveal_card_and_the_key_list(client, owner_a):
    signed_in(client, owner_a)

    body = create(client).content.decode()

    assert body.lstrip().startswith('<div class="card card-highlight" id="key-form-card">')
    assert 'id="keys-list" class="table-wrap" hx-swap-oob="true"' in body
    assert "billing sync" in body


def test_dismissing_the_token_brings_back_an_empty_form(client, owner_a):
    signed_in(client, owner_a)

    response = client.get(f"{KEYS}?fragment=form", headers=HTMX)

    assert response.status_code == 200
    assert b"Create a key" in response.content and b"<html" not in response.content


def test_form_offers_only_customer_scopes(client, owner_a):
    signed_in(client, owner_a)

    page = client.get(KEYS).content.decode()

    for scope in CUSTOMER_KEY_SCOPES:
        assert f'value="{scope}"' in page
    for name, scope in SCOPES.items():
        if scope.operator_only:
            assert f'value="{name}"' not in page


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"scopes": []}, "Choose at least one scope."),
        (
            {"scopes": ["events:write"]},
            "Select a valid choice. events:write is not one of the available choices.",
        ),
        ({"name": "   "}, "This field is required."),
        ({"environment": "staging"}, "Select a valid choice."),
    ],
    ids=["no-scope", "operator-scope", "blank-name", "environment"],
)
def test_invalid_key_request_is_refused_inline(client, owner_a, data, error):
    signed_in(client, owner_a)

    response = create(client, **data)

    assert response.status_code == 422
    body = response.content.decode()
    assert error in body and 'id="key-form-card"' in body and "<html" not in body
    assert not TOKEN_RE.search(body)
    assert not ApiKey.objects.exists()


def test_revoke_is_confirmed_then_the_key_stops_working_and_is_audited(client, customer_a, owner_a):
    key, token = make_api_key(customer=customer_a, name="old integration")
    signed_in(client, owner_a)
    url = reverse("portal:key_revoke", args=[key.pk])

    confirm = client.get(url)
    response = client.post(url, headers=HTMX)

    assert (
        confirm.status_code == 200 and b"Revoke <strong>old integration</strong>" in confirm.content
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tr id="key-{key.pk}" class="is-revoked">')
    assert "Revoked" in body and "requests with it now fail" in body
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == owner_a.user
    with pytest.raises(services.ApiKeyRejected, match="revoked"):
        services.api_key_authenticate(token)
    log = AuditLog.objects.get(action="api_key.revoked")
    assert log.actor_user == owner_a.user and log.object_id == str(key.pk)


def test_revoking_twice_changes_nothing_more(client, customer_a, owner_a):
    key, _ = make_api_key(customer=customer_a)
    signed_in(client, owner_a)
    url = reverse("portal:key_revoke", args=[key.pk])
    client.post(url)
    before = row(ApiKey, key.pk)

    response = client.post(url)

    assert response.status_code == 302
    assert row(ApiKey, key.pk) == before
    assert AuditLog.objects.filter(action="api_key.revoked").count() == 1


def test_operator_keys_are_neither_listed_nor_revocable_in_the_portal(client, owner_a):
    operator_key, _ = make_api_key(name="vendor key")
    signed_in(client, owner_a)

    page = client.get(KEYS).content.decode()
    response = client.post(reverse("portal:key_revoke", args=[operator_key.pk]))

    assert "vendor key" not in page
    assert response.status_code == 404
    assert row(ApiKey, operator_key.pk)["revoked_at"] is None


def test_keys_page_query_count_does_not_grow_with_keys(
    client, customer_a, owner_a, django_assert_max_num_queries
):
    admin = MembershipFactory(customer=customer_a, role=Role.ADMIN)
    for i in range(12):
        key, _ = services.api_key_create(
            actor=admin.user, name=f"key {i}", kind="cu", scopes=["usage:read"], customer=customer_a
        )
        if i % 3 == 0:
            services.api_key_revoke(actor=owner_a.user, api_key=key)
    signed_in(client, owner_a)

    # session, user, membership + customer, keys (+ creators, revokers); the layout's
    # alert banner and unread badge (alerts.context_processors)
    with django_assert_max_num_queries(4 + 2):
        response = client.get(KEYS)

    assert response.status_code == 200
    assert response.content.decode().count('<tr id="key-') == 12


def test_admin_may_manage_keys_but_a_developer_may_not_see_the_page(client, customer_a, owner_a):
    signed_in(client, member(customer_a, Role.ADMIN))
    assert create(client).status_code == 200

    signed_in(client, member(customer_a, Role.DEVELOPER))
    assert client.get(KEYS).status_code == 403

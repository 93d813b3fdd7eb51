"""Finance, CSM and support staff in the Django admin: browsable, searchable, no secrets."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts import services
from accounts.models import ApiKey, AuditLog, Customer
from tests.accounts.factories import ContactFactory, MembershipFactory, UserFactory, make_api_key

pytestmark = pytest.mark.django_db

ADMIN_MODELS = ["customer", "membership", "contact", "apikey", "auditlog", "user"]


@pytest.fixture
def superuser_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def staff_client(client, group_name):
    services.staff_groups_sync()
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    client.force_login(user)
    return client


@pytest.fixture
def populated(customer_a):
    MembershipFactory(customer=customer_a)
    ContactFactory(customer=customer_a, name="Fiona Finance")
    key, token = make_api_key(customer=customer_a, name="ci pipeline")
    services.customer_update(actor=None, customer=customer_a, name="Alpha Analytics Ltd")
    return {"key": key, "token": token}


@pytest.mark.parametrize("model", ADMIN_MODELS)
def test_every_admin_list_is_browsable_and_searchable(superuser_client, populated, model):
    url = reverse(f"admin:accounts_{model}_changelist")
    assert superuser_client.get(url).status_code == 200
    assert superuser_client.get(url, {"q": "alpha"}).status_code == 200


def test_search_finds_customers_by_external_id(superuser_client, customer_a, customer_b):
    response = superuser_client.get(reverse("admin:accounts_customer_changelist"), {"q": "beta"})
    assert "Beta Bakery" in response.text and "Alpha Analytics" not in response.text


def test_api_key_pages_never_show_the_secret_or_its_digest(superuser_client, populated):
    key = populated["key"]
    secret = populated["token"].rsplit("_", 1)[1]
    pages = [
        superuser_client.get(reverse("admin:accounts_apikey_changelist")).text,
        superuser_client.get(reverse("admin:accounts_apikey_change", args=[key.pk])).text,
    ]
    for html in pages:
        assert key.prefix in html
        assert secret not in html and key.secret_hash not in html


def test_revoke_action_revokes_and_audits(superuser_client, populated):
    key = populated["key"]
    response = superuser_client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert AuditLog.objects.filter(action="api_key.revoked", actor_user__isnull=False).count() == 1


def test_customer_edit_in_admin_goes_through_the_service_and_is_audited(
    superuser_client, customer_a
):
    url = reverse("admin:accounts_customer_change", args=[customer_a.pk])
    data = {
        "name": "Alpha Renamed",
        "external_id": customer_a.external_id,
        "currency": customer_a.currency,
        "timezone": customer_a.timezone,
        "billing_email": customer_a.billing_email,
        "status": "suspended",
        "memberships-TOTAL_FORMS": 0,
        "memberships-INITIAL_FORMS": 0,
        "contacts-TOTAL_FORMS": 0,
        "contacts-INITIAL_FORMS": 0,
    }
    response = superuser_client.post(url, data)
    assert response.status_code == 302, response.text[:2000]
    customer_a.refresh_from_db()
    assert (customer_a.name, customer_a.status) == ("Alpha Renamed", "suspended")
    entry = AuditLog.objects.get(action="customer.updated")
    assert entry.after == {"name": "Alpha Renamed", "status": "suspended"}


def test_audit_log_is_read_only_in_admin(superuser_client, populated):
    entry = AuditLog.objects.first()
    assert superuser_client.get(reverse("admin:accounts_auditlog_add")).status_code == 403
    assert (
        superuser_client.get(reverse("admin:accounts_auditlog_delete", args=[entry.pk])).status_code
        == 403
    )


def test_finance_staff_see_customers_and_audit_but_cannot_touch_keys(client, populated, customer_a):
    finance = staff_client(client, "finance")
    assert finance.get(reverse("admin:accounts_customer_changelist")).status_code == 200
    assert finance.get(reverse("admin:accounts_auditlog_changelist")).status_code == 200
    assert finance.get(reverse("admin:accounts_apikey_changelist")).status_code == 200
    response = finance.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [populated["key"].pk]},
    )
    assert ApiKey.objects.get(pk=populated["key"].pk).revoked_at is None
    assert response.status_code in (200, 302)
    assert finance.get(reverse("admin:accounts_user_changelist")).status_code == 403


def test_csm_staff_may_edit_contacts_but_not_customers(client, populated, customer_a):
    csm = staff_client(client, "csm")
    assert csm.get(reverse("admin:accounts_contact_changelist")).status_code == 200
    change = csm.get(reverse("admin:accounts_customer_change", args=[customer_a.pk]))
    assert change.status_code == 200 and 'name="name"' not in change.text  # view-only form


def test_staff_groups_sync_is_idempotent():
    services.staff_groups_sync()
    first = {
        g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()
    }
    group = Group.objects.get(name="support")
    group.permissions.clear()
    services.staff_groups_sync()
    again = {
        g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()
    }
    assert first == again
    assert set(first) == {"finance", "csm", "support"}
    assert "change_apikey" in first["support"] and "change_customer" in first["finance"]


def test_customers_cannot_be_deleted_from_admin(superuser_client, customer_a):
    assert (
        superuser_client.get(
            reverse("admin:accounts_customer_delete", args=[customer_a.pk])
        ).status_code
        == 403
    )
    assert Customer.objects.filter(pk=customer_a.pk).exists()


def test_new_customer_in_admin_is_created_through_the_service(superuser_client):
    data = {
        "name": "Delta Dynamics",
        "external_id": "delta",
        "currency": "JPY",
        "timezone": "Asia/Tokyo",
        "billing_email": "ap@delta.example.com",
        "status": "active",
        "memberships-TOTAL_FORMS": 0,
        "memberships-INITIAL_FORMS": 0,
        "contacts-TOTAL_FORMS": 0,
        "contacts-INITIAL_FORMS": 0,
    }
    response = superuser_client.post(reverse("admin:accounts_customer_add"), data)
    assert response.status_code == 302, response.text[:2000]
    customer = Customer.objects.get(external_id="delta")
    assert (
        AuditLog.objects.filter(action="customer.created", object_id=str(customer.pk)).count() == 1
    )

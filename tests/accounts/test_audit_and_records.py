"""Customers and contacts through services; the audit log as evidence."""

import pytest
from django.db import DatabaseError, transaction

from accounts import services
from accounts.errors import Conflict, InvalidInput
from accounts.models import AuditLog, Contact, Customer
from tests.accounts.factories import ContactFactory, CustomerFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def create_customer(**overrides):
    params = {
        "actor": None,
        "name": "Gamma Games",
        "external_id": "gamma-1",
        "billing_email": "ap@gamma.example.com",
        "currency": "EUR",
        "timezone": "Europe/Paris",
    }
    params.update(overrides)
    return services.customer_create(**params)


def test_customer_creation_is_audited_with_its_fields():
    customer = create_customer()
    entry = AuditLog.objects.get(action="customer.created")
    assert entry.object_id == str(customer.pk) and entry.customer_id == customer.pk
    assert entry.after["external_id"] == "gamma-1" and entry.after["currency"] == "EUR"
    assert entry.actor_label == "system"


def test_external_id_clash_is_a_conflict_and_changes_nothing():
    create_customer()
    with pytest.raises(Conflict) as excinfo:
        create_customer(name="Impostor")
    assert (excinfo.value.code, excinfo.value.field) == ("external_id_conflict", "external_id")
    assert Customer.objects.get().name == "Gamma Games"
    assert AuditLog.objects.filter(action="customer.created").count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timezone", "Mars/Olympus"),
        ("currency", "XYZ"),
        ("billing_email", "not-an-email"),
        ("external_id", "has spaces"),
        ("external_id", ""),
    ],
)
def test_invalid_customer_fields_are_refused(field, value):
    with pytest.raises(InvalidInput) as excinfo:
        create_customer(**{field: value})
    assert excinfo.value.field == field
    assert not Customer.objects.exists()


def test_update_audits_only_what_changed():
    customer = create_customer()
    services.customer_update(
        actor=None, customer=customer, name="Gamma Games GmbH", timezone="Europe/Paris"
    )
    entry = AuditLog.objects.get(action="customer.updated")
    assert entry.before == {"name": "Gamma Games"} and entry.after == {"name": "Gamma Games GmbH"}
    services.customer_update(actor=None, customer=customer, name="Gamma Games GmbH")
    assert AuditLog.objects.filter(action="customer.updated").count() == 1


def test_update_refuses_fields_that_are_not_changeable():
    customer = create_customer()
    with pytest.raises(InvalidInput) as excinfo:
        services.customer_update(actor=None, customer=customer, created_at=None)
    assert excinfo.value.code == "unknown_field"


def test_contact_needs_a_channel_and_a_unique_email(customer_a):
    with pytest.raises(InvalidInput) as excinfo:
        services.contact_create(actor=None, customer=customer_a, name="Nobody", persona="finance")
    assert excinfo.value.code == "no_channel"
    services.contact_create(
        actor=None, customer=customer_a, name="Fin", persona="finance", email="fin@a.example.com"
    )
    with pytest.raises(Conflict):
        services.contact_create(
            actor=None,
            customer=customer_a,
            name="Fin 2",
            persona="finance",
            email="fin@a.example.com",
        )
    # The same address is fine at another customer.
    services.contact_create(
        actor=None,
        customer=CustomerFactory(),
        name="Fin",
        persona="finance",
        email="fin@a.example.com",
    )


def test_contact_user_must_belong_to_the_same_customer(customer_a, owner_b):
    with pytest.raises(InvalidInput) as excinfo:
        services.contact_create(
            actor=None,
            customer=customer_a,
            name="X",
            persona="developer",
            email="x@a.example.com",
            user=owner_b.user,
        )
    assert excinfo.value.field == "user"


def test_contact_changes_are_audited(customer_a, owner_a):
    contact = services.contact_create(
        actor=owner_a.user,
        customer=customer_a,
        name="Dev Ops",
        persona="developer",
        webhook_url="https://hooks.example.com/a",
    )
    services.contact_update(actor=owner_a.user, contact=contact, persona="executive")
    services.contact_delete(actor=owner_a.user, contact=contact)
    actions = list(
        AuditLog.objects.filter(object_type="accounts.contact")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["contact.created", "contact.updated", "contact.deleted"]
    assert AuditLog.objects.get(action="contact.updated").after == {"persona": "executive"}
    assert not Contact.objects.exists()


def test_audit_log_refuses_update_and_delete():
    create_customer()
    entry = AuditLog.objects.get()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=entry.pk).update(action="customer.tampered")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=entry.pk).delete()
    assert AuditLog.objects.get(pk=entry.pk).action == "customer.created"


def test_audit_survives_deleting_what_it_describes(customer_a):
    contact = ContactFactory(customer=customer_a)
    contact_id = contact.pk
    services.contact_delete(actor=None, contact=contact)
    entry = AuditLog.objects.get(object_id=str(contact_id), action="contact.deleted")
    assert entry.before["email"] == contact.email


def test_actor_is_recorded_for_users_and_keys(customer_a):
    member = MembershipFactory(customer=customer_a)
    from tests.accounts.factories import make_api_key

    key, _ = make_api_key()
    services.contact_create(
        actor=member.user, customer=customer_a, name="A", persona="finance", email="a@a.example.com"
    )
    services.contact_create(
        actor=key, customer=customer_a, name="B", persona="finance", email="b@a.example.com"
    )
    by_user, by_key = AuditLog.objects.filter(action="contact.created").order_by("id")
    assert by_user.actor_user_id == member.user_id and by_user.actor_label == member.user.email
    assert by_key.actor_api_key_id == key.pk and key.prefix in by_key.actor_label


def test_contact_email_is_unique_regardless_of_case(customer_a):
    services.contact_create(
        actor=None, customer=customer_a, name="A", persona="finance", email="Ann@A.example.com"
    )
    assert Contact.objects.get().email == "ann@a.example.com"
    with pytest.raises(Conflict):
        services.contact_create(
            actor=None, customer=customer_a, name="B", persona="finance", email="ANN@a.example.com"
        )


@pytest.mark.parametrize(
    "url", ["ftp://files.example.com/hook", "javascript:alert(1)", "hooks.example.com"]
)
def test_contact_webhooks_must_be_http_urls(customer_a, url):
    with pytest.raises(InvalidInput) as excinfo:
        services.contact_create(
            actor=None, customer=customer_a, name="A", persona="developer", webhook_url=url
        )
    assert excinfo.value.field == "webhook_url"
    assert not Contact.objects.exists()

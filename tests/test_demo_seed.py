import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.db.models import Count

from accounts.management.commands.seed_demo import DEMO_PASSWORD, demo_plan
from accounts.models import ApiKey, AuditLog, Contact, Customer, Membership, User
from accounts.roles import Role

pytestmark = pytest.mark.django_db


def _counts():
    return {
        model.__name__: model.objects.count()
        for model in (Customer, User, Membership, Contact, ApiKey, AuditLog)
    }


def test_seed_on_an_empty_database_creates_a_realistic_demo(capsys):
    assert Customer.objects.count() == 0

    call_command("seed_demo")

    customers = Customer.objects.annotate(
        users=Count("memberships", distinct=True),
        contact_count=Count("contacts", distinct=True),
        keys=Count("api_keys", distinct=True),
    )
    assert customers.count() >= 30
    for customer in customers:
        assert 1 <= customer.users <= 4, customer
        assert 2 <= customer.contact_count <= 4, customer
        assert customer.keys >= 1, customer
        assert customer.memberships.filter(role=Role.OWNER).exists(), customer
    assert {"EUR", "GBP", "JPY", "USD"} <= set(Customer.objects.values_list("currency", flat=True))
    assert len(set(Customer.objects.values_list("timezone", flat=True))) >= 8
    assert len(set(Membership.objects.values_list("role", flat=True))) == len(Role.values)
    assert not Membership.objects.filter(accepted_at__isnull=True).exists()
    assert len(set(Contact.objects.values_list("persona", flat=True))) == 4
    assert Contact.objects.exclude(slack_webhook_url="").exists()
    assert Contact.objects.exclude(user=None).exists()
    assert ApiKey.objects.filter(kind=ApiKey.Kind.OPERATOR).count() == 1
    # Customers, contacts and keys went through the services, so they are audited.
    assert AuditLog.objects.filter(action="customer.created").count() == customers.count()
    assert AuditLog.objects.filter(action="api_key.created").count() == ApiKey.objects.count()

    out = capsys.readouterr().out
    assert DEMO_PASSWORD in out
    assert "admin@meterbook.local" in out
    assert "Operator API key (shown once, now): mb_live_op_" in out


def test_staff_users_are_in_their_groups_and_can_log_in():
    call_command("seed_demo")

    admin = User.objects.get(email="admin@meterbook.local")
    assert admin.is_staff and admin.is_superuser
    for email, group in [
        ("finance@meterbook.local", "finance"),
        ("csm@meterbook.local", "csm"),
        ("support@meterbook.local", "support"),
    ]:
        user = User.objects.get(email=email)
        assert user.is_staff and not user.is_superuser
        assert list(user.groups.values_list("name", flat=True)) == [group]
    assert User.objects.get(email="finance@meterbook.local").has_perm("accounts.change_customer")
    assert authenticate(email="csm@meterbook.local", password=DEMO_PASSWORD) is not None

    owner_email = demo_plan()[0].users[0].email
    owner = authenticate(email=owner_email, password=DEMO_PASSWORD)
    assert owner is not None
    assert owner.membership.role == Role.OWNER


def test_seeding_again_creates_no_duplicates(capsys):
    call_command("seed_demo")
    first = _counts()
    capsys.readouterr()

    call_command("seed_demo")

    assert _counts() == first
    out = capsys.readouterr().out
    assert "nothing new" in out
    assert "shown once" not in out


def test_a_partly_seeded_database_is_completed_not_duplicated():
    call_command("seed_demo")
    full = _counts()
    Customer.objects.filter(external_id=demo_plan()[5].external_id).delete()

    call_command("seed_demo")

    counts = _counts()
    assert {k: v for k, v in counts.items() if k != "AuditLog"} == {
        k: v for k, v in full.items() if k != "AuditLog"
    }


def test_the_plan_is_deterministic():
    assert demo_plan() == demo_plan()

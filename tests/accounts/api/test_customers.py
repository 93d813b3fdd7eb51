"""/api/v1/customers: operators manage customers; a customer key reads only its own."""

import pytest

from accounts.models import AuditLog, Customer
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import CustomerFactory, make_api_key

pytestmark = pytest.mark.django_db

CUSTOMERS = "/api/v1/customers"
NEW = {
    "name": "Gamma Games",
    "external_id": "gamma-01",
    "billing_email": "billing@gamma.example.com",
    "currency": "EUR",
    "timezone": "Europe/Berlin",
}


def detail(external_id: str) -> str:
    return f"{CUSTOMERS}/{external_id}"


# --- Reading -----------------------------------------------------------------------------


def test_operator_lists_every_customer(customer_a, customer_b, operator_token):
    body = api(operator_token).get(CUSTOMERS).json()
    assert {c["external_id"] for c in body["results"]} == {"alpha", "beta"}
    assert set(body) == {"next", "previous", "results"}


def test_customer_key_lists_only_its_own_customer(customer_a, customer_b, customer_a_token):
    body = api(customer_a_token).get(CUSTOMERS).json()
    assert [c["external_id"] for c in body["results"]] == ["alpha"]


def test_customer_key_reads_its_own_customer(customer_a, customer_a_token):
    response = api(customer_a_token).get(detail("alpha"))
    assert response.status_code == 200
    assert response.json() == {
        "external_id": "alpha",
        "name": "Alpha Analytics",
        "billing_email": customer_a.billing_email,
        "currency": "USD",
        "timezone": "Europe/Berlin",
        "status": "active",
        "created_at": response.json()["created_at"],
        "updated_at": response.json()["updated_at"],
    }


def test_customer_key_gets_404_for_another_customer(customer_a, customer_b, customer_a_token):
    assert_error(api(customer_a_token).get(detail("beta")), 404, "not_found")


def test_unknown_external_id_is_404(operator_token):
    assert_error(api(operator_token).get(detail("nobody")), 404, "not_found")


def test_external_id_with_punctuation_works_in_the_url(operator_token):
    CustomerFactory(external_id="org:42@eu.prod")
    assert (
        api(operator_token).get(detail("org:42@eu.prod")).json()["external_id"] == "org:42@eu.prod"
    )


# --- Creating ----------------------------------------------------------------------------


def test_operator_creates_a_customer_and_it_is_audited(db):
    key, token = make_api_key()

    response = api(token).post(CUSTOMERS, NEW, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["external_id"] == "gamma-01"
    customer = Customer.objects.get(external_id="gamma-01")
    assert (customer.name, customer.currency, customer.timezone) == (
        "Gamma Games",
        "EUR",
        "Europe/Berlin",
    )
    entry = AuditLog.objects.get(action="customer.created", object_id=str(customer.pk))
    assert entry.actor_api_key_id == key.pk
    assert entry.customer_id == customer.pk
    assert entry.before is None
    assert entry.after == {
        "name": "Gamma Games",
        "external_id": "gamma-01",
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "billing_email": "billing@gamma.example.com",
        "status": "active",
    }


def test_created_customer_gets_the_defaults(operator_token):
    response = api(operator_token).post(
        CUSTOMERS,
        {"name": "Delta", "external_id": "delta", "billing_email": "d@delta.example"},
        format="json",
    )
    assert response.status_code == 201
    assert (response.json()["currency"], response.json()["timezone"]) == ("USD", "UTC")


def test_external_id_clash_on_create_is_409(customer_a, operator_token):
    before = AuditLog.objects.count()
    response = api(operator_token).post(CUSTOMERS, {**NEW, "external_id": "alpha"}, format="json")
    assert_error(response, 409, "external_id_conflict", field="external_id")
    assert Customer.objects.filter(external_id="alpha").count() == 1
    assert AuditLog.objects.count() == before


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"external_id": "has space"}, "external_id", "invalid_external_id"),
        ({"external_id": "-leading-dash"}, "external_id", "invalid_external_id"),
        ({"external_id": "x" * 129}, "external_id", "invalid_external_id"),
        ({"currency": "XXX"}, "currency", "invalid_choice"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "invalid_time_zone"),
        ({"billing_email": "not-an-email"}, "billing_email", "invalid"),
        ({"status": "deleted"}, "status", "invalid_choice"),
        ({"name": ""}, "name", "blank"),
        ({"name": None}, "name", "null"),
        ({"name": ["a", "list"]}, "name", "invalid"),
    ],
)
def test_invalid_value_on_create_names_the_field(operator_token, change, field, code):
    response = api(operator_token).post(CUSTOMERS, {**NEW, **change}, format="json")
    assert_error(response, 400, code, field=field)
    assert not Customer.objects.filter(name="Gamma Games").exists()


@pytest.mark.parametrize("missing", ["name", "external_id", "billing_email"])
def test_required_field_missing_on_create(operator_token, missing):
    payload = {k: v for k, v in NEW.items() if k != missing}
    assert_error(
        api(operator_token).post(CUSTOMERS, payload, format="json"), 400, "required", field=missing
    )


@pytest.mark.parametrize("extra", ["billing_emial", "created_at", "id", "api_keys"])
def test_unknown_field_on_create_is_refused_and_nothing_is_stored(operator_token, extra):
    response = api(operator_token).post(CUSTOMERS, {**NEW, extra: "x"}, format="json")
    error = assert_error(response, 400, "unknown_field", field=extra)
    assert extra in error["message"]
    assert not Customer.objects.filter(external_id="gamma-01").exists()


# --- Updating ----------------------------------------------------------------------------


def test_operator_updates_a_customer_and_the_change_is_audited(customer_a):
    key, token = make_api_key()

    response = api(token).patch(
        detail("alpha"), {"name": "Alpha Analytics GmbH", "currency": "EUR"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Alpha Analytics GmbH"
    customer_a.refresh_from_db()
    assert (customer_a.name, customer_a.currency) == ("Alpha Analytics GmbH", "EUR")
    entry = AuditLog.objects.get(action="customer.updated", object_id=str(customer_a.pk))
    assert entry.actor_api_key_id == key.pk
    assert entry.before == {"name": "Alpha Analytics", "currency": "USD"}
    assert entry.after == {"name": "Alpha Analytics GmbH", "currency": "EUR"}


def test_changing_the_external_id_moves_the_url(customer_a, operator_token):
    client = api(operator_token)
    assert (
        client.patch(detail("alpha"), {"external_id": "alpha-2"}, format="json").status_code == 200
    )
    assert client.get(detail("alpha-2")).status_code == 200
    assert_error(client.get(detail("alpha")), 404, "not_found")


def test_update_that_changes_nothing_writes_no_audit_entry(customer_a, operator_token):
    response = api(operator_token).patch(
        detail("alpha"), {"name": "Alpha Analytics"}, format="json"
    )
    assert response.status_code == 200
    assert not AuditLog.objects.filter(action="customer.updated").exists()


def test_external_id_clash_on_update_is_409(customer_a, customer_b, operator_token):
    response = api(operator_token).patch(detail("alpha"), {"external_id": "beta"}, format="json")
    assert_error(response, 409, "external_id_conflict", field="external_id")
    customer_a.refresh_from_db()
    assert customer_a.external_id == "alpha"


@pytest.mark.parametrize("extra", ["nmae", "updated_at", "contacts"])
def test_unknown_field_on_update_is_refused_and_nothing_changes(customer_a, operator_token, extra):
    response = api(operator_token).patch(
        detail("alpha"), {"name": "Changed", extra: "x"}, format="json"
    )
    assert_error(response, 400, "unknown_field", field=extra)
    customer_a.refresh_from_db()
    assert customer_a.name == "Alpha Analytics"
    assert not AuditLog.objects.filter(action="customer.updated").exists()


def test_invalid_value_on_update_names_the_field(customer_a, operator_token):
    response = api(operator_token).patch(detail("alpha"), {"timezone": "Nowhere"}, format="json")
    assert_error(response, 400, "invalid_time_zone", field="timezone")


def test_update_of_an_unknown_customer_is_404(operator_token):
    assert_error(
        api(operator_token).patch(detail("nobody"), {"name": "X"}, format="json"), 404, "not_found"
    )

"""/api/v1/contacts with customer keys (implicit customer) and operator keys (named customer)."""

import pytest

from accounts.models import AuditLog, Contact
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import ContactFactory, make_api_key

pytestmark = pytest.mark.django_db

CONTACTS = "/api/v1/contacts"
ANN = {"name": "Ann Finance", "persona": "finance", "email": "ann@alpha.example.com"}


def detail(contact: Contact) -> str:
    return f"{CONTACTS}/{contact.pk}"


# --- Creating ----------------------------------------------------------------------------


def test_customer_key_adds_a_contact_to_its_own_customer(customer_a):
    key, token = make_api_key(customer=customer_a)

    response = api(token).post(
        CONTACTS, {**ANN, "slack_webhook_url": "https://hooks.slack.example/T1/B2"}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    contact = Contact.objects.get(pk=body["id"])
    assert contact.customer == customer_a
    assert body["customer"] == "alpha"
    assert body["persona"] == "finance"
    assert body["channels"] == ["email", "slack"]
    assert body["email"] == "ann@alpha.example.com"
    assert body["teams_webhook_url"] == ""
    entry = AuditLog.objects.get(action="contact.created", object_id=str(contact.pk))
    assert entry.actor_api_key_id == key.pk
    assert entry.customer_id == customer_a.pk
    assert entry.after["email"] == "ann@alpha.example.com"


def test_customer_key_may_name_its_own_customer(customer_a, customer_a_token):
    response = api(customer_a_token).post(CONTACTS, {**ANN, "customer": "alpha"}, format="json")
    assert response.status_code == 201
    assert response.json()["customer"] == "alpha"


def test_customer_key_cannot_add_a_contact_to_another_customer(
    customer_a, customer_b, customer_a_token
):
    response = api(customer_a_token).post(CONTACTS, {**ANN, "customer": "beta"}, format="json")
    error = assert_error(response, 400, "does_not_exist", field="customer")
    assert not Contact.objects.exists()
    # Worded exactly as for a customer that does not exist: nothing is learnt about B.
    missing = api(customer_a_token).post(CONTACTS, {**ANN, "customer": "gone"}, format="json")
    assert error == {
        **missing.json()["error"],
        "message": missing.json()["error"]["message"].replace("gone", "beta"),
    }


def test_operator_key_adds_a_contact_to_the_named_customer(customer_a, customer_b):
    key, token = make_api_key()
    response = api(token).post(CONTACTS, {**ANN, "customer": "beta"}, format="json")
    assert response.status_code == 201, response.content
    assert Contact.objects.get(pk=response.json()["id"]).customer == customer_b
    assert AuditLog.objects.get(action="contact.created").actor_api_key_id == key.pk


def test_operator_key_must_name_the_customer(customer_a, operator_token):
    response = api(operator_token).post(CONTACTS, ANN, format="json")
    assert_error(response, 400, "required", field="customer")
    assert not Contact.objects.exists()


def test_operator_key_naming_an_unknown_customer_is_refused(operator_token):
    response = api(operator_token).post(CONTACTS, {**ANN, "customer": "nobody"}, format="json")
    assert_error(response, 400, "does_not_exist", field="customer")


def test_contact_needs_a_channel(customer_a_token):
    response = api(customer_a_token).post(
        CONTACTS, {"name": "Nobody", "persona": "executive"}, format="json"
    )
    assert_error(response, 400, "no_channel")


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"persona": "ceo"}, "persona", "invalid_choice"),
        ({"email": "not-an-email"}, "email", "invalid"),
        ({"webhook_url": "not a url"}, "webhook_url", "invalid"),
        ({"teams_webhook_url": "teams.example"}, "teams_webhook_url", "invalid"),
        ({"name": ""}, "name", "blank"),
        ({"customer": None}, "customer", "null"),
    ],
)
def test_invalid_value_on_create_names_the_field(customer_a_token, change, field, code):
    response = api(customer_a_token).post(CONTACTS, {**ANN, **change}, format="json")
    assert_error(response, 400, code, field=field)
    assert not Contact.objects.exists()


@pytest.mark.parametrize("extra", ["user", "channels", "id", "phone"])
def test_unknown_field_on_create_is_refused(customer_a_token, extra):
    response = api(customer_a_token).post(CONTACTS, {**ANN, extra: "x"}, format="json")
    assert_error(response, 400, "unknown_field", field=extra)
    assert not Contact.objects.exists()


def test_duplicate_email_in_the_same_customer_is_409(customer_a, customer_a_token):
    ContactFactory(customer=customer_a, email=ANN["email"])
    response = api(customer_a_token).post(CONTACTS, ANN, format="json")
    assert_error(response, 409, "duplicate_email", field="email")


# --- Reading -----------------------------------------------------------------------------


def test_customer_key_lists_only_its_own_contacts(customer_a, customer_b, customer_a_token):
    mine = ContactFactory(customer=customer_a)
    ContactFactory(customer=customer_b)
    body = api(customer_a_token).get(CONTACTS).json()
    assert [c["id"] for c in body["results"]] == [mine.pk]


def test_customer_key_filtering_on_another_customer_gets_nothing(
    customer_a, customer_b, customer_a_token
):
    ContactFactory(customer=customer_b)
    body = api(customer_a_token).get(CONTACTS, {"customer": "beta"}).json()
    assert body["results"] == []


def test_operator_lists_every_contact_and_can_filter_by_customer(
    customer_a, customer_b, operator_token
):
    a = ContactFactory(customer=customer_a)
    b = ContactFactory(customer=customer_b)
    client = api(operator_token)
    assert {c["id"] for c in client.get(CONTACTS).json()["results"]} == {a.pk, b.pk}
    filtered = client.get(CONTACTS, {"customer": "beta"}).json()["results"]
    assert [(c["id"], c["customer"]) for c in filtered] == [(b.pk, "beta")]


@pytest.mark.parametrize("kind", ["customer", "operator"])
def test_contact_is_read_by_id(customer_a, customer_a_token, operator_token, kind):
    contact = ContactFactory(customer=customer_a, webhook_url="https://hooks.alpha.example/in")
    token = customer_a_token if kind == "customer" else operator_token
    body = api(token).get(detail(contact)).json()
    assert body["id"] == contact.pk
    assert body["customer"] == "alpha"
    assert body["channels"] == ["email", "webhook"]


def test_contact_of_another_customer_is_404(customer_a, customer_b, customer_a_token):
    theirs = ContactFactory(customer=customer_b)
    assert_error(api(customer_a_token).get(detail(theirs)), 404, "not_found")


# --- Updating and removing ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["customer", "operator"])
def test_contact_update_is_applied_and_audited(customer_a, kind):
    key, token = make_api_key(customer=customer_a if kind == "customer" else None)
    contact = ContactFactory(customer=customer_a, persona="finance")

    response = api(token).patch(
        detail(contact),
        {"persona": "procurement", "teams_webhook_url": "https://teams.example/h"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["channels"] == ["email", "teams"]
    contact.refresh_from_db()
    assert contact.persona == "procurement"
    entry = AuditLog.objects.get(action="contact.updated", object_id=str(contact.pk))
    assert entry.actor_api_key_id == key.pk
    assert entry.before == {"persona": "finance", "teams_webhook_url": ""}
    assert entry.after == {"persona": "procurement", "teams_webhook_url": "https://teams.example/h"}


def test_clearing_the_last_channel_is_refused(customer_a, customer_a_token):
    contact = ContactFactory(customer=customer_a)
    assert_error(
        api(customer_a_token).patch(detail(contact), {"email": ""}, format="json"),
        400,
        "no_channel",
    )
    contact.refresh_from_db()
    assert contact.email


@pytest.mark.parametrize("extra", ["customer", "user", "created_at"])
def test_unknown_field_on_update_is_refused(customer_a, customer_b, customer_a_token, extra):
    contact = ContactFactory(customer=customer_a, name="Original")
    value = "beta" if extra == "customer" else "x"
    response = api(customer_a_token).patch(
        detail(contact), {"name": "Changed", extra: value}, format="json"
    )
    assert_error(response, 400, "unknown_field", field=extra)
    contact.refresh_from_db()
    assert (contact.name, contact.customer_id) == ("Original", customer_a.pk)


@pytest.mark.parametrize("kind", ["customer", "operator"])
def test_contact_is_removed_and_audited(customer_a, kind):
    key, token = make_api_key(customer=customer_a if kind == "customer" else None)
    contact = ContactFactory(customer=customer_a)

    response = api(token).delete(detail(contact))

    assert response.status_code == 204
    assert not Contact.objects.filter(pk=contact.pk).exists()
    entry = AuditLog.objects.get(action="contact.deleted", object_id=str(contact.pk))
    assert entry.actor_api_key_id == key.pk
    assert entry.before["email"] == contact.email
    assert_error(api(token).get(detail(contact)), 404, "not_found")

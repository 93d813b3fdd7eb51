"""Caps and authorization over the API: customer keys set their own caps, the vendor's
systems authorize usage against them."""

import json

import pytest

from alerts.models import Cap, CapReservation
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key
from tests.metering.factories import api_calls_meter, users_meter

pytestmark = pytest.mark.django_db

AUTHORIZE, CAPS = "/api/v1/authorize", "/api/v1/caps"


@pytest.fixture
def calls(db):
    return api_calls_meter()


@pytest.fixture
def operator(operator_token):
    return api(operator_token)


@pytest.fixture
def alpha(customer_a_token):
    return api(customer_a_token)


def test_a_customer_key_sets_reads_changes_and_removes_its_own_cap(alpha, customer_a, calls):
    created = alpha.post(CAPS, {"meter": "api_call", "limit": "1000"}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["customer"], body["meter"], body["limit"], body["on_exceed"]) == (
        "alpha",
        "api_call",
        "1000",
        "reject",
    )
    detail = f"{CAPS}/{body['id']}"
    assert alpha.get(CAPS).json()["results"] == [body]
    changed = alpha.patch(detail, {"limit": "250.5", "on_exceed": "flag"}, format="json")
    assert (changed.json()["limit"], changed.json()["on_exceed"]) == ("250.5", "flag")
    assert alpha.delete(detail).status_code == 204
    assert not Cap.objects.exists()
    assert_error(alpha.get(detail), 404, "not_found")


def test_another_customers_cap_is_a_404_and_stays_as_it_was(customer_b, calls, alpha):
    theirs = Cap.objects.create(customer=customer_b, meter=calls, limit=10)
    for method in ("get", "patch", "delete"):
        response = getattr(alpha, method)(f"{CAPS}/{theirs.pk}", {"limit": "1"}, format="json")
        assert_error(response, 404, "not_found")
    assert Cap.objects.get().limit == 10
    assert alpha.get(CAPS).json()["results"] == []


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"meter": "nope", "limit": "10"}, "does_not_exist", "meter"),
        ({"meter": "api_call", "limit": 10.5}, "invalid", "limit"),
        ({"meter": "api_call", "limit": "-1"}, "invalid", "limit"),
        ({"meter": "api_call", "limit": "10", "on_exceed": "shrug"}, "invalid_choice", "on_exceed"),
        ({"meter": "api_call", "limit": "10", "soft": 1}, "unknown_field", "soft"),
        ({"meter": "user_active", "limit": "10"}, "meter_not_cappable", "meter"),
    ],
)
def test_bad_caps_are_refused_by_name(alpha, calls, body, code, field):
    users_meter()
    assert_error(alpha.post(CAPS, body, format="json"), 400, code, field=field)
    assert not Cap.objects.exists()


def test_an_operator_names_the_customer(operator, customer_a, calls):
    assert_error(
        operator.post(CAPS, {"meter": "api_call", "limit": "5"}, format="json"),
        400,
        "required",
        field="customer",
    )
    created = operator.post(
        CAPS, {"customer": "alpha", "meter": "api_call", "limit": "5"}, format="json"
    )
    assert created.json()["customer"] == "alpha"


def test_authorize_reserves_until_the_cap_then_denies_with_what_is_left(
    operator, customer_a, calls
):
    Cap.objects.create(customer=customer_a, meter=calls, limit=100)
    body = {"customer": "alpha", "meter": "api_call", "quantity": "80"}

    allowed = operator.post(AUTHORIZE, body, format="json")
    denied = operator.post(AUTHORIZE, {**body, "quantity": 30}, format="json")

    assert allowed.status_code == 200, allowed.content
    assert allowed.json()["allowed"] is True and allowed.json()["remaining"] == "20"
    reservation = allowed.json()["reservation"]
    assert reservation["quantity"] == "80"
    assert CapReservation.objects.get().pk == reservation["id"]
    assert denied.json() == {
        "allowed": False,
        "remaining": "20",
        "reservation": None,
        "spend_remaining": None,
        "spend_reservation": None,
    }


def test_authorize_on_an_uncapped_meter_says_so(operator, customer_a, calls):
    body = {"customer": "alpha", "meter": "api_call", "quantity": "5"}
    assert operator.post(AUTHORIZE, body, format="json").json() == {
        "allowed": True,
        "remaining": None,
        "reservation": None,
        "spend_remaining": None,
        "spend_reservation": None,
    }


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (
            {"customer": "nobody", "meter": "api_call", "quantity": "1"},
            "does_not_exist",
            "customer",
        ),
        ({"customer": "alpha", "meter": "nope", "quantity": "1"}, "does_not_exist", "meter"),
        ({"customer": "alpha", "meter": "api_call", "quantity": "0"}, "invalid", "quantity"),
        ({"customer": "alpha", "meter": "api_call", "quantity": 0.5}, "invalid", "quantity"),
        ({"customer": "alpha", "meter": "api_call"}, "required", "quantity"),
    ],
)
def test_bad_authorizations_are_refused_by_name(operator, customer_a, calls, body, code, field):
    Cap.objects.create(customer=customer_a, meter=calls, limit=100)
    assert_error(operator.post(AUTHORIZE, body, format="json"), 400, code, field=field)
    assert not CapReservation.objects.exists()


def test_only_the_vendors_systems_authorize(alpha, customer_a, calls):
    body = {"customer": "alpha", "meter": "api_call", "quantity": "1"}
    assert_error(alpha.post(AUTHORIZE, body, format="json"), 403, "insufficient_scope")
    reader = api(make_api_key(customer=customer_a, scopes=["usage:read"])[1])
    assert_error(
        reader.post(CAPS, {"meter": "api_call", "limit": "1"}, format="json"),
        403,
        "insufficient_scope",
    )


def test_the_schema_documents_caps_and_authorize(db):
    paths = api().get("/api/v1/schema/", {"format": "json"}).json()["paths"]
    assert set(paths["/api/v1/authorize"]) == {"post"}
    assert set(paths["/api/v1/caps"]) == {"get", "post"}
    assert set(paths["/api/v1/caps/{cap_id}"]) == {"get", "patch", "delete"}
    assert set(paths["/api/v1/forecast"]) == {"get"}
    answer = paths["/api/v1/authorize"]["post"]["responses"]["200"]
    assert "AuthorizationOutput" in json.dumps(answer)

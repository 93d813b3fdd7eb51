"""Keys, scopes and the error shape for every kind of bad request."""

import pytest
from rest_framework.test import APIClient

from accounts import services
from accounts.api.views import BaseApi
from accounts.models import Customer
from tests.accounts.api.support import api, api_routes, assert_error
from tests.accounts.factories import make_api_key

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"
CUSTOMERS = "/api/v1/customers"
CONTACTS = "/api/v1/contacts"


# --- Authentication -----------------------------------------------------------------------


def test_request_without_a_key_is_refused_with_a_bearer_challenge():
    response = api().get(ME)
    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-key",
        "Bearer mb_live_cu_short_secret",
        "Bearer ",
        "Token mb_live_op_AAAAAAAAAAAA_" + "a" * 40,
        "Basic dXNlcjpwYXNzd29yZA==",
    ],
)
def test_malformed_authorization_is_refused(header):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(client.get(ME), 401, "authentication_failed")


def test_unknown_key_is_refused():
    make_api_key()
    assert_error(api("mb_live_op_AAAAAAAAAAAA_" + "b" * 40).get(ME), 401, "authentication_failed")


def test_key_with_a_wrong_secret_is_refused():
    _, token = make_api_key()
    forged = token[:-1] + ("x" if token[-1] != "x" else "y")
    assert_error(api(forged).get(ME), 401, "authentication_failed")


def test_revoked_key_is_refused_on_the_very_next_request(customer_a):
    key, token = make_api_key(customer=customer_a)
    client = api(token)
    assert client.get(ME).status_code == 200

    services.api_key_revoke(actor=None, api_key=key)

    error = assert_error(client.get(ME), 401, "authentication_failed")
    assert "revoked" in error["message"]


def test_last_used_at_is_recorded_when_the_key_is_used(customer_a):
    key, token = make_api_key(customer=customer_a)
    assert key.last_used_at is None

    response = api(token).get(ME)

    key.refresh_from_db()
    assert key.last_used_at is not None
    assert response.json()["last_used_at"] is not None


def test_key_of_a_suspended_customer_is_refused(customer_a, customer_a_token):
    Customer.objects.filter(pk=customer_a.pk).update(status=Customer.Status.SUSPENDED)
    assert_error(api(customer_a_token).get(CONTACTS), 403, "customer_suspended")


# --- Scopes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "held", "needed"),
    [
        ("get", CUSTOMERS, "contacts:read", "customers:read"),
        ("get", "/api/v1/customers/alpha", "contacts:read", "customers:read"),
        ("get", CONTACTS, "customers:read", "contacts:read"),
        ("post", CONTACTS, "contacts:read", "contacts:write"),
    ],
)
def test_missing_scope_is_forbidden(customer_a, method, url, held, needed):
    _, token = make_api_key(customer=customer_a, scopes=[held])
    response = getattr(api(token), method)(url, {"name": "x"}, format="json")
    error = assert_error(response, 403, "insufficient_scope")
    assert needed in error["message"]


def test_operator_key_without_the_scope_is_forbidden_too(customer_a):
    _, token = make_api_key(scopes=["customers:read"])
    response = api(token).post(
        CONTACTS,
        {"customer": "alpha", "name": "Ann", "persona": "finance", "email": "ann@a.example"},
        format="json",
    )
    assert_error(response, 403, "insufficient_scope")
    assert not customer_a.contacts.exists()


def test_customer_key_cannot_reach_operator_only_endpoints(customer_a, customer_a_token):
    """customers:write is operator-only, so no customer key can hold it."""
    client = api(customer_a_token)
    created = client.post(
        CUSTOMERS,
        {"name": "New", "external_id": "new", "billing_email": "b@new.example"},
        format="json",
    )
    assert_error(created, 403, "insufficient_scope")
    changed = client.patch("/api/v1/customers/alpha", {"name": "Renamed"}, format="json")
    assert_error(changed, 403, "insufficient_scope")
    assert not Customer.objects.filter(external_id="new").exists()
    customer_a.refresh_from_db()
    assert customer_a.name == "Alpha Analytics"


def test_me_needs_no_scope_beyond_a_valid_key(customer_a):
    _, token = make_api_key(customer=customer_a, scopes=["usage:read"])
    assert api(token).get(ME).status_code == 200


# --- Malformed requests --------------------------------------------------------------------


def test_malformed_json_is_a_parse_error(operator_token):
    response = api(operator_token).post(
        CUSTOMERS, '{"name": "Half', content_type="application/json"
    )
    assert_error(response, 400, "parse_error")


def test_json_that_is_not_an_object_is_refused(operator_token):
    response = api(operator_token).post(CUSTOMERS, "[1, 2]", content_type="application/json")
    assert_error(response, 400, "invalid")


def test_body_that_is_not_json_is_an_unsupported_media_type(operator_token):
    response = api(operator_token).post(
        CUSTOMERS, {"name": "Form", "external_id": "form", "billing_email": "f@form.example"}
    )  # APIClient's default: multipart form data
    assert_error(response, 415, "unsupported_media_type")
    assert not Customer.objects.filter(external_id="form").exists()


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/v1/nope"),
        ("post", "/api/v1/nope/deeper"),
        ("get", "/api/v1/contacts/not-a-number"),
        ("get", "/api/v1/customers/alpha/extra"),
        ("delete", "/api/v1/"),
    ],
)
def test_unknown_url_under_the_api_is_a_json_404(operator_token, method, url):
    assert_error(getattr(api(operator_token), method)(url), 404, "not_found")


@pytest.mark.parametrize(
    "url",
    ["/api/v1/customers/al%00pha", "/api/v1/meters/api%00call", "/api/v1/plans/gro%00wth"],
)
def test_a_name_with_a_nul_in_the_path_is_a_json_404_on_every_route(
    customer_a, operator_token, url
):
    # PostgreSQL text never holds NUL: the lookup would fail with a 500 (one guard for all).
    assert_error(api(operator_token).get(url), 404, "not_found")
    assert_error(api(operator_token).post(url, {}, format="json"), 404, "not_found")


def test_a_nul_in_a_portal_path_is_the_sites_404(client):
    response = client.get("/billing/invoices/1%00")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_unknown_url_answers_404_even_without_a_key():
    assert_error(api().get("/api/v1/nope"), 404, "not_found")


@pytest.mark.parametrize(("method", "url"), [("delete", "/api/v1/customers/alpha"), ("put", ME)])
def test_method_the_endpoint_does_not_have_is_refused(customer_a, operator_token, method, url):
    response = getattr(api(operator_token), method)(url, {}, format="json")
    assert_error(response, 405, "method_not_allowed")


def test_garbled_cursor_is_a_400_naming_it(operator_token):
    response = api(operator_token).get(CUSTOMERS, {"cursor": "garbage!"})
    assert_error(response, 400, "invalid_cursor", field="cursor")


def test_api_takes_writes_without_a_csrf_token(customer_a, customer_a_token):
    """Bearer keys are not cookies: no CSRF token is needed, not even for an unknown URL."""
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {customer_a_token}")
    created = client.post(
        CONTACTS, {"name": "Ann", "persona": "finance", "email": "ann@a.example"}, format="json"
    )
    assert created.status_code == 201, created.content
    assert_error(client.post("/api/v1/nope", {}, format="json"), 404, "not_found")


# Endpoints that any valid key may call, whatever its scopes.
OPEN_TO_ANY_KEY = {("api/v1/me", "get")}


def test_every_method_of_every_endpoint_names_its_scope():
    """A new endpoint cannot forget its scope and so be open to every key."""
    missing = []
    for route in api_routes():
        view = route.view_class
        if view is None or not issubclass(view, BaseApi):
            continue  # the JSON 404 and the public schema and docs pages
        for method in route.methods:
            declared = method.upper() in view.__dict__.get("required_scopes", {})
            if not declared and (route.route, method) not in OPEN_TO_ANY_KEY:
                missing.append(f"{method.upper()} {route.route}")
    assert not missing, f"declare required_scopes for: {missing}"
    assert {(r.route, m) for r in api_routes() for m in r.methods} >= OPEN_TO_ANY_KEY

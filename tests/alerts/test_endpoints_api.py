"""Webhook endpoints over the API: customer keys manage their own, operators name the
customer; the secret shows on create, rotate and (for webhooks:write keys) the detail."""

from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from accounts.models import AuditLog
from alerts import selectors, services
from alerts.channels import encode_payload, webhook_headers
from alerts.models import WebhookEndpoint, WebhookSecret
from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/webhook-endpoints"
URL = "https://hooks.alpha.example.com/meterbook"


@pytest.fixture
def alpha(customer_a_token):
    return api(customer_a_token)


@pytest.fixture
def operator(operator_token):
    return api(operator_token)


@pytest.fixture
def reader(customer_a):
    return api(make_api_key(customer=customer_a, scopes=["alerts:read"])[1])


def test_a_customer_key_adds_reads_changes_rotates_and_removes_its_endpoint(alpha, customer_a):
    created = alpha.post(
        ENDPOINTS, {"url": URL, "description": "Ops", "personas": ["developer"]}, format="json"
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["secret_hint"] == body["secret"][:10] + "…"
    assert created["Cache-Control"].startswith("max-age=0")
    assert (body["customer"], body["url"], body["personas"], body["enabled"]) == (
        "alpha",
        URL,
        ["developer"],
        True,
    )
    assert body["previous_secret_expires_at"] is None
    detail = f"{ENDPOINTS}/{body['id']}"

    listed = alpha.get(ENDPOINTS).json()["results"]
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0]  # lists never carry secrets
    assert alpha.get(detail).json()["secret"] == body["secret"]

    changed = alpha.patch(detail, {"enabled": False, "description": "Paused"}, format="json")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["enabled"], changed.json()["description"]) == (False, "Paused")
    assert changed.json()["disabled_reason"].startswith("Turned off by api key")
    assert "secret" not in changed.json()

    rotated = alpha.post(f"{detail}/rotate-secret", {}, format="json")
    assert rotated.status_code == 200, rotated.content
    assert rotated.json()["secret"] != body["secret"]
    expires = rotated.json()["previous_secret_expires_at"]
    assert expires is not None and expires.endswith("Z")

    assert alpha.delete(detail).status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert_error(alpha.get(detail), 404, "not_found")
    assert list(
        AuditLog.objects.filter(action__startswith="webhook_endpoint.")
        .order_by("id")
        .values_list("action", flat=True)
    ) == [
        "webhook_endpoint.created",
        "webhook_endpoint.changed",
        "webhook_endpoint.secret_rotated",
        "webhook_endpoint.removed",
    ]


def test_the_rotated_secret_and_the_previous_one_both_verify_a_delivery(alpha):
    created = alpha.post(ENDPOINTS, {"url": URL}, format="json").json()
    rotated = alpha.post(
        f"{ENDPOINTS}/{created['id']}/rotate-secret", {"overlap_hours": 2}, format="json"
    ).json()

    endpoint = WebhookEndpoint.objects.get()
    body = encode_payload({"type": "alert.triggered"})
    headers = webhook_headers(
        msg_id="msg_1",
        body=body,
        secrets=selectors.endpoint_signing_secrets(endpoint, timezone.now()),
        timestamp=timezone.now(),
    )
    for secret in (rotated["secret"], created["secret"]):
        assert Webhook(secret).verify(body, headers) == {"type": "alert.triggered"}
    previous = WebhookSecret.objects.get(secret=created["secret"])
    assert (
        timedelta(hours=1, minutes=59) < previous.expires_at - timezone.now() <= timedelta(hours=2)
    )


def test_a_read_only_key_sees_endpoints_but_not_secrets_and_cannot_change_them(reader, customer_a):
    endpoint = services.endpoint_create(actor=None, customer=customer_a, url=URL)
    detail = f"{ENDPOINTS}/{endpoint.pk}"

    shown = reader.get(detail)
    assert shown.status_code == 200
    assert "secret" not in shown.json() and shown.json()["secret_hint"].startswith("whsec_")
    assert_error(
        reader.post(ENDPOINTS, {"url": f"{URL}/2"}, format="json"), 403, "insufficient_scope"
    )
    assert_error(reader.patch(detail, {"enabled": False}, format="json"), 403, "insufficient_scope")
    assert_error(reader.post(f"{detail}/rotate-secret"), 403, "insufficient_scope")
    assert_error(reader.delete(detail), 403, "insufficient_scope")
    assert WebhookSecret.objects.count() == 1 and WebhookEndpoint.objects.get().enabled


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"url": "http://10.0.0.7/hook"}, 400, "blocked_private", "url"),
        ({"url": "http://127.0.0.1/hook"}, 400, "blocked_loopback", "url"),
        ({"url": "http://169.254.169.254/"}, 400, "blocked_metadata", "url"),
        ({"url": "gopher://example.com/"}, 400, "scheme_not_allowed", "url"),
        ({"url": "https://a:b@example.com/"}, 400, "credentials_in_url", "url"),
        ({"url": "https://"}, 400, "invalid_url", "url"),
        ({}, 400, "required", "url"),
        ({"url": URL, "personas": ["wizard"]}, 400, "invalid_choice", "personas"),
        ({"url": URL, "enabled": False}, 400, "unknown_field", "enabled"),
        ({"url": URL, "secret": "whsec_mine"}, 400, "unknown_field", "secret"),
    ],
)
def test_bad_endpoints_are_refused_by_name(alpha, settings, body, status, code, field):
    settings.ALERTS_OUTBOUND_ALLOWED_NETWORKS = []
    assert_error(alpha.post(ENDPOINTS, body, format="json"), status, code, field=field)
    assert not WebhookEndpoint.objects.exists()


def test_a_duplicate_url_is_a_conflict(alpha):
    alpha.post(ENDPOINTS, {"url": URL}, format="json")
    assert_error(
        alpha.post(ENDPOINTS, {"url": URL}, format="json"), 409, "duplicate_url", field="url"
    )
    other = alpha.post(ENDPOINTS, {"url": f"{URL}/2"}, format="json").json()
    assert_error(
        alpha.patch(f"{ENDPOINTS}/{other['id']}", {"url": URL}, format="json"),
        409,
        "duplicate_url",
        field="url",
    )


def test_reenabling_through_the_api_clears_the_disabled_reason(alpha, customer_a):
    endpoint = services.endpoint_create(actor=None, customer=customer_a, url=URL)
    services.endpoint_disable(endpoint, "The receiver answered 410 Gone.", timezone.now())
    detail = f"{ENDPOINTS}/{endpoint.pk}"
    assert alpha.get(detail).json()["disabled_reason"] == "The receiver answered 410 Gone."

    body = alpha.patch(detail, {"enabled": True}, format="json").json()

    assert (body["enabled"], body["disabled_reason"], body["disabled_at"]) == (True, "", None)


@pytest.mark.parametrize("overlap", [-1, 169, "soon"])
def test_a_bad_overlap_is_refused(alpha, customer_a, overlap):
    endpoint = services.endpoint_create(actor=None, customer=customer_a, url=URL)
    response = alpha.post(
        f"{ENDPOINTS}/{endpoint.pk}/rotate-secret", {"overlap_hours": overlap}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "overlap_hours"
    assert WebhookSecret.objects.count() == 1


def test_an_operator_names_the_customer_and_may_filter_by_it(operator, customer_a, customer_b):
    assert_error(operator.post(ENDPOINTS, {"url": URL}, format="json"), 400, "required", "customer")
    made = operator.post(ENDPOINTS, {"url": URL, "customer": "alpha"}, format="json")
    assert made.status_code == 201 and made.json()["customer"] == "alpha"
    services.endpoint_create(actor=None, customer=customer_b, url=URL)

    assert len(operator.get(ENDPOINTS).json()["results"]) == 2
    only_b = operator.get(ENDPOINTS, {"customer": "beta"}).json()["results"]
    assert [e["customer"] for e in only_b] == ["beta"]
    assert_error(operator.get(ENDPOINTS, {"customer": "nobody"}), 400, "does_not_exist", "customer")
    assert_error(operator.get(ENDPOINTS, {"custmer": "beta"}), 400, "unknown_field", "custmer")


def test_a_customer_key_cannot_reach_or_name_another_customer(alpha, customer_b):
    theirs = services.endpoint_create(actor=None, customer=customer_b, url=URL)
    detail = f"{ENDPOINTS}/{theirs.pk}"

    for method in ("get", "patch", "delete"):
        response = getattr(alpha, method)(detail, {"enabled": False}, format="json")
        assert_error(response, 404, "not_found")
    assert_error(alpha.post(f"{detail}/rotate-secret"), 404, "not_found")
    assert_error(
        alpha.post(ENDPOINTS, {"url": f"{URL}/x", "customer": "beta"}, format="json"),
        400,
        "does_not_exist",
        "customer",
    )
    assert alpha.get(ENDPOINTS).json()["results"] == []
    assert WebhookEndpoint.objects.get().enabled and WebhookSecret.objects.count() == 1


def test_the_list_costs_the_same_queries_for_one_endpoint_or_many(
    alpha, customer_a, django_assert_max_num_queries
):
    services.endpoint_create(actor=None, customer=customer_a, url=URL)
    with django_assert_max_num_queries(4) as one:
        alpha.get(ENDPOINTS)
    for n in range(8):
        endpoint = services.endpoint_create(actor=None, customer=customer_a, url=f"{URL}/{n}")
        services.endpoint_rotate_secret(actor=None, endpoint=endpoint)
    with django_assert_max_num_queries(len(one.captured_queries)):
        body = alpha.get(ENDPOINTS).json()
    assert len(body["results"]) == 9
    assert sum(e["previous_secret_expires_at"] is not None for e in body["results"]) == 8

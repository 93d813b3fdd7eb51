"""Webhook endpoints: URL checks, secrets and their rotation (verified with the reference
`standardwebhooks` package), disabling on 410, and contacts' URLs."""

from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from accounts.errors import Conflict, InvalidInput
from accounts.models import AuditLog
from alerts import selectors, services
from alerts.channels import encode_payload, is_valid_webhook_secret, webhook_headers
from alerts.models import WebhookEndpoint, WebhookSecret
from alerts.services.endpoints import MAX_ENDPOINTS
from tests.accounts.factories import ContactFactory

pytestmark = pytest.mark.django_db

URL = "https://hooks.alpha.example.com/meterbook"
PAYLOAD = {"type": "alert.triggered", "data": {"meter": "api_call", "level": "80%"}}


@pytest.fixture
def endpoint(customer_a, owner_a):
    return services.endpoint_create(
        actor=owner_a.user, customer=customer_a, url=URL, description="Ops", personas=["developer"]
    )


def signed(secrets: list[str]) -> tuple[bytes, dict]:
    """A message signed the way deliveries are, stamped now (the verifier checks the time)."""
    body = encode_payload(PAYLOAD)
    return body, webhook_headers(
        msg_id="msg_rotation", body=body, secrets=secrets, timestamp=timezone.now()
    )


def audit_actions(endpoint_id: int) -> list[str]:
    return list(
        AuditLog.objects.filter(object_type="alerts.webhookendpoint", object_id=str(endpoint_id))
        .order_by("id")
        .values_list("action", flat=True)
    )


# --- Creating ---------------------------------------------------------------------------


def test_a_new_endpoint_gets_one_valid_secret_and_is_audited_without_it(endpoint, owner_a):
    (secret,) = selectors.endpoint_signing_secrets(endpoint, timezone.now())

    assert is_valid_webhook_secret(secret)
    assert (endpoint.enabled, endpoint.personas, endpoint.description) == (
        True,
        ["developer"],
        "Ops",
    )
    entry = AuditLog.objects.get(action="webhook_endpoint.created")
    assert entry.actor_user == owner_a.user and entry.customer_id == endpoint.customer_id
    assert entry.after["url"] == URL
    assert secret not in str(entry.after)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("", "invalid_url"),
        ("not a url", "invalid_url"),
        ("ftp://files.example.com/x", "scheme_not_allowed"),
        ("https://user:pw@example.com/x", "credentials_in_url"),
        ("http://127.0.0.1:8000/hook", "blocked_loopback"),
        ("http://localhost/hook", "blocked_loopback"),
        ("http://api.localhost./hook", "blocked_loopback"),
        ("http://10.1.2.3/hook", "blocked_private"),
        ("http://169.254.169.254/latest/meta-data", "blocked_metadata"),
        ("http://[::1]/hook", "blocked_loopback"),
        ("http://[::ffff:192.168.0.1]/hook", "blocked_private"),
        ("http://0x7f.1/hook", "ip_encoding_not_canonical"),
        ("https://example.com/" + "a" * 500, "url_too_long"),
        (42, "invalid_url"),
    ],
)
def test_bad_and_internal_urls_are_refused_with_the_channels_code(customer_a, settings, url, code):
    settings.ALERTS_OUTBOUND_ALLOWED_NETWORKS = []

    with pytest.raises(InvalidInput) as refused:
        services.endpoint_create(actor=None, customer=customer_a, url=url)

    assert (refused.value.code, refused.value.field) == (code, "url")
    assert refused.value.message.endswith(".") and not refused.value.message[0].islower()
    assert not WebhookEndpoint.objects.exists()
    assert not WebhookSecret.objects.exists()


def test_an_internal_address_says_why_in_plain_words(customer_a, settings):
    settings.ALERTS_OUTBOUND_ALLOWED_NETWORKS = []

    with pytest.raises(InvalidInput) as refused:
        services.endpoint_create(actor=None, customer=customer_a, url="http://192.168.1.20/x")

    assert refused.value.message == (
        "Alerts cannot be sent to internal addresses: 192.168.1.20 is a private address."
    )


def test_the_same_url_twice_is_a_conflict_but_another_customer_may_use_it(
    endpoint, customer_a, customer_b
):
    with pytest.raises(Conflict) as refused:
        services.endpoint_create(actor=None, customer=customer_a, url=URL)
    assert (refused.value.code, refused.value.field) == ("duplicate_url", "url")

    services.endpoint_create(actor=None, customer=customer_b, url=URL)
    assert WebhookEndpoint.objects.filter(url=URL).count() == 2


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"personas": ["developer", "wizard"]}, "personas", "invalid_choice"),
        ({"personas": "developer"}, "personas", "invalid"),
        ({"description": "x" * 201}, "description", "invalid"),
        ({"description": "a\x00b"}, "description", "null_characters_not_allowed"),
    ],
)
def test_bad_fields_are_refused_by_name(customer_a, fields, field, code):
    with pytest.raises(InvalidInput) as refused:
        services.endpoint_create(actor=None, customer=customer_a, url=URL, **fields)
    assert (refused.value.field, refused.value.code) == (field, code)


def test_personas_are_stored_once_each_in_a_stable_order(customer_a):
    endpoint = services.endpoint_create(
        actor=None, customer=customer_a, url=URL, personas=["finance", "developer", "finance"]
    )
    assert endpoint.personas == ["developer", "finance"]


def test_a_customer_has_a_bounded_number_of_endpoints(customer_a):
    for n in range(MAX_ENDPOINTS):
        services.endpoint_create(actor=None, customer=customer_a, url=f"{URL}/{n}")

    with pytest.raises(InvalidInput) as refused:
        services.endpoint_create(actor=None, customer=customer_a, url=f"{URL}/more")
    assert refused.value.code == "too_many_endpoints"


# --- Changing ---------------------------------------------------------------------------


def test_update_changes_the_fields_given_and_audits_only_what_changed(endpoint, owner_a):
    services.endpoint_update(
        actor=owner_a.user,
        endpoint=endpoint,
        url=f"{URL}/v2",
        description="Ops",
        personas=[],
    )

    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.personas) == (f"{URL}/v2", [])
    entry = AuditLog.objects.get(action="webhook_endpoint.changed")
    assert entry.before == {"url": URL, "personas": ["developer"]}
    assert entry.after == {"url": f"{URL}/v2", "personas": []}


def test_update_checks_the_url_like_create(endpoint, settings):
    settings.ALERTS_OUTBOUND_ALLOWED_NETWORKS = []
    with pytest.raises(InvalidInput) as refused:
        services.endpoint_update(actor=None, endpoint=endpoint, url="http://10.0.0.1/")
    assert refused.value.code == "blocked_private"
    with pytest.raises(InvalidInput) as refused:
        services.endpoint_update(actor=None, endpoint=endpoint, secret="mine")
    assert (refused.value.code, refused.value.field) == ("unknown_field", "secret")
    endpoint.refresh_from_db()
    assert endpoint.url == URL


def test_reenabling_a_disabled_endpoint_clears_why_it_was_disabled(endpoint, owner_a):
    now = timezone.now()
    assert services.endpoint_disable(endpoint, "The receiver answered 410 Gone.", now)

    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at) == (
        False,
        "The receiver answered 410 Gone.",
        now,
    )
    services.endpoint_update(actor=owner_a.user, endpoint=endpoint, enabled=True)

    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at) == (True, "", None)


def test_turning_an_endpoint_off_by_hand_says_who(endpoint, owner_a):
    services.endpoint_update(actor=owner_a.user, endpoint=endpoint, enabled=False)

    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.disabled_reason == f"Turned off by {owner_a.user.email}"


def test_disable_is_idempotent_and_audited_once_as_the_system(endpoint):
    assert services.endpoint_disable(endpoint, "410 Gone", timezone.now()) is True
    assert services.endpoint_disable(endpoint, "410 Gone again", timezone.now()) is False

    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == "410 Gone"
    entry = AuditLog.objects.get(action="webhook_endpoint.disabled")
    assert (entry.actor_user, entry.actor_api_key, entry.actor_label) == (None, None, "system")


def test_delete_removes_the_endpoint_and_its_secrets(endpoint, owner_a):
    endpoint_id = endpoint.pk
    services.endpoint_delete(actor=owner_a.user, endpoint=endpoint)

    assert not WebhookEndpoint.objects.exists()
    assert not WebhookSecret.objects.exists()
    assert audit_actions(endpoint_id) == ["webhook_endpoint.created", "webhook_endpoint.removed"]


# --- Rotating ---------------------------------------------------------------------------


def test_during_the_overlap_both_secrets_verify_and_after_it_only_the_new_one(endpoint):
    now = timezone.now()
    (old,) = selectors.endpoint_signing_secrets(endpoint, now)

    fresh = services.endpoint_rotate_secret(
        actor=None, endpoint=endpoint, overlap=timedelta(hours=24), now=now
    )

    during = selectors.endpoint_signing_secrets(endpoint, now + timedelta(hours=23))
    assert during == [fresh.secret, old]  # current first
    body, headers = signed(during)
    assert Webhook(fresh.secret).verify(body, headers) == PAYLOAD
    assert Webhook(old).verify(body, headers) == PAYLOAD

    after = selectors.endpoint_signing_secrets(endpoint, now + timedelta(hours=24))
    assert after == [fresh.secret]
    body, headers = signed(after)
    assert Webhook(fresh.secret).verify(body, headers) == PAYLOAD
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, headers)


def test_rotating_again_keeps_at_most_two_signing_and_prunes_older_ones(endpoint):
    now = timezone.now()
    (first,) = selectors.endpoint_signing_secrets(endpoint, now)
    second = services.endpoint_rotate_secret(actor=None, endpoint=endpoint, now=now)
    third = services.endpoint_rotate_secret(
        actor=None, endpoint=endpoint, now=now + timedelta(hours=1)
    )

    assert selectors.endpoint_signing_secrets(endpoint, now + timedelta(hours=2)) == [
        third.secret,
        second.secret,
    ]
    assert set(WebhookSecret.objects.values_list("secret", flat=True)) == {
        second.secret,
        third.secret,
    }
    assert first not in WebhookSecret.objects.values_list("secret", flat=True)


def test_a_zero_overlap_ends_the_old_secret_at_once(endpoint):
    now = timezone.now()
    fresh = services.endpoint_rotate_secret(
        actor=None, endpoint=endpoint, overlap=timedelta(0), now=now
    )
    assert selectors.endpoint_signing_secrets(endpoint, now) == [fresh.secret]


@pytest.mark.parametrize("overlap", [timedelta(seconds=-1), timedelta(days=7, seconds=1)])
def test_an_overlap_out_of_bounds_is_refused(endpoint, overlap):
    with pytest.raises(InvalidInput) as refused:
        services.endpoint_rotate_secret(actor=None, endpoint=endpoint, overlap=overlap)
    assert refused.value.code == "invalid_overlap"
    assert WebhookSecret.objects.count() == 1


def test_rotation_is_audited_without_the_secrets(endpoint, owner_a):
    now = timezone.now()
    fresh = services.endpoint_rotate_secret(actor=owner_a.user, endpoint=endpoint, now=now)

    entry = AuditLog.objects.get(action="webhook_endpoint.secret_rotated")
    assert entry.actor_user == owner_a.user
    assert entry.after == {"previous_secret_expires_at": (now + timedelta(hours=24)).isoformat()}
    assert "whsec_" not in str(entry.after) and fresh.secret not in str(entry.before)


# --- Contacts' URLs ---------------------------------------------------------------------


def test_a_contacts_url_gets_one_endpoint_however_often_it_is_asked(customer_a):
    contact = ContactFactory(
        customer=customer_a, persona="developer", webhook_url="https://ops.example.com/in"
    )

    first = services.endpoint_for_contact_url(customer_a, contact, contact.webhook_url)
    again = services.endpoint_for_contact_url(customer_a, contact, contact.webhook_url)

    assert first.pk == again.pk
    assert (first.contact_id, first.personas) == (contact.pk, ["developer"])
    assert len(selectors.endpoint_signing_secrets(first, timezone.now())) == 1
    assert WebhookSecret.objects.count() == 1
    assert not AuditLog.objects.filter(action__startswith="webhook_endpoint.").exists()


def test_a_contacts_url_reuses_the_customers_own_endpoint_for_it(endpoint, customer_a):
    contact = ContactFactory(customer=customer_a, webhook_url=URL)

    found = services.endpoint_for_contact_url(customer_a, contact, URL)

    assert found.pk == endpoint.pk and found.contact_id is None
    assert WebhookSecret.objects.count() == 1

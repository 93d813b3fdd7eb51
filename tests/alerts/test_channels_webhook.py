"""Standard Webhooks signing, checked with the reference `standardwebhooks` verifier."""

import base64
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from alerts.channels import (
    AttemptStatus,
    encode_payload,
    generate_webhook_secret,
    is_valid_webhook_secret,
    send_webhook,
    webhook_headers,
)
from tests.alerts.receivers import Receiver

PAYLOAD = {"type": "alert.fired", "data": {"meter": "api_calls", "level": "80%", "note": "é"}}


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def test_generated_secrets_are_well_formed_and_distinct():
    secret = generate_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert is_valid_webhook_secret(secret)
    assert generate_webhook_secret() != secret


@pytest.mark.parametrize(
    "secret", ["", "abc", "whsec_", "whsec_not base64!", "whsec_" + base64.b64encode(b"x").decode()]
)
def test_malformed_secrets_are_rejected(secret):
    assert not is_valid_webhook_secret(secret)
    with pytest.raises(ValueError):
        webhook_headers(msg_id="msg_1", body=b"{}", secrets=[secret], timestamp=timezone.now())


def test_delivered_webhook_verifies_with_the_secret(receiver):
    secret = generate_webhook_secret()
    outcome = send_webhook(receiver.url(), msg_id="msg_abc", payload=PAYLOAD, secrets=[secret])
    assert outcome.delivered
    (request,) = receiver.requests
    assert request.headers["webhook-id"] == "msg_abc"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == PAYLOAD
    assert Webhook(secret).verify(request.body, request.headers) == PAYLOAD


def test_during_rotation_both_the_new_and_the_previous_secret_verify(receiver):
    new, previous = generate_webhook_secret(), generate_webhook_secret()
    send_webhook(receiver.url(), msg_id="msg_rot", payload=PAYLOAD, secrets=[new, previous])
    (request,) = receiver.requests
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert Webhook(new).verify(request.body, request.headers) == PAYLOAD
    assert Webhook(previous).verify(request.body, request.headers) == PAYLOAD
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_webhook_secret()).verify(request.body, request.headers)


def test_after_rotation_the_previous_secret_no_longer_verifies(receiver):
    new, previous = generate_webhook_secret(), generate_webhook_secret()
    send_webhook(receiver.url(), msg_id="msg_after", payload=PAYLOAD, secrets=[new])
    (request,) = receiver.requests
    assert Webhook(new).verify(request.body, request.headers) == PAYLOAD
    with pytest.raises(WebhookVerificationError):
        Webhook(previous).verify(request.body, request.headers)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body.replace(b"80%", b"10%"), headers),
        lambda body, headers: (body, {**headers, "webhook-id": "msg_other"}),
        lambda body, headers: (
            body,
            {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)},
        ),
    ],
    ids=["body", "id", "timestamp"],
)
def test_tampering_breaks_the_signature(tamper):
    secret = generate_webhook_secret()
    body = encode_payload(PAYLOAD)
    headers = webhook_headers(msg_id="msg_t", body=body, secrets=[secret], timestamp=timezone.now())
    Webhook(secret).verify(body, headers)
    bad_body, bad_headers = tamper(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(bad_body, bad_headers)


def test_a_stale_timestamp_is_refused_by_receivers():
    """The timestamp is the attempt's: a replay captured long ago does not verify."""
    secret = generate_webhook_secret()
    body = encode_payload(PAYLOAD)
    old = timezone.now() - timedelta(hours=1)
    headers = webhook_headers(msg_id="msg_old", body=body, secrets=[secret], timestamp=old)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_signature_matches_the_spec_by_hand():
    """`v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), computed independently."""
    import hashlib
    import hmac

    secret = generate_webhook_secret()
    body = encode_payload(PAYLOAD)
    now = timezone.now()
    headers = webhook_headers(msg_id="msg_spec", body=body, secrets=[secret], timestamp=now)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = b"msg_spec." + str(int(now.timestamp())).encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_410_from_a_webhook_receiver_means_gone(receiver):
    receiver.respond(410)
    outcome = send_webhook(
        receiver.url(), msg_id="m", payload=PAYLOAD, secrets=[generate_webhook_secret()]
    )
    assert outcome.status == AttemptStatus.ENDPOINT_GONE


def test_webhook_redirect_is_not_followed(receiver):
    with Receiver() as target:
        receiver.respond(307, headers={"Location": target.url()})
        outcome = send_webhook(
            receiver.url(), msg_id="m", payload=PAYLOAD, secrets=[generate_webhook_secret()]
        )
        assert outcome.status == AttemptStatus.FAILED
        assert outcome.error_code == "redirect_not_followed"
        assert target.requests == []


def test_webhook_timeout_is_retryable(receiver):
    receiver.respond(200, delay=1.5)
    outcome = send_webhook(
        receiver.url(),
        msg_id="m",
        payload=PAYLOAD,
        secrets=[generate_webhook_secret()],
        total_timeout=0.3,
    )
    assert outcome.retryable and outcome.error_code == "timeout"

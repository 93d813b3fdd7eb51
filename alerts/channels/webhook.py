"""Generic webhooks signed per the Standard Webhooks spec (https://www.standardwebhooks.com).

The HMAC itself is the `standardwebhooks` package's; we only choose what to sign with.
During a secret rotation both the new and the previous secret sign each message (the
signature header carries both, space-separated), so a receiver still on the old secret
and one already on the new one both verify.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from .http import safe_post
from .outcome import AttemptOutcome

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format marker, not a secret)
SECRET_BYTES = 32  # the spec asks for 24 to 64


def generate_webhook_secret() -> str:
    """A new signing secret, `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def is_valid_webhook_secret(secret: str) -> bool:
    """`whsec_` + strict base64 of 24..64 bytes (the package itself decodes leniently)."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(raw) <= 64


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: exactly the bytes that get signed and sent."""
    return json.dumps(
        payload, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def webhook_headers(
    *, msg_id: str, body: bytes, secrets: Sequence[str], timestamp: datetime
) -> dict[str, str]:
    """The three Standard Webhooks headers; one `v1,<sig>` per secret, current first."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    for secret in secrets:
        if not is_valid_webhook_secret(secret):
            raise ValueError("a signing secret is not whsec_<base64 of 24..64 bytes>")
    data = body.decode("utf-8")  # the package signs text; our bodies are UTF-8 JSON
    signatures = [Webhook(s).sign(msg_id=msg_id, timestamp=timestamp, data=data) for s in secrets]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def send_webhook(
    url: str,
    *,
    msg_id: str,
    payload: Mapping[str, Any],
    secrets: Sequence[str],
    timestamp: datetime | None = None,
    **timeouts: float,
) -> AttemptOutcome:
    """Sign and POST one message. `msg_id` must stay the same across retries (receivers
    deduplicate on it); the timestamp is the attempt's. `secrets`: current, then previous
    while a rotation overlaps."""
    body = encode_payload(payload)
    headers = webhook_headers(
        msg_id=msg_id, body=body, secrets=secrets, timestamp=timestamp or timezone.now()
    )
    headers["Content-Type"] = "application/json"
    return safe_post(url, body=body, headers=headers, **timeouts)

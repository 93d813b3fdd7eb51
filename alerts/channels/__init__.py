"""Outbound delivery channels: plain functions, no models.

The outbox task calls one `send_*` per delivery attempt and stores the AttemptOutcome;
`next_attempt_at` says when to try again. Customer-supplied URLs only ever go through
`safe_post`, which refuses internal addresses at connect time.
"""

from .email import render_email, send_email
from .http import parse_outbound_url, safe_post
from .notice import Notice, NoticeAction, Severity
from .outcome import AttemptOutcome, AttemptStatus, OutboundRefused
from .retry import MAX_ATTEMPTS, RETRY_DELAYS, RETRY_HORIZON, next_attempt_at, retry_delay
from .slack import build_slack_payload, send_slack
from .teams import build_teams_payload, send_teams
from .webhook import (
    encode_payload,
    generate_webhook_secret,
    is_valid_webhook_secret,
    send_webhook,
    webhook_headers,
)

__all__ = [
    "MAX_ATTEMPTS",
    "RETRY_DELAYS",
    "RETRY_HORIZON",
    "AttemptOutcome",
    "AttemptStatus",
    "Notice",
    "NoticeAction",
    "OutboundRefused",
    "Severity",
    "build_slack_payload",
    "build_teams_payload",
    "encode_payload",
    "generate_webhook_secret",
    "is_valid_webhook_secret",
    "next_attempt_at",
    "parse_outbound_url",
    "render_email",
    "retry_delay",
    "safe_post",
    "send_email",
    "send_slack",
    "send_teams",
    "send_webhook",
    "webhook_headers",
]

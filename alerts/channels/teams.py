"""Microsoft Teams workflow webhooks: a message carrying an Adaptive Card built from a Notice.

The Workflows ("Post to a channel when a webhook request is received") replacement for
Office 365 connectors takes `{"type": "message", "attachments": [card]}`; Teams renders
Adaptive Cards up to schema 1.5, we write 1.4. Like Slack, the URL is the secret: no signing.
"""

from __future__ import annotations

from typing import Any

from .http import safe_post
from .notice import Notice, Severity
from .outcome import AttemptOutcome
from .webhook import encode_payload

ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_CARD_VERSION = "1.4"

_SEVERITY_COLOR = {
    Severity.INFO: "Accent",
    Severity.WARNING: "Warning",
    Severity.CRITICAL: "Attention",
}


def build_adaptive_card(notice: Notice) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": notice.title,
            "size": "Large",
            "weight": "Bolder",
            "color": _SEVERITY_COLOR[notice.severity],
            "wrap": True,
            "style": "heading",
        },
        {"type": "TextBlock", "text": notice.summary, "wrap": True},
    ]
    if notice.body:
        body.append({"type": "TextBlock", "text": notice.body, "wrap": True, "spacing": "Medium"})
    if notice.facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [{"title": label, "value": value} for label, value in notice.facts],
            }
        )
    body.append(
        {
            "type": "TextBlock",
            "text": f"{notice.severity.label} · Meterbook",
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        }
    )
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    actions = [a for a in notice.all_actions() if a.url]
    if actions:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": action.label, "url": action.url}
            for action in actions
        ]
    return card


def build_teams_payload(notice: Notice) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": ADAPTIVE_CARD_CONTENT_TYPE,
                "contentUrl": None,
                "content": build_adaptive_card(notice),
            }
        ],
    }


def send_teams(url: str, notice: Notice, **timeouts: float) -> AttemptOutcome:
    body = encode_payload(build_teams_payload(notice))
    return safe_post(url, body=body, headers={"Content-Type": "application/json"}, **timeouts)

"""Slack incoming webhooks: a Block Kit message built from a Notice.

Block Kit: https://api.slack.com/reference/block-kit/blocks. Slack signs nothing here: the
webhook URL is the secret, so it is posted through the same SSRF-safe client.
"""

from __future__ import annotations

from typing import Any

from .http import safe_post
from .notice import Notice, Severity
from .outcome import AttemptOutcome
from .webhook import encode_payload

# Slack's documented limits; past them the whole message is rejected (400 invalid_blocks).
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
FIELDS_PER_SECTION = 10
BUTTON_TEXT_MAX = 75
BUTTONS_PER_ACTIONS = 25
URL_MAX = 3000

_SEVERITY_MARK = {
    Severity.INFO: ":information_source:",
    Severity.WARNING: ":warning:",
    Severity.CRITICAL: ":rotating_light:",
}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape_mrkdwn(text: str) -> str:
    """Slack's required escapes, so `<`/`>` in data cannot forge links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_slack_payload(notice: Notice) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(notice.title, HEADER_MAX), "emoji": True},
        }
    ]
    text = escape_mrkdwn(notice.summary)
    if notice.body:
        text = f"{text}\n\n{escape_mrkdwn(notice.body)}"
    blocks.append(
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SECTION_TEXT_MAX)}}
    )
    facts = list(notice.facts)
    for start in range(0, len(facts), FIELDS_PER_SECTION):
        chunk = facts[start : start + FIELDS_PER_SECTION]
        fields = [
            {
                "type": "mrkdwn",
                "text": _clip(f"*{escape_mrkdwn(label)}*\n{escape_mrkdwn(value)}", FIELD_TEXT_MAX),
            }
            for label, value in chunk
        ]
        blocks.append({"type": "section", "fields": fields})
    actions = [a for a in notice.all_actions() if a.url and len(a.url) <= URL_MAX]
    if actions:
        elements = []
        for index, action in enumerate(actions[:BUTTONS_PER_ACTIONS]):
            button = {
                "type": "button",
                "action_id": f"open_{index}",
                "text": {"type": "plain_text", "text": _clip(action.label, BUTTON_TEXT_MAX)},
                "url": action.url,
            }
            if index == 0:
                button["style"] = "primary"
            elements.append(button)
        blocks.append({"type": "actions", "elements": elements})
    context = f"{_SEVERITY_MARK[notice.severity]} {notice.severity.label} · Meterbook"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    # `text` is the notification and screen-reader fallback Slack shows when blocks can't be.
    return {"text": _clip(f"{notice.title}: {notice.summary}", SECTION_TEXT_MAX), "blocks": blocks}


def send_slack(url: str, notice: Notice, **timeouts: float) -> AttemptOutcome:
    body = encode_payload(build_slack_payload(notice))
    return safe_post(url, body=body, headers={"Content-Type": "application/json"}, **timeouts)

"""Slack (Block Kit) and Teams (Adaptive Card) payloads, sent to loopback receivers."""

import json

import pytest

from alerts.channels import (
    AttemptStatus,
    Notice,
    NoticeAction,
    Severity,
    build_slack_payload,
    build_teams_payload,
    send_slack,
    send_teams,
)
from tests.alerts.receivers import Receiver

NOTICE = Notice(
    title="api_calls is at 80% of your cap",
    summary="Alpha Analytics used 40,000 of 50,000 API calls this period.",
    severity=Severity.WARNING,
    facts=(("Meter", "api_calls"), ("Remaining", "10,000"), ("Resets", "2026-04-01 00:00 UTC")),
    body="At the current rate <b>& growing</b> the cap is reached in 3 days.",
    link_url="https://app.meterbook.example/portal/alerts/42",
    actions=(NoticeAction("See the commitment option", "https://app.meterbook.example/plans"),),
)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def test_slack_payload_has_the_block_kit_shape():
    payload = build_slack_payload(NOTICE)
    assert payload["text"].startswith(NOTICE.title)  # notification fallback
    kinds = [block["type"] for block in payload["blocks"]]
    assert kinds == ["header", "section", "section", "actions", "context"]
    header, summary, facts, actions, context = payload["blocks"]
    assert header["text"] == {"type": "plain_text", "text": NOTICE.title, "emoji": True}
    assert summary["text"]["type"] == "mrkdwn"
    assert "&lt;b&gt;&amp; growing&lt;/b&gt;" in summary["text"]["text"]  # Slack's escapes
    assert facts["fields"][0] == {"type": "mrkdwn", "text": "*Meter*\napi_calls"}
    assert len(facts["fields"]) == 3
    buttons = actions["elements"]
    assert [b["type"] for b in buttons] == ["button", "button"]
    assert buttons[0]["url"] == NOTICE.link_url and buttons[0]["style"] == "primary"
    assert buttons[1]["text"] == {"type": "plain_text", "text": "See the commitment option"}
    assert "Warning" in context["elements"][0]["text"]


def test_slack_limits_are_respected():
    notice = Notice(
        title="x" * 400,
        summary="y" * 5000,
        facts=tuple((f"k{i}", "v") for i in range(13)),
        link_url="javascript:alert(1)",
    )
    payload = build_slack_payload(notice)
    header, summary, *rest = payload["blocks"]
    assert len(header["text"]["text"]) == 150
    assert len(summary["text"]["text"]) == 3000
    sections = [b for b in rest if b["type"] == "section"]
    assert [len(s["fields"]) for s in sections] == [10, 3]  # at most 10 fields per section
    assert not any(b["type"] == "actions" for b in rest)  # no non-web link button


def test_teams_payload_is_a_message_with_an_adaptive_card():
    payload = build_teams_payload(NOTICE)
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert tuple(int(p) for p in card["version"].split(".")) >= (1, 4)
    title, summary, body, factset, footer = card["body"]
    assert title["type"] == "TextBlock" and title["text"] == NOTICE.title
    assert title["weight"] == "Bolder" and title["color"] == "Warning" and title["wrap"]
    assert summary["text"] == NOTICE.summary
    assert body["text"] == NOTICE.body
    assert factset == {
        "type": "FactSet",
        "facts": [{"title": label, "value": value} for label, value in NOTICE.facts],
    }
    assert footer["isSubtle"]
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open in Meterbook", "url": NOTICE.link_url},
        {
            "type": "Action.OpenUrl",
            "title": "See the commitment option",
            "url": "https://app.meterbook.example/plans",
        },
    ]


def test_a_minimal_notice_still_builds():
    notice = Notice(title="Usage back to normal", summary="Resolved.")
    assert [b["type"] for b in build_slack_payload(notice)["blocks"]] == [
        "header",
        "section",
        "context",
    ]
    card = build_teams_payload(notice)["attachments"][0]["content"]
    assert "actions" not in card
    assert [b["type"] for b in card["body"]] == ["TextBlock", "TextBlock", "TextBlock"]


def test_slack_is_posted_unsigned_as_json(receiver):
    outcome = send_slack(receiver.url("/services/T000/B000/XXXX"), NOTICE)
    assert outcome.delivered
    (request,) = receiver.requests
    assert request.path == "/services/T000/B000/XXXX"
    assert request.headers["content-type"] == "application/json"
    assert "webhook-signature" not in request.headers
    assert json.loads(request.body) == build_slack_payload(NOTICE)


def test_teams_is_posted_as_json_and_202_counts_as_delivered(receiver):
    receiver.respond(202, b"")
    outcome = send_teams(receiver.url("/workflows/abc/triggers/manual/paths/invoke"), NOTICE)
    assert outcome.delivered and outcome.status_code == 202
    assert json.loads(receiver.requests[0].body) == build_teams_payload(NOTICE)


def test_chat_urls_go_through_the_ssrf_checks(settings, receiver):
    settings.ALERTS_OUTBOUND_ALLOWED_NETWORKS = []
    assert send_slack(receiver.url(), NOTICE).status == AttemptStatus.REFUSED
    assert send_teams(receiver.url(), NOTICE).status == AttemptStatus.REFUSED
    assert receiver.requests == []


def test_slack_archived_channel_410_is_gone(receiver):
    receiver.respond(410, b"channel_is_archived")
    assert send_slack(receiver.url(), NOTICE).status == AttemptStatus.ENDPOINT_GONE

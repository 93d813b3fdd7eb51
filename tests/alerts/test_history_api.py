"""GET /api/v1/alerts and /alerts/{id}: the history, filtered and paged, with deliveries."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.accounts.api.support import api, assert_error
from tests.accounts.factories import make_api_key
from tests.alerts.alert_factories import make_alert, make_delivery
from tests.metering.factories import api_calls_meter, data_meter

pytestmark = pytest.mark.django_db

ALERTS = "/api/v1/alerts"


@pytest.fixture
def alpha(customer_a_token):
    return api(customer_a_token)


@pytest.fixture
def operator(operator_token):
    return api(operator_token)


@pytest.fixture
def history(customer_a):
    """Four alerts of A over four days: newest is open, the others resolved or older."""
    now = timezone.now()
    calls, data = api_calls_meter(), data_meter()
    made = {
        "oldest": make_alert(
            customer_a, title="Oldest", meter=calls, triggered_at=now - timedelta(days=3)
        ),
        "velocity": make_alert(
            customer_a,
            title="Velocity",
            kind="velocity",
            meter=data,
            status="resolved",
            resolved_at=now - timedelta(hours=30),
            resolution="The rate fell back.",
            triggered_at=now - timedelta(days=2),
        ),
        "spend": make_alert(
            customer_a,
            title="Spend",
            kind="threshold",
            severity="critical",
            triggered_at=now - timedelta(days=1),
        ),
        "newest": make_alert(customer_a, title="Newest", meter=calls, triggered_at=now),
    }
    make_delivery(
        made["newest"],
        status="pending",
        attempts=[("failed", 503), ("failed", 502)],
        next_attempt_at=now + timedelta(minutes=5),
    )
    make_delivery(made["newest"], channel="email", target="ops@alpha.example.com", attempts=[])
    return made


def titles(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [a["title"] for a in response.json()["results"]]


def test_the_history_is_newest_first_with_a_summary_of_deliveries(alpha, history):
    body = alpha.get(ALERTS).json()

    assert [a["title"] for a in body["results"]] == ["Newest", "Spend", "Velocity", "Oldest"]
    newest = body["results"][0]
    assert (newest["kind"], newest["severity"], newest["status"], newest["meter"]) == (
        "threshold",
        "warning",
        "open",
        "api_call",
    )
    assert newest["evidence"] == {"usage": "80000", "level": "80000"}
    assert newest["triggered_at"].endswith("Z") and newest["resolved_at"] is None
    webhook, email = newest["deliveries"]
    assert (webhook["channel"], webhook["status"], webhook["attempts"]) == ("webhook", "pending", 2)
    assert webhook["last_status_code"] == 502 and webhook["next_attempt_at"] is not None
    assert "attempt_log" not in webhook
    assert (email["channel"], email["target"], email["attempts"]) == (
        "email",
        "ops@alpha.example.com",
        0,
    )
    spend = body["results"][1]
    assert (spend["meter"], spend["deliveries"]) == (None, [])
    velocity = body["results"][2]
    assert (velocity["status"], velocity["resolution"]) == ("resolved", "The rate fell back.")
    assert velocity["resolved_at"] is not None


def test_the_detail_has_every_attempt(alpha, history):
    alert = history["newest"]

    body = alpha.get(f"{ALERTS}/{alert.pk}").json()

    webhook = body["deliveries"][0]
    assert [(a["number"], a["status"], a["status_code"]) for a in webhook["attempt_log"]] == [
        (1, "failed", 503),
        (2, "failed", 502),
    ]
    assert webhook["attempt_log"][0]["response_excerpt"] == "Service Unavailable"
    assert body["summary"] == alert.summary


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "resolved"}, ["Velocity"]),
        ({"status": "open"}, ["Newest", "Spend", "Oldest"]),
        ({"kind": "velocity"}, ["Velocity"]),
        ({"meter": "api_call"}, ["Newest", "Oldest"]),
        ({"meter": "api_call", "status": "open", "kind": "threshold"}, ["Newest", "Oldest"]),
    ],
)
def test_filters(alpha, history, query, expected):
    assert titles(alpha.get(ALERTS, query)) == expected


def test_since_and_until_bound_when_alerts_fired(alpha, history):
    since = history["velocity"].triggered_at.isoformat()
    until = history["newest"].triggered_at.isoformat()

    assert titles(alpha.get(ALERTS, {"since": since, "until": until})) == ["Spend", "Velocity"]
    assert titles(alpha.get(ALERTS, {"since": until})) == ["Newest"]


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ({"status": "closed"}, "invalid_choice", "status"),
        ({"kind": "vibes"}, "invalid_choice", "kind"),
        ({"meter": "nope"}, "does_not_exist", "meter"),
        ({"since": "yesterday"}, "invalid", "since"),
        ({"until": "2026-11-01T00:00:00"}, "invalid", "until"),
        (
            {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
            "invalid_range",
            "until",
        ),
        ({"customer": "beta"}, "does_not_exist", "customer"),
        ({"severity": "critical"}, "unknown_field", "severity"),
        ({"cursor": "garbage"}, "invalid_cursor", "cursor"),
    ],
)
def test_bad_filters_are_a_400_naming_the_field(alpha, history, customer_b, query, code, field):
    assert_error(alpha.get(ALERTS, query), 400, code, field=field)


def test_pages_follow_the_cursor_without_gaps_or_repeats(alpha, customer_a):
    now = timezone.now()
    # Three share one moment (alerts of one batch do): the id breaks the tie.
    for n in range(7):
        make_alert(customer_a, title=f"A{n}", triggered_at=now - timedelta(minutes=n // 3))

    seen, url = [], f"{ALERTS}?limit=3"
    while url:
        body = alpha.get(url).json()
        seen += [a["title"] for a in body["results"]]
        url = body["next"]

    # Newest first; among equals, the later made (higher id) first.
    assert seen == ["A2", "A1", "A0", "A5", "A4", "A3", "A6"]


def test_a_customer_key_sees_only_its_own_alerts(alpha, history, customer_b):
    theirs = make_alert(customer_b, title="Beta's alert")
    make_delivery(theirs, target="https://beta.example.com/hook")

    assert "Beta's alert" not in titles(alpha.get(ALERTS))
    assert_error(alpha.get(f"{ALERTS}/{theirs.pk}"), 404, "not_found")


def test_an_operator_sees_every_customer_and_filters_by_one(operator, history, customer_b):
    make_alert(customer_b, title="Beta's alert")

    assert len(titles(operator.get(ALERTS))) == 5
    assert titles(operator.get(ALERTS, {"customer": "beta"})) == ["Beta's alert"]


def test_the_history_needs_alerts_read(customer_a, history):
    client = api(make_api_key(customer=customer_a, scopes=["usage:read"])[1])
    assert_error(client.get(ALERTS), 403, "insufficient_scope")
    assert_error(client.get(f"{ALERTS}/{history['newest'].pk}"), 403, "insufficient_scope")


def test_a_page_costs_the_same_queries_whatever_its_deliveries(
    alpha, customer_a, django_assert_max_num_queries
):
    alert = make_alert(customer_a)
    make_delivery(alert)
    with django_assert_max_num_queries(5) as one:
        alpha.get(ALERTS)
    for n in range(10):
        more = make_alert(customer_a, title=f"More {n}")
        make_delivery(more, attempts=[("failed", 500), ("delivered", 200)])
        make_delivery(more, channel="email", target=f"p{n}@alpha.example.com")
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(alpha.get(ALERTS).json()["results"]) == 11
    with django_assert_max_num_queries(len(one.captured_queries) + 1):
        alpha.get(f"{ALERTS}/{alert.pk}")

"""Threshold rules: each level fires once per rule, billing period and level."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Contact
from alerts.models import Alert, AlertRule, Delivery
from alerts.services import evaluation
from metering import hooks
from metering.ingest import events_ingest
from metering.selectors import current_period
from tests.concurrency import in_threads
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, event

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def calls(db):
    return api_calls_meter()


def ingest(customer, count, *, at=NOW, prefix="e"):
    batch = [
        event(customer, f"{prefix}-{i}", ts=(at - timedelta(minutes=1)).isoformat()[:19] + "Z")
        for i in range(count)
    ]
    result = events_ingest(events=batch, now=at)
    assert result.accepted == count


def rule(customer, meter, levels, basis=AlertRule.Basis.UNITS, **kwargs):
    return AlertRule.objects.create(
        customer=customer,
        kind=AlertRule.Kind.THRESHOLD,
        meter=meter,
        basis=basis,
        levels=[Decimal(x) for x in levels],
        **kwargs,
    )


@pytest.mark.django_db
def test_each_level_fires_once_in_a_period(customer_a, calls):
    watched = rule(customer_a, calls, ["100", "200"])
    pairs = {(customer_a.pk, calls.pk)}

    ingest(customer_a, 99, prefix="a")
    assert evaluation.thresholds_evaluate(pairs, now=NOW) == []
    ingest(customer_a, 1, prefix="b")  # exactly at the level counts as reached
    first = evaluation.thresholds_evaluate(pairs, now=NOW)
    assert [a.level for a in first] == ["100"]
    assert evaluation.thresholds_evaluate(pairs, now=NOW) == []  # still 100: nothing new
    ingest(customer_a, 150, prefix="c")
    assert [a.level for a in evaluation.thresholds_evaluate(pairs, now=NOW)] == ["200"]
    assert evaluation.thresholds_evaluate(now=NOW) == []  # the backstop agrees

    alerts = Alert.objects.filter(rule=watched).order_by("level")
    assert [(a.level, a.status, a.kind) for a in alerts] == [
        ("100", "open", "threshold"),
        ("200", "open", "threshold"),
    ]
    assert alerts[0].evidence["usage"] == "100"
    assert "cap_units" not in alerts[0].evidence  # no hard cap on the meter
    assert alerts[0].title == "API calls reached 100 calls"
    assert alerts[0].summary.startswith("API calls stands at 100 calls this billing period")


@pytest.mark.django_db
def test_a_batch_past_several_levels_records_each_and_sends_only_the_highest(customer_a, calls):
    Contact.objects.create(
        customer=customer_a, name="Dev", persona="developer", slack_webhook_url="https://x.test/s"
    )
    rule(customer_a, calls, ["10", "20", "30"])
    ingest(customer_a, 25)

    fired = evaluation.thresholds_evaluate({(customer_a.pk, calls.pk)}, now=NOW)

    assert [a.level for a in fired] == ["10", "20"]
    assert [a.deliveries.count() for a in fired] == [0, 1]


@pytest.mark.django_db
def test_a_new_billing_period_fires_the_levels_again_and_the_old_alerts_resolve(customer_a, calls):
    watched = rule(customer_a, calls, ["5"])
    ingest(customer_a, 5)
    evaluation.thresholds_evaluate(now=NOW)
    december = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    ingest(customer_a, 5, at=december, prefix="dec")

    evaluation.thresholds_evaluate(now=december)
    evaluation.periods_ended_resolve(now=december)

    november, this_month = Alert.objects.filter(rule=watched).order_by("period_start")
    assert (november.status, november.resolution) == ("resolved", "The billing period ended.")
    assert this_month.status == "open"
    assert this_month.period_start == current_period(customer_a, december).start
    assert this_month.period_start > november.period_start


@pytest.mark.django_db
def test_percent_of_included_units_and_money_levels_use_the_plan(customer_a, calls):
    version = plan_version(components=[flat("99"), per_unit(calls, "0.01", included="200")])
    subscribe(customer_a, version, at=datetime(2026, 11, 1, tzinfo=UTC))
    included = rule(customer_a, calls, ["80", "100"], basis=AlertRule.Basis.PERCENT_INCLUDED)
    spend = rule(customer_a, calls, ["0.5"], basis=AlertRule.Basis.MONEY)
    total = rule(customer_a, None, ["99.40"], basis=AlertRule.Basis.MONEY)

    ingest(customer_a, 160)  # 80% of 200 included, nothing to pay for usage yet
    evaluation.thresholds_evaluate(now=NOW)
    assert list(Alert.objects.filter(rule=included).values_list("level", flat=True)) == ["80"]
    assert not Alert.objects.filter(rule__in=[spend, total]).exists()

    ingest(customer_a, 90, prefix="more")  # 250 calls: 50 paid at 0.01 = 0.50 USD
    evaluation.thresholds_evaluate(now=NOW)
    assert set(Alert.objects.filter(rule=included).values_list("level", flat=True)) == {"80", "100"}
    assert Alert.objects.get(rule=spend).evidence["spend"] == "0.5"
    # Total spend 99 + 0.50 = 99.50 reaches 99.40.
    assert Alert.objects.get(rule=total).evidence["currency"] == "USD"
    assert Alert.objects.get(rule=total).title == "Total spend reached 99.40 USD"
    assert Alert.objects.get(rule=included, level="100").severity == "critical"


@pytest.mark.django_db
def test_a_basis_with_nothing_to_measure_never_fires(customer_a, calls):
    rule(customer_a, calls, ["50"], basis=AlertRule.Basis.PERCENT_INCLUDED)  # no plan
    rule(customer_a, calls, ["50"], basis=AlertRule.Basis.PERCENT_CAP)  # no cap
    ingest(customer_a, 500)
    assert evaluation.thresholds_evaluate(now=NOW) == []


@pytest.mark.django_db
def test_disabled_rules_and_other_customers_usage_fire_nothing(customer_a, customer_b, calls):
    rule(customer_a, calls, ["1"], enabled=False)
    rule(customer_b, calls, ["1"])
    ingest(customer_a, 5)
    assert evaluation.thresholds_evaluate({(customer_a.pk, calls.pk)}, now=NOW) == []


@pytest.fixture
def without_listener():
    """Ingest commits for real in transactional tests: keep its own check out of the way."""
    hooks.unregister(evaluation.on_usage_recorded)
    yield
    hooks.register_usage_recorded(evaluation.on_usage_recorded)


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_of_one_crossing_fire_one_alert_with_one_delivery(
    customer_a, calls, without_listener
):
    Contact.objects.create(
        customer=customer_a, name="Fin", persona="finance", email="fin@alpha.example.com"
    )
    rule(customer_a, calls, ["10"])
    ingest(customer_a, 12)
    pairs = {(customer_a.pk, calls.pk)}

    results = in_threads(8, lambda i: len(evaluation.thresholds_evaluate(pairs, now=NOW)))

    assert sorted(results) == [0] * 7 + [1]
    assert Alert.objects.count() == 1
    assert Delivery.objects.count() == 1


@pytest.mark.django_db
def test_ingestion_checks_thresholds_as_soon_as_it_commits(
    customer_a, calls, django_capture_on_commit_callbacks
):
    rule(customer_a, calls, ["3"])
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        ingest(customer_a, 3, at=now)
    alert = Alert.objects.get()
    assert (alert.level, alert.customer, alert.meter) == ("3", customer_a, calls)


@pytest.mark.django_db
def test_evaluating_at_a_past_moment_sees_only_the_usage_up_to_it(customer_a, calls):
    watched = rule(customer_a, calls, ["10"])
    ingest(customer_a, 6, at=NOW - timedelta(days=2), prefix="early")
    ingest(customer_a, 6, at=NOW, prefix="late")

    assert evaluation.thresholds_evaluate(now=NOW - timedelta(days=1)) == []
    (alert,) = evaluation.thresholds_evaluate(now=NOW)
    assert (alert.rule, alert.evidence["usage"]) == (watched, "12")


@pytest.mark.django_db
def test_the_evidence_carries_the_cap_state_for_developers(customer_a, calls):
    from alerts.services import cap_set

    cap_set(actor=None, customer=customer_a, meter=calls, limit="40", on_exceed="flag")
    rule(customer_a, calls, ["50"], basis=AlertRule.Basis.PERCENT_CAP)
    ingest(customer_a, 30)
    (alert,) = evaluation.thresholds_evaluate(now=NOW)
    assert alert.evidence["cap_units"] == "40"
    assert alert.evidence["remaining_units"] == "10"
    assert alert.evidence["cap_on_exceed"] == "flag"
    assert Decimal(alert.evidence["daily_rate"]) > 0

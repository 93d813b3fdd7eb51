"""Velocity, anomaly and predictive rules on Beat: once per level and period, and resolution."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.models import Contact
from alerts.models import Alert, AlertRule, Delivery, ExpansionSignal
from alerts.services import evaluation
from metering.ingest import events_ingest
from tests.metering.factories import data_meter, event


@pytest.fixture
def data(db):
    return data_meter()


@pytest.fixture
def customer(customer_a):
    customer_a.timezone = "UTC"
    customer_a.created_at = datetime(2026, 1, 1, tzinfo=UTC)
    customer_a.save()
    Contact.objects.create(
        customer=customer_a, name="Dev", persona="developer", slack_webhook_url="https://x.test/s"
    )
    return customer_a


def usage(customer, daily: dict[date, float | int], now: datetime):
    """One event per day at noon UTC with that day's GB."""
    batch = [
        event(
            customer,
            f"d-{day.isoformat()}",
            name="data_processed",
            ts=f"{day}T12:00:00Z",
            gb=str(gb),
        )
        for day, gb in daily.items()
        if gb
    ]
    assert events_ingest(events=batch, now=now).accepted == len(batch)


def days_before(end: date, values: list) -> dict[date, float]:
    """``values`` for the days ending the day before ``end``, oldest first."""
    return {end - timedelta(days=len(values) - i): v for i, v in enumerate(values)}


def rule(customer, meter, kind, **fields):
    return AlertRule.objects.create(customer=customer, kind=kind, meter=meter, **fields)


# --- Velocity --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_velocity_fires_once_when_the_recent_rate_rises_by_the_factor_then_resolves(customer, data):
    velocity = rule(customer, data, "velocity", factor=Decimal(2), min_volume=Decimal(1))
    today = date(2026, 11, 20)
    now = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    usage(customer, days_before(today, [10] * 28 + [25] * 7), now)

    evaluation.rules_evaluate_scheduled(now=now)
    evaluation.rules_evaluate_scheduled(now=now + timedelta(hours=1))

    alert = Alert.objects.get(rule=velocity)
    assert (alert.level, alert.status) == ("rising", "open")
    assert alert.evidence["recent_daily_rate"] == "25.000"
    assert alert.evidence["baseline_daily_rate"] == "10.000"
    assert ExpansionSignal.objects.get(alert=alert).kind == "fast_growth"
    assert alert.deliveries.filter(event="alert.triggered").count() == 1

    # A week later the last 7 days are back to 10 a day (the 25s are in the baseline now).
    later = now + timedelta(days=7)
    usage(customer, days_before(today + timedelta(days=7), [10] * 7), later)
    evaluation.rules_evaluate_scheduled(now=later)

    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert "Back within 2x" in alert.resolution
    resolved = alert.deliveries.get(event="alert.resolved")
    assert resolved.channel == "slack"


@pytest.mark.django_db
def test_velocity_ignores_tiny_volumes_and_falls_are_their_own_level(customer, data):
    tiny = rule(customer, data, "velocity", factor=Decimal(2), min_volume=Decimal(5))
    today = date(2026, 11, 20)
    now = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    usage(customer, days_before(today, [1] * 28 + [4] * 7), now)  # 4x, but under 5 a day
    evaluation.rules_evaluate_scheduled(now=now)
    assert not Alert.objects.filter(rule=tiny).exists()

    tiny.min_volume = Decimal(0)
    tiny.save()
    evaluation.rules_evaluate_scheduled(now=now)
    assert list(Alert.objects.filter(rule=tiny).values_list("level", flat=True)) == ["rising"]


@pytest.mark.django_db
def test_a_falling_rate_fires_falling(customer, data):
    falling = rule(customer, data, "velocity", factor=Decimal(2))
    today = date(2026, 11, 20)
    now = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    usage(customer, days_before(today, [40] * 28 + [10] * 7), now)
    evaluation.rules_evaluate_scheduled(now=now)
    alert = Alert.objects.get(rule=falling)
    assert alert.level == "falling"
    assert not ExpansionSignal.objects.exists()


# --- Anomaly ---------------------------------------------------------------------------------


def weekly(weeks: int, end: date, weekday_value, weekend_value, wobble=(0, 3, -2, 1, -1)):
    """``weeks`` of history ending the day before ``end``: busy weekdays, quiet weekends."""
    values = {}
    for i in range(weeks * 7):
        day = end - timedelta(days=weeks * 7 - i)
        base = weekend_value if day.weekday() >= 5 else weekday_value
        values[day] = base + wobble[i % len(wobble)]
    return values


@pytest.mark.django_db
def test_anomaly_is_weekday_aware_fires_once_and_resolves_with_a_notice(customer, data):
    anomaly = rule(customer, data, "anomaly", sensitivity=Decimal(6), min_volume=Decimal(1))
    sunday = date(2026, 11, 22)  # evaluating on Sunday: Saturday the 21st is "yesterday"
    history = weekly(8, sunday, weekday_value=100, weekend_value=10)
    history[date(2026, 11, 21)] = 100  # a weekday's volume on a Saturday
    now = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    usage(customer, history, now)

    evaluation.rules_evaluate_scheduled(now=now)
    evaluation.rules_evaluate_scheduled(now=now + timedelta(hours=2))

    alert = Alert.objects.get(rule=anomaly)
    assert (alert.level, alert.severity) == ("2026-11-21", "critical")
    assert alert.evidence["direction"] == "spike"
    assert Decimal(alert.evidence["baseline_median"]) < 20  # Saturdays, not the week

    # Sunday turns out normal: on Monday the anomaly resolves, with a notice.
    monday = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    usage(customer, {date(2026, 11, 22): 11}, monday)
    evaluation.rules_evaluate_scheduled(now=monday)
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert alert.deliveries.filter(event="alert.resolved").count() == 1
    assert Alert.objects.filter(rule=anomaly).count() == 1


@pytest.mark.django_db
def test_a_normal_weekday_is_no_anomaly(customer, data):
    anomaly = rule(customer, data, "anomaly", sensitivity=Decimal(6))
    tuesday = date(2026, 11, 24)
    usage(customer, weekly(8, tuesday, 100, 10), datetime(2026, 11, 24, 1, tzinfo=UTC))
    evaluation.rules_evaluate_scheduled(now=datetime(2026, 11, 24, 1, tzinfo=UTC))
    assert not Alert.objects.filter(rule=anomaly).exists()


@pytest.mark.django_db
def test_a_runaway_day_is_caught_before_it_ends(customer, data):
    anomaly = rule(customer, data, "anomaly", sensitivity=Decimal(6))
    tuesday = date(2026, 11, 24)
    history = weekly(8, tuesday, 100, 10)
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    history[tuesday] = 0
    usage(customer, history, now)
    batch = [event(customer, "runaway", name="data_processed", ts="2026-11-24T08:00:00Z", gb="900")]
    events_ingest(events=batch, now=now)

    evaluation.rules_evaluate_scheduled(now=now)

    alert = Alert.objects.get(rule=anomaly)
    assert alert.level == "2026-11-24"
    assert alert.evidence["complete_day"] is False


# --- Predictive ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_predictive_fires_when_a_near_level_is_likely_and_not_for_a_far_one(customer, data):
    now = datetime(2026, 11, 10, 6, 0, tzinfo=UTC)
    # Steady 100 GB a day; November so far (9 days) is 900 GB.
    usage(customer, days_before(date(2026, 11, 10), [100] * 40), now)
    near = rule(
        customer,
        data,
        "predictive",
        levels=[Decimal(1500)],
        confidence=Decimal("0.8"),
        within_days=14,
    )
    far = rule(
        customer,
        data,
        "predictive",
        levels=[Decimal(50000)],
        confidence=Decimal("0.8"),
        within_days=14,
    )

    evaluation.rules_evaluate_scheduled(now=now)
    evaluation.rules_evaluate_scheduled(now=now + timedelta(minutes=15))

    alert = Alert.objects.get(rule=near)
    assert alert.level == "1500"
    assert Decimal(alert.evidence["probability"]) >= Decimal("0.8")
    assert alert.title.startswith(
        f"{Decimal(alert.evidence['probability']):.0%} likely to pass 1,500 GB"
    )
    assert not Alert.objects.filter(rule=far).exists()

    # Once the level is reached the prediction is over: it resolves quietly.
    later = now + timedelta(days=7)
    usage(customer, days_before(date(2026, 11, 17), [100] * 7), later)
    evaluation.rules_evaluate_scheduled(now=later)
    alert.refresh_from_db()
    assert (alert.status, alert.resolution) == ("resolved", "The level was reached.")
    assert not alert.deliveries.filter(event="alert.resolved").exists()


@pytest.mark.django_db
def test_a_rule_that_fails_does_not_stop_the_others(customer, data, monkeypatch):
    broken = rule(customer, data, "velocity")
    working = rule(customer, data, "velocity")
    now = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    usage(customer, days_before(date(2026, 11, 20), [10] * 28 + [30] * 7), now)
    real = evaluation._velocity

    def velocity(rule, subjects):
        if rule.pk == broken.pk:
            raise RuntimeError("boom")
        return real(rule, subjects)

    monkeypatch.setitem(evaluation._SCHEDULED, "velocity", velocity)
    assert evaluation.rules_evaluate_scheduled(now=now) == 1
    assert Alert.objects.filter(rule=working).exists()
    assert not Delivery.objects.filter(alert__rule=broken).exists()


@pytest.mark.django_db
def test_predictive_odds_stop_at_the_periods_end_and_use_history_from_before_signing_up(
    customer_a, data
):
    # The account was opened here today, with its usage history brought along.
    customer_a.timezone = "UTC"
    customer_a.save()
    now = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # 4 days of November left
    usage(customer_a, days_before(date(2026, 11, 27), [100] * 40), now)
    # 2,600 by now; at 100 a day the period ends near 3,000: 3,300 is out of reach in the
    # 4 days left, though a 14-day horizon would pass it.
    far = rule(customer_a, data, "predictive", levels=[Decimal(3300)], confidence=Decimal("0.5"))
    near = rule(customer_a, data, "predictive", levels=[Decimal(2800)], confidence=Decimal("0.8"))
    evaluation.rules_evaluate_scheduled(now=now)
    assert not Alert.objects.filter(rule=far).exists()
    alert = Alert.objects.get(rule=near)
    assert alert.evidence["within_days"] == 4
    assert "within 4 days" in alert.title

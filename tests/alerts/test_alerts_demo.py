"""Demo guardrails: caps, rules of every kind and endpoints through the services, and the
alerts, deliveries and signals the demo's usage really triggers, replayed through the real
engine; every delivery a recorded dry run; deterministic and idempotent.

The seed runs on a handful of the demo's customers (the real accounts seed, so the real
contacts) with three months of usage and their billing, at a fixed ``now``, like
``tests/invoicing/test_demo.py``.
"""

import io
import random
import socket
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import call_command
from django.db.models import Count

import alerts.channels
from accounts.management.commands.seed_demo import SEED
from accounts.models import AuditLog, Contact, Customer, Persona
from alerts import demo
from alerts.models import (
    Alert,
    AlertRule,
    Cap,
    Delivery,
    DeliveryAttempt,
    ExpansionSignal,
    PlanCapDefault,
    WebhookEndpoint,
    WebhookSecret,
)
from alerts.selectors.forecasts import meter_forecast
from alerts.services import endpoint_create
from alerts.services.evaluation import MAD_TO_SIGMA, Subjects
from alerts.services.outbox import PERSONA_CHANNELS
from invoicing import selectors as invoicing
from invoicing.currency import from_minor
from invoicing.demo import seed_billing
from invoicing.models import Invoice
from invoicing.periods import period_bounds, period_index_at
from invoicing.rating import usage_amount
from metering import hooks
from metering import selectors as metering
from metering.demo import seed_usage
from metering.ingest import FUTURE_TOLERANCE
from tests.alerts.receivers import Receiver

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 20, 15, 30, tzinfo=UTC)
MONTHS = 3
# Northwind (the demo login, Growth), an Enterprise account in INR, Self-serve in SEK, EUR
# and USD (the plan with the operator's defaults), Growth in USD, AUD and JPY.
CUSTOMERS = [
    "acct-northwind-traders",
    "acct-alder-finch",
    "acct-bluebird-payments",
    "acct-brightwater-studios",
    "acct-cobalt-manufacturing",
    "acct-fjord-analytics",
    "acct-sakura-devices",
    "acct-umbra-games",
    "acct-yarrow-fintech",
]
CHANNEL_FIELDS = {
    "email": "email",
    "slack": "slack_webhook_url",
    "teams": "teams_webhook_url",
    "webhook": "webhook_url",
}


@pytest.fixture
def customers(settings):
    settings.ALERTS_OUTBOUND_DRY_RUN = True
    call_command("seed_demo", stdout=io.StringIO())  # accounts only: DEMO_SEEDERS is empty
    chosen = list(Customer.objects.filter(external_id__in=CUSTOMERS).order_by("external_id"))
    assert len(chosen) == len(CUSTOMERS)
    seed_usage(io.StringIO(), random.Random(SEED), customers=chosen, months=MONTHS, now=NOW)
    seed_billing(io.StringIO(), random.Random(SEED), customers=chosen, months=MONTHS, now=NOW)
    return chosen


def seed(customers, now=NOW):
    out = io.StringIO()
    counts = demo.seed_alerts(out, random.Random(SEED), customers=customers, now=now)
    return counts, out.getvalue()


def snapshot():
    return {
        "caps": list(Cap.objects.order_by("pk").values_list("pk", "limit", "plan_default")),
        "rules": list(AlertRule.objects.order_by("pk").values_list("pk", "levels", "enabled")),
        "plan caps": PlanCapDefault.objects.count(),
        "endpoints": list(WebhookEndpoint.objects.order_by("pk").values_list("pk", "url")),
        "secrets": WebhookSecret.objects.count(),
        "alerts": list(
            Alert.objects.order_by("pk").values_list("pk", "status", "resolved_at", "evidence")
        ),
        "deliveries": list(Delivery.objects.order_by("pk").values_list("pk", "status")),
        "attempts": DeliveryAttempt.objects.count(),
        "signals": ExpansionSignal.objects.count(),
        "audit": AuditLog.objects.count(),
    }


# --- Checking that an alert is what the usage says ---------------------------------------------


def _local_midnight(moment: datetime, zone: ZoneInfo) -> datetime:
    day = moment.astimezone(zone).date()
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _daily(customer, meter, end: datetime, days: int) -> list[Decimal]:
    """The ``days`` complete local days before ``end`` (a local midnight), oldest first."""
    points = metering.usage_series(
        customer=customer, meter=meter, start=end - timedelta(days=days), end=end, granularity="day"
    )
    assert len(points) == days
    return [p.value or Decimal(0) for p in points]


def assert_threshold_is_real(alert: Alert) -> None:
    rule, evidence, level = alert.rule, alert.evidence, Decimal(alert.level)
    assert evidence["level"] == alert.level
    assert Decimal(evidence["value"]) >= level, alert
    if alert.meter is None:
        # Total spend is read on the open period: only asked at ``now``.
        assert alert.triggered_at == NOW
        upcoming = invoicing.upcoming_invoice(customer=alert.customer, now=NOW)
        spend = from_minor(upcoming.total_minor, upcoming.currency)
        assert Decimal(evidence["spend"]) == spend >= level
        return
    # The usage the alert names is the period's usage as of its moment, none later.
    as_of = min(alert.period_end, alert.triggered_at + FUTURE_TOLERANCE)
    usage = metering.usage_total(
        customer=alert.customer, meter=alert.meter, start=alert.period_start, end=as_of
    )
    assert Decimal(evidence["usage"]) == usage, alert
    priced = invoicing.meter_price(customer=alert.customer, meter=alert.meter)
    if rule.basis == "units":
        assert usage >= level
        # Fired when it was crossed: an hour earlier the usage was below the level.
        hour_before = alert.triggered_at - timedelta(hours=1)
        if hour_before > alert.period_start:
            earlier = metering.usage_total(
                customer=alert.customer,
                meter=alert.meter,
                start=alert.period_start,
                end=hour_before,
            )
            assert earlier < level, alert
    elif rule.basis == "money":
        assert Decimal(evidence["spend"]) == usage_amount(priced.price, usage) >= level
    elif rule.basis == "percent_included":
        assert Decimal(evidence["reference"]) == priced.price.included_units
        assert usage * 100 >= level * priced.price.included_units
    else:
        assert rule.basis == "percent_cap"
        cap = Subjects(alert.triggered_at).cap_units(alert.customer, alert.meter)
        assert Decimal(evidence["reference"]) == cap == Decimal(evidence["cap_units"])
        assert usage * 100 >= level * cap


def assert_velocity_is_real(alert: Alert) -> None:
    rule, evidence = alert.rule, alert.evidence
    zone = ZoneInfo(alert.customer.timezone)
    days = _daily(
        alert.customer,
        alert.meter,
        _local_midnight(alert.triggered_at, zone),
        rule.recent_days + rule.baseline_days,
    )
    recent = sum(days[-rule.recent_days :]) / rule.recent_days
    baseline = sum(days[: rule.baseline_days]) / rule.baseline_days
    assert evidence["recent_daily_rate"] == str(recent.quantize(Decimal("0.001")))
    assert evidence["baseline_daily_rate"] == str(baseline.quantize(Decimal("0.001")))
    assert max(recent, baseline) >= rule.min_volume
    if alert.level == "rising":
        assert recent >= baseline * rule.factor
    else:
        assert alert.level == "falling" and recent * rule.factor <= baseline


def _day_total(alert: Alert, day: datetime, end: datetime | None = None) -> Decimal:
    """Usage from the local midnight ``day`` to the next one (or ``end``). Asked in UTC:
    metering reads whole hours from its hourly rollups, and those are UTC hours."""
    end = end or day + timedelta(days=1)
    return metering.usage_total(
        customer=alert.customer,
        meter=alert.meter,
        start=day.astimezone(UTC),
        end=end.astimezone(UTC),
    )


def assert_anomaly_is_real(alert: Alert) -> None:
    rule, evidence = alert.rule, alert.evidence
    zone = ZoneInfo(alert.customer.timezone)
    day = datetime.fromisoformat(evidence["day"]).replace(tzinfo=zone)
    value = _day_total(alert, day, None if evidence["complete_day"] else alert.triggered_at)
    assert Decimal(evidence["value"]) == value
    # Measured against the same weekday of the weeks before (robust: median and MAD).
    weeks = [_day_total(alert, day - timedelta(weeks=w)) for w in range(1, 9)]
    baseline = [v for v in weeks if v]
    if evidence["complete_day"] and len(baseline) >= 3:
        median = Decimal(statistics.median(baseline))
        mad = Decimal(statistics.median([abs(v - median) for v in baseline]))
        sigma = max(mad * MAD_TO_SIGMA, median / 10)
        assert evidence["baseline_median"] == str(median.quantize(Decimal("0.001")))
        assert evidence["robust_sigma"] == str(sigma.quantize(Decimal("0.001")))
    median = Decimal(evidence["baseline_median"])
    sigma = Decimal(evidence["robust_sigma"])
    score = (value - median) / sigma
    if evidence["direction"] == "spike":
        assert score >= rule.sensitivity
    else:
        assert score <= -rule.sensitivity
    assert max(value, median) >= rule.min_volume


def assert_predictive_is_real(alert: Alert) -> None:
    rule, evidence = alert.rule, alert.evidence
    units = Decimal(evidence["level_units"])
    forecast = meter_forecast(
        customer=alert.customer,
        meter=alert.meter,
        now=alert.triggered_at,
        level=units,
        within_days=rule.within_days,
    )
    probability = Decimal(str(round(forecast.crossing.probability, 3)))
    assert Decimal(evidence["probability"]) == probability >= rule.confidence
    assert Decimal(evidence["usage"]) < units


def assert_alert_is_real(alert: Alert) -> None:
    assert alert.rule is not None and alert.customer_id == alert.rule.customer_id
    assert alert.period_start <= alert.triggered_at <= NOW
    assert alert.triggered_at < alert.period_end
    period = metering.current_period(alert.customer, alert.triggered_at)
    assert (alert.period_start, alert.period_end) == (period.start, period.end)
    if alert.status == Alert.Status.RESOLVED:
        assert alert.triggered_at <= alert.resolved_at <= NOW
    {
        "threshold": assert_threshold_is_real,
        "velocity": assert_velocity_is_real,
        "anomaly": assert_anomaly_is_real,
        "predictive": assert_predictive_is_real,
    }[alert.kind](alert)


def assert_signal_is_real(signal: ExpansionSignal) -> None:
    alert = signal.alert
    assert alert is not None and alert.customer_id == signal.customer_id
    if signal.kind == ExpansionSignal.Kind.FAST_GROWTH:
        assert (alert.kind, alert.level) == ("velocity", "rising")
    elif signal.kind == ExpansionSignal.Kind.TIER_TRENDING:
        assert alert.rule.basis in ("percent_included", "percent_commitment")
        assert Decimal(alert.level) >= 100
    else:
        assert signal.kind == ExpansionSignal.Kind.CAP_PRESSURE
        assert alert.rule.basis == "percent_cap" and Decimal(alert.level) >= 100
        earlier = Alert.objects.filter(rule=alert.rule, period_end__lte=alert.period_start)
        assert any(Decimal(a.level) >= 100 for a in earlier)


# --- Tests -------------------------------------------------------------------------------------


def test_every_persona_has_contacts_reachable_on_its_channels():
    call_command("seed_demo", stdout=io.StringIO())

    for persona in Persona.values:
        contacts = list(Contact.objects.filter(persona=persona))
        assert contacts, persona
        # Someone of the persona is on a channel alerts reach that persona on.
        preferred = [CHANNEL_FIELDS[channel] for channel in PERSONA_CHANNELS[persona]]
        assert any(getattr(c, name) for c in contacts for name in preferred), persona
        for contact in contacts:
            addresses = [getattr(contact, name) for name in CHANNEL_FIELDS.values()]
            assert any(addresses), contact
            for address in filter(None, addresses):
                host = address.rpartition("@")[2] if "@" in address else urlsplit(address).hostname
                # Made-up addresses under a reserved name: nothing could ever be sent there.
                assert host.endswith(".example"), address
                assert "@" in address or address.startswith("https://")
    developers = Contact.objects.filter(persona=Persona.DEVELOPER)
    for name in ("slack_webhook_url", "teams_webhook_url", "webhook_url"):
        assert developers.exclude(**{name: ""}).exists(), name


def test_guardrails_of_every_kind_are_set_through_the_services(customers):
    counts, out = seed(customers)

    # Caps: units and spend, refusing and flagging, and one from the plan's default.
    caps = Cap.objects.select_related("customer", "meter")
    assert {c.measure for c in caps} == {"units", "money"}
    assert {c.on_exceed for c in caps} == {"reject", "flag"}
    money = caps.get(measure="money", meter__isnull=False)
    assert invoicing.meter_price(customer=money.customer, meter=money.meter) is not None
    total = caps.get(meter__isnull=True)  # Northwind's cap on its whole usage bill
    assert (total.measure, total.on_exceed) == ("money", "flag")
    assert caps.filter(plan_default__isnull=False).exists()
    for cap in caps.filter(on_exceed="reject"):
        # Generous: the demo's own usage is never refused.
        latest = metering.current_period(cap.customer, NOW)
        used = metering.usage_total(
            customer=cap.customer, meter=cap.meter, start=latest.start, end=NOW
        )
        assert used < cap.limit / 2

    # Rules of every kind, on every basis the brief names, and total spend.
    rules = AlertRule.objects.filter(customer__isnull=False)
    assert set(rules.values_list("kind", flat=True)) == set(AlertRule.Kind.values)
    thresholds = rules.filter(kind="threshold")
    assert {"units", "money", "percent_included", "percent_cap"} <= set(
        thresholds.values_list("basis", flat=True)
    )
    assert thresholds.filter(meter__isnull=True, basis="money").exists()
    # Most customers set guardrails of their own.
    own = set(rules.filter(plan_default__isnull=True).values_list("customer_id", flat=True))
    assert len(own) > len(customers) / 2
    northwind = Customer.objects.get(external_id="acct-northwind-traders")
    assert set(rules.filter(customer=northwind).values_list("kind", flat=True)) == set(
        AlertRule.Kind.values
    )

    # A predictive level means something: a little above the last billed period's usage.
    for rule in rules.filter(kind="predictive").select_related("customer", "meter"):
        last = Invoice.objects.filter(customer=rule.customer).order_by("-period_start").first()
        billed = metering.usage_total(
            customer=rule.customer, meter=rule.meter, start=last.period_start, end=last.period_end
        )
        assert billed < rule.levels[0] <= billed * Decimal("1.3"), rule.customer
        assert (rule.confidence, rule.within_days) == (Decimal("0.8"), 14)

    # The operator's defaults for a self-serve plan, copied onto each of its subscribers.
    template = AlertRule.objects.get(plan__isnull=False)
    default_cap = PlanCapDefault.objects.get()
    assert template.plan == default_cap.plan and template.plan.code == "self-serve-usd"
    subscribers = {
        c.pk
        for c in customers
        if invoicing.subscription_current(customer=c).plan_version.plan == template.plan
    }
    assert len(subscribers) == 2
    assert set(template.copies.values_list("customer_id", flat=True)) == subscribers
    assert set(default_cap.caps.values_list("customer_id", flat=True)) == subscribers

    # Webhook endpoints at the customers' own (made-up) hosts, each with a signing secret.
    endpoints = WebhookEndpoint.objects.filter(contact__isnull=True).select_related("customer")
    assert endpoints.count() == 2
    for endpoint in endpoints:
        domain = endpoint.customer.billing_email.rpartition("@")[2]
        assert endpoint.url.startswith(f"https://hooks.{domain}/meterbook")
        assert endpoint.secrets.exists()

    # Through the services: every change is audited.
    audited = dict(AuditLog.objects.values_list("action").annotate(n=Count("id")))
    assert audited["cap.set"] >= Cap.objects.filter(plan_default__isnull=True).count()
    assert audited["alert_rule.created"] == AlertRule.objects.count()
    assert audited["plan_cap_default.set"] == 1
    assert audited["webhook_endpoint.created"] == 2
    assert counts["caps"] == Cap.objects.count() and counts["rules"] == AlertRule.objects.count()
    assert out.startswith("seed_alerts: ") and f"{counts['alerts']} alerts" in out


def test_the_alerts_and_signals_are_what_the_usage_really_triggered(customers):
    seed(customers)

    alerts = list(Alert.objects.select_related("customer", "meter", "rule"))
    assert len(alerts) >= 15
    kinds = {a.kind for a in alerts}
    assert {"threshold", "velocity", "anomaly"} <= kinds
    for alert in alerts:
        assert_alert_is_real(alert)
    # History from before today: replayed at the moments they happened, not all at once.
    assert len({a.triggered_at.date() for a in alerts}) >= 5
    assert Alert.objects.filter(status="resolved").exists()
    assert Alert.objects.filter(status="open").exists()

    signals = list(ExpansionSignal.objects.select_related("alert__rule"))
    assert {s.kind for s in signals} >= {"tier_trending", "fast_growth"}
    for signal in signals:
        assert_signal_is_real(signal)


def test_every_delivery_is_a_recorded_dry_run_and_nothing_leaves(customers, monkeypatch):
    calls = []

    def outbound(name):
        def refuse(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} reached in a dry run")

        return refuse

    for name in ("send_webhook", "send_slack", "send_teams", "send_email", "safe_post"):
        monkeypatch.setattr(alerts.channels, name, outbound(name))
    looked_up = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    northwind = Customer.objects.get(external_id="acct-northwind-traders")
    with Receiver() as receiver:
        # A receiver that would see anything actually sent.
        loopback = endpoint_create(actor=None, customer=northwind, url=receiver.url("/alerts"))
        seed(customers)
        assert receiver.requests == []

    deliveries = Delivery.objects.select_related("alert")
    assert deliveries.count() >= 20
    assert {"webhook", "email"} <= {d.channel for d in deliveries}
    assert set(deliveries.values_list("event", flat=True)) == {"alert.triggered", "alert.resolved"}
    assert deliveries.filter(endpoint=loopback).exists()
    for delivery in deliveries:
        assert delivery.status == Delivery.Status.SKIPPED, delivery
        (attempt,) = delivery.attempt_log.all()
        assert (attempt.status, attempt.error_code) == ("refused", "dry_run")
        # Attempted at the alert's moment, as the sweep would have then.
        assert attempt.attempted_at == delivery.created_at
        moment = (
            delivery.alert.triggered_at
            if delivery.event == "alert.triggered"
            else delivery.alert.resolved_at
        )
        assert delivery.created_at == moment
        assert delivery.persona in delivery.alert.audience
    assert calls == []
    assert not [host for host in looked_up if str(host).endswith(".example")]
    assert mail.outbox == []


def test_the_seed_refuses_without_dry_run_and_a_second_run_creates_nothing(customers, settings):
    settings.ALERTS_OUTBOUND_DRY_RUN = False
    counts, out = seed(customers)
    assert counts == {} and "skipped" in out and "ALERTS_OUTBOUND_DRY_RUN" in out
    assert not Cap.objects.exists() and not AlertRule.objects.exists()

    settings.ALERTS_OUTBOUND_DRY_RUN = True
    first, _ = seed(customers)
    assert first["alerts"] and first["deliveries"] and first["signals"]
    before = snapshot()

    again, out = seed(customers)

    assert snapshot() == before
    assert not any(again.values()), again
    assert "nothing new" in out


def test_a_later_run_evaluates_only_the_present(customers):
    seed(customers)
    before = {a.pk: (a.status, a.resolved_at) for a in Alert.objects.all()}

    later = NOW + timedelta(hours=6)
    seed(customers, now=later)

    # What had happened stays as it was; anything new is the engine's at the later moment.
    for alert in Alert.objects.all():
        if alert.pk in before:
            status, resolved_at = before[alert.pk]
            if alert.resolved_at != resolved_at:
                assert status == "open" and alert.resolved_at == later
        else:
            assert alert.triggered_at == later


def test_with_past_billing_periods_known_the_replay_reaches_the_previous_period(customers):
    def past_periods(customer, now):
        """Billing periods before the open one (invoicing's hook answers the open one)."""
        subscription = invoicing.subscription_current(customer=customer)
        if subscription is None or not subscription.started_at <= now < subscription.billed_through:
            return None
        anchor, interval = subscription.billing_anchor, subscription.interval
        start, end = period_bounds(anchor, interval, period_index_at(anchor, interval, now))
        return max(start, subscription.started_at), end

    hooks.register_billing_period(past_periods)
    try:
        seed(customers)
        alerts = list(Alert.objects.select_related("customer", "meter", "rule"))
        for alert in alerts:
            assert_alert_is_real(alert)
    finally:
        hooks.unregister(past_periods)

    earlier = [a for a in alerts if a.period_end <= NOW]
    assert len(earlier) >= 10
    # A threshold crossed in a period that has ended is over with it.
    for alert in earlier:
        if alert.kind == "threshold":
            assert alert.status == "resolved" and alert.resolved_at >= alert.period_end


def test_the_demo_seeds_alerts_after_billing_and_never_sends_them():
    from billing_project.settings import base, development

    seeders = base.DEMO_SEEDERS
    assert seeders[-1] == "alerts.demo.seed_alerts"
    assert seeders.index("invoicing.demo.seed_billing") < seeders.index("alerts.demo.seed_alerts")
    assert development.ALERTS_OUTBOUND_DRY_RUN is True

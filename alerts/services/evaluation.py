"""Firing and resolving alerts: thresholds as usage lands, the rest on a schedule.

Thresholds are checked right after an ingest commits, for the (customer, meter) pairs it
touched (metering's usage-recorded hook hands them to a worker), and again by a scheduled
backstop that catches anything a lost task or a crashed worker missed. Velocity, anomaly
and predictive rules run on Beat.

An alert is unique per (rule, period, level) in the database: however many workers and
sweeps see the same crossing, one alert exists and one set of deliveries is queued — in
the alert's own transaction (the outbox), so a committed alert always has them.
"""

import logging
import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import Customer
from metering import selectors as metering
from metering.models import Meter

from .. import messages
from ..models import Alert, AlertRule, Delivery
from ..selectors.forecasts import meter_forecast
from . import outbox, signals
from .subjects import Subjects

logger = logging.getLogger(__name__)

Kind = AlertRule.Kind
Basis = AlertRule.Basis
# A predictive alert resolves once the odds fall this far below its confidence, so odds
# hovering at the line do not open and close it every hour.
PREDICTIVE_HYSTERESIS = Decimal("0.10")
# Anomalies compare a day with the same weekday over this many weeks (robust: median/MAD).
ANOMALY_WEEKS = 8
ANOMALY_MIN_SAME_WEEKDAYS = 3
MAD_TO_SIGMA = Decimal("1.4826")  # a normal distribution's sigma is 1.4826 MAD


def level_key(level: Decimal) -> str:
    """A level as stored on its alert: '50000', '80', '12.5' (no exponent, no padding)."""
    return messages.plain(level)


# --- Firing -------------------------------------------------------------------------------


def _fire(
    rule: AlertRule,
    *,
    period: metering.Period,
    level: str,
    severity: str,
    title: str,
    summary: str,
    evidence: dict,
    now: datetime,
    deliver: bool = True,
    wake: bool = True,
) -> Alert | None:
    """Insert the alert unless this (rule, period, level) fired already, and queue its
    deliveries in the same transaction. ``None`` when it had fired (the unique constraint
    decides: a concurrent insert waits for the first to commit, then fails here)."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    customer=rule.customer,
                    rule=rule,
                    kind=rule.kind,
                    meter=rule.meter,
                    period_start=period.start,
                    period_end=period.end,
                    level=level,
                    severity=severity,
                    title=title[:200],
                    summary=summary,
                    evidence=evidence,
                    audience=list(rule.audience),
                    triggered_at=now,
                )
        except IntegrityError:
            return None
        if deliver:
            outbox.deliveries_queue(alert, event=outbox.TRIGGERED, now=now, wake=wake)
        signals.expansion_signal_for(alert, rule=rule, now=now)
    return alert


def _resolve(alert: Alert, *, reason: str, now: datetime, notify: bool) -> bool:
    """Close an open alert (once: a concurrent resolution finds it resolved)."""
    with transaction.atomic():
        updated = Alert.objects.filter(pk=alert.pk, status=Alert.Status.OPEN).update(
            status=Alert.Status.RESOLVED, resolved_at=now, resolution=reason[:200]
        )
        if updated and notify:
            alert.status, alert.resolved_at, alert.resolution = (
                Alert.Status.RESOLVED,
                now,
                reason[:200],
            )
            outbox.deliveries_queue(alert, event=outbox.RESOLVED, now=now)
    return bool(updated)


# --- Thresholds -----------------------------------------------------------------------------


def _threshold_rules(pairs: set[tuple[int, int]] | None):
    rules = AlertRule.objects.filter(
        kind=Kind.THRESHOLD, enabled=True, customer__isnull=False
    ).select_related("customer", "meter")
    if pairs is None:
        return list(rules)
    customers = {c for c, _ in pairs}
    meters = {m for _, m in pairs}
    candidates = rules.filter(customer_id__in=customers).filter(
        Q(meter_id__in=meters) | Q(meter__isnull=True)
    )
    return [r for r in candidates if r.meter_id is None or (r.customer_id, r.meter_id) in pairs]


def thresholds_evaluate(
    pairs: set[tuple[int, int]] | None = None,
    *,
    now: datetime | None = None,
    send: bool = False,
) -> list[Alert]:
    """Fire every threshold level the customers' usage has reached this period and that
    has not fired yet; for ``pairs`` (customer id, meter id) only, or every rule. When one
    batch reaches several levels at once, each is recorded but only the highest is sent.
    With ``send`` (a worker), the new alerts' deliveries are sent here, after their commit,
    instead of being handed to other workers: one hop less from usage to the receiver."""
    now = now or timezone.now()
    rules = _threshold_rules(pairs)
    if not rules:
        return []
    subjects = Subjects(now)
    fired_before = _fired_levels(rules, subjects)
    fired = []
    for rule in rules:
        period = subjects.period(rule.customer)
        pending = [
            level
            for level in sorted(rule.levels)
            if level_key(level) not in fired_before.get((rule.pk, period.start), set())
        ]
        if not pending:
            continue
        position = subjects.position(rule)
        if position is None:
            continue
        reached = [level for level in pending if position.value >= level]
        for level in reached:
            highest = level == reached[-1]
            alert = _fire(
                rule,
                period=period,
                level=level_key(level),
                severity=messages.threshold_severity(rule, level),
                title=messages.threshold_title(rule, level, position.currency),
                summary=messages.threshold_summary(rule, level, position, period),
                evidence=messages.threshold_evidence(rule, level, position, period, subjects),
                now=now,
                deliver=highest,
                wake=not send,
            )
            if alert is not None:
                fired.append(alert)
    if send and fired:
        pending = Delivery.objects.filter(alert__in=fired, status=Delivery.Status.PENDING)
        for delivery_id in pending.values_list("pk", flat=True):
            outbox.delivery_send(delivery_id)
    return fired


def _fired_levels(rules: list[AlertRule], subjects: Subjects) -> dict:
    """(rule id, period start) -> level keys already fired: one query for all rules."""
    starts = {subjects.period(rule.customer).start for rule in rules}
    found = defaultdict(set)
    for rule_id, start, level in Alert.objects.filter(
        rule__in=rules, period_start__in=starts
    ).values_list("rule_id", "period_start", "level"):
        found[(rule_id, start)].add(level)
    return found


def on_usage_recorded(pairs: set[tuple[int, int]]) -> None:
    """Metering's usage-recorded hook: as soon as an ingest commits, a worker checks the
    thresholds of what it touched (the request does not wait for it). With the broker
    down the request checks them itself, so an outage delays nothing but the sending."""
    from ..tasks import thresholds_evaluate as task

    try:
        task.apply_async((sorted(pairs),), retry=False)
    except (OperationalError, OSError):
        logger.warning("could not enqueue the threshold check; checking in the request")
        thresholds_evaluate(pairs)


# --- Daily series for velocity and anomaly ---------------------------------------------------


def _daily(customer: Customer, meter: Meter, days: int, now: datetime) -> tuple[list, date]:
    """The last ``days`` complete days' usage in the customer's zone, oldest first, and
    today's date there."""
    zone = ZoneInfo(customer.timezone)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days)
    points = metering.usage_series(
        customer=customer,
        meter=meter,
        start=datetime(first.year, first.month, first.day, tzinfo=zone),
        end=datetime(today.year, today.month, today.day, tzinfo=zone),
        granularity="day",
    )
    return [p.value or Decimal(0) for p in points], today


def velocity(rule: AlertRule, series: list[Decimal]) -> tuple[str | None, Decimal, Decimal]:
    """(direction or None, recent daily rate, baseline daily rate) of the rule's last
    ``recent_days + baseline_days`` complete days, oldest first: 'rising' when the recent
    rate is up by the factor, 'falling' when down by it, ignoring volumes under the floor."""
    recent_days, baseline_days = rule.recent_days or 7, rule.baseline_days or 28
    recent = sum(series[-recent_days:], Decimal(0)) / recent_days
    baseline = sum(series[:baseline_days], Decimal(0)) / baseline_days
    factor = rule.factor or Decimal(2)
    busiest = max(recent, baseline)
    if busiest <= 0 or busiest < (rule.min_volume or Decimal(0)):
        return None, recent, baseline
    if recent >= baseline * factor:
        return "rising", recent, baseline
    if recent * factor <= baseline:
        return "falling", recent, baseline
    return None, recent, baseline


def _velocity(rule: AlertRule, subjects: Subjects) -> None:
    now = subjects.now
    recent_days, baseline_days = rule.recent_days or 7, rule.baseline_days or 28
    series, today = _daily(rule.customer, rule.meter, recent_days + baseline_days, now)
    direction, recent, baseline = velocity(rule, series)
    factor = rule.factor or Decimal(2)
    period = subjects.period(rule.customer)
    for alert in Alert.objects.filter(rule=rule, status=Alert.Status.OPEN):
        if alert.level != direction:
            _resolve(
                alert,
                reason=messages.velocity_resolution(rule, recent, baseline),
                now=now,
                notify=True,
            )
    if direction is None:
        return
    evidence = {
        "meter": rule.meter.code,
        "recent_days": recent_days,
        "baseline_days": baseline_days,
        "recent_daily_rate": str(recent.quantize(Decimal("0.001"))),
        "baseline_daily_rate": str(baseline.quantize(Decimal("0.001"))),
        "factor": str(factor),
        "ratio": None if not baseline else str((recent / baseline).quantize(Decimal("0.01"))),
        "as_of": today.isoformat(),
    }
    _fire(
        rule,
        period=period,
        level=direction,
        severity=Alert.Severity.WARNING,
        title=messages.velocity_title(rule, direction),
        summary=messages.velocity_summary(rule, direction, recent, baseline),
        evidence=evidence,
        now=now,
    )


def anomaly_baseline(history: list[Decimal]) -> list[Decimal]:
    """What a day is compared with, from the complete days before it (oldest first, the
    last is the day before): the same weekday of earlier weeks, or the last 28 days for a
    young account; days without usage are not a baseline."""
    weekly = history[len(history) - 7 :: -7] if len(history) >= 7 else []
    same_weekday = [v for v in weekly if v]
    if len(same_weekday) >= ANOMALY_MIN_SAME_WEEKDAYS:
        return same_weekday
    return [v for v in history[-28:] if v]


def robust_band(values: list[Decimal]) -> tuple[Decimal, Decimal]:
    """(median, robust sigma): 1.4826 x the median absolute deviation, floored at a tenth of
    the median so a perfectly regular history does not make every wobble an anomaly."""
    median = Decimal(statistics.median(values))
    mad = Decimal(statistics.median([abs(v - median) for v in values]))
    return median, max(mad * MAD_TO_SIGMA, median / 10, Decimal("1e-9"))


def _anomaly(rule: AlertRule, subjects: Subjects) -> None:
    """Yesterday against the same weekday of the previous weeks (the whole recent month
    for a new account); today so far, too, when it already runs far above a whole day."""
    now = subjects.now
    series, today = _daily(rule.customer, rule.meter, ANOMALY_WEEKS * 7 + 1, now)
    sensitivity = rule.sensitivity or Decimal(6)
    floor = rule.min_volume or Decimal(0)
    yesterday = today - timedelta(days=1)
    baseline = anomaly_baseline(series[:-1])
    period = subjects.period(rule.customer)
    candidates = [(yesterday, series[-1], True)]
    today_so_far = subjects.usage_today(rule.customer, rule.meter)
    candidates.append((today, today_so_far, False))
    open_alerts = list(Alert.objects.filter(rule=rule, status=Alert.Status.OPEN))
    if len(baseline) < ANOMALY_MIN_SAME_WEEKDAYS:
        return
    median, sigma = robust_band(baseline)
    yesterday_normal = abs(series[-1] - median) < sensitivity * sigma
    for alert in open_alerts:
        if alert.level < yesterday.isoformat() and yesterday_normal:
            _resolve(
                alert,
                reason=messages.anomaly_resolution(rule, yesterday, series[-1], median),
                now=now,
                notify=True,
            )
    for day, value, complete in candidates:
        if max(value, median) < floor:
            continue
        score = (value - median) / sigma
        spike = score >= sensitivity
        drop = complete and score <= -sensitivity
        if not (spike or drop):
            continue
        evidence = {
            "meter": rule.meter.code,
            "day": day.isoformat(),
            "value": str(value),
            "complete_day": complete,
            "baseline_median": str(median.quantize(Decimal("0.001"))),
            "robust_sigma": str(sigma.quantize(Decimal("0.001"))),
            "score": str(score.quantize(Decimal("0.1"))),
            "direction": "spike" if spike else "drop",
            "baseline_days": len(baseline),
        }
        _fire(
            rule,
            period=period,
            level=day.isoformat(),
            severity=Alert.Severity.CRITICAL if spike else Alert.Severity.WARNING,
            title=messages.anomaly_title(rule, day, spike),
            summary=messages.anomaly_summary(rule, day, value, median, complete, spike),
            evidence=evidence,
            now=now,
        )


def _predictive(rule: AlertRule, subjects: Subjects) -> None:
    now = subjects.now
    level = rule.levels[0] if rule.levels else None
    period = subjects.period(rule.customer)
    open_alerts = list(Alert.objects.filter(rule=rule, status=Alert.Status.OPEN))
    units = None if level is None else subjects.level_in_units(rule, level)
    confidence = rule.confidence or Decimal("0.8")
    # Usage starts again at the period's end: the odds are about what is left of it.
    zone = ZoneInfo(rule.customer.timezone)
    days_left = (period.end.astimezone(zone).date() - now.astimezone(zone).date()).days
    within = max(1, min(rule.within_days or 14, days_left))
    if units is None:
        return
    usage = subjects.usage(rule.customer, rule.meter)
    forecast = meter_forecast(
        customer=rule.customer, meter=rule.meter, now=now, level=units, within_days=within
    )
    probability = Decimal(str(round(forecast.crossing.probability, 3)))
    for alert in open_alerts:
        stale = alert.period_start != period.start
        if stale or probability < confidence - PREDICTIVE_HYSTERESIS or usage >= units:
            reason = (
                "The billing period ended."
                if stale
                else "The level was reached."
                if usage >= units
                else f"Now {probability:.0%} likely, below the {confidence:.0%} confidence."
            )
            _resolve(alert, reason=reason, now=now, notify=False)
    if usage >= units or probability < confidence:
        return
    crossing = forecast.crossing
    evidence = {
        "meter": rule.meter.code,
        "level": level_key(level),
        "basis": rule.basis,
        "level_units": level_key(units),
        "usage": level_key(usage),
        "probability": str(probability),
        "confidence": str(confidence),
        "within_days": within,
        "expected_crossing_date": (
            crossing.expected_date.isoformat() if crossing.expected_date else None
        ),
        "period_end": period.end.isoformat(),
        "band": messages.band_evidence(forecast),
    }
    _fire(
        rule,
        period=period,
        level=level_key(level),
        severity=Alert.Severity.WARNING,
        title=messages.predictive_title(rule, level, probability, within),
        summary=messages.predictive_summary(rule, level, units, probability, within, crossing),
        evidence=evidence,
        now=now,
    )


_SCHEDULED = {Kind.VELOCITY: _velocity, Kind.ANOMALY: _anomaly, Kind.PREDICTIVE: _predictive}


def rule_evaluate(rule: AlertRule, subjects: Subjects) -> None:
    """One velocity, anomaly or predictive rule at the subjects' moment, as Beat's pass
    evaluates each (the demo replays a customer's rules at chosen moments with it)."""
    _SCHEDULED[rule.kind](rule, subjects)


def rules_evaluate_scheduled(*, now: datetime | None = None) -> int:
    """Beat's pass: velocity, anomaly and predictive rules, the threshold backstop, and
    closing alerts whose billing period has ended. Safe to run twice: firing is once per
    (rule, period, level) and resolving is a conditional update. A rule that fails is
    logged and the others still run."""
    now = now or timezone.now()
    subjects = Subjects(now)
    rules = AlertRule.objects.filter(
        enabled=True, customer__isnull=False, kind__in=list(_SCHEDULED)
    ).select_related("customer", "meter")
    evaluated = 0
    for rule in rules:
        if rule.meter is None or not rule.meter.is_additive:
            continue
        try:
            rule_evaluate(rule, subjects)
            evaluated += 1
        except Exception:
            logger.exception("alert rule %s failed to evaluate", rule.pk)
    thresholds_evaluate(now=now)
    periods_ended_resolve(now=now)
    return evaluated


def periods_ended_resolve(*, now: datetime) -> int:
    """Threshold and predictive alerts of a period that has ended are over (quietly: the
    period's invoice says the rest)."""
    return Alert.objects.filter(
        status=Alert.Status.OPEN, period_end__lte=now, kind__in=[Kind.THRESHOLD, Kind.PREDICTIVE]
    ).update(status=Alert.Status.RESOLVED, resolved_at=now, resolution="The billing period ended.")

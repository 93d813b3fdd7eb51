"""Demo guardrails: caps, alert rules and webhook endpoints for most demo customers, and the
alerts, deliveries and expansion signals that their usage history really triggers.

Called by ``manage.py seed_demo`` through the ``DEMO_SEEDERS`` setting, after
``metering.demo.seed_usage`` and ``invoicing.demo.seed_billing`` (levels are drawn from the
usage they seeded and priced with the plans they subscribed). Everything goes through the
real services: caps through ``cap_set``, rules through ``rule_create``, an operator's
defaults for one plan through ``plan_cap_default_set`` / ``rule_create(plan=...)`` and
``plan_defaults_apply``, webhook endpoints through ``endpoint_create``. Nothing writes an
alert, a delivery or a signal: the engine does, replayed over the history.

The replay runs the real engine at past moments of the customer's current billing period
and the one before it, each moment seeing only the usage recorded by then: thresholds
(``thresholds_evaluate``) at the hours their levels were crossed (found from the usage
itself, so the engine is asked then and decides), velocity and anomaly rules at the first
Beat pass of the days their figures change, predictive rules once a week, the end of each
billing period (``periods_ended_resolve``) and ``deliveries_sweep`` after each moment, so
every delivery gets its attempt at the alert's time. Asking the engine only at the moments
that can matter (instead of every quarter hour of two months) keeps the seed to seconds; a
moment picked wrongly can only miss an alert, never invent one. (The engine places a moment
in its billing period through metering's billing-period hook; where the hook knows no
period for a past moment, the replay starts at the open period.) Then one Beat pass
(``rules_evaluate_scheduled``) and a sweep at ``now``. Total-spend rules are created after
the replay: total spend is measured on the subscription's open period
(``invoicing.selectors.upcoming_invoice``), which a past moment would misread.

Nothing is ever sent: the seed runs only with ``ALERTS_OUTBOUND_DRY_RUN`` on (the
development settings the demo runs with), which records each delivery as skipped with a
``dry_run`` attempt, and every address is under ``.example`` (reserved, never resolves).

Deterministic and idempotent: choices come from ``random.Random`` seeded from the caller's
``rng`` and the customer; caps are found by meter, rules and plan defaults by name,
endpoints by URL; alerts fire once per (rule, period, level). The history is replayed only
for customers that had no rules before this run (replaying moments already seen could
resolve today's alerts in the past); a rerun asks the engine at ``now`` only, as Beat would.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Customer
from invoicing import selectors as invoicing
from invoicing.currency import from_minor
from invoicing.models import Invoice
from invoicing.periods import period_bounds, period_index_at
from invoicing.rating import usage_amount
from metering import selectors as metering
from metering.demo import account_for
from metering.models import Meter

from .models import (
    Alert,
    AlertRule,
    Cap,
    Delivery,
    DeliveryAttempt,
    ExpansionSignal,
    PlanCapDefault,
    WebhookEndpoint,
)
from .services import cap_set, endpoint_create
from .services import evaluation as engine
from .services.outbox import SWEEP_BATCH, deliveries_sweep
from .services.plan_defaults import plan_cap_default_set, plan_defaults_apply
from .services.rules import rule_create
from .services.subjects import Subjects

API, DATA = "api_call", "data_processed"
METER_CODES = (API, DATA)
NORTHWIND = "acct-northwind-traders"  # the demo login: it shows every kind of guardrail

# The current billing period and the one before it (30 to 60 days): enough for cap
# pressure, a cap reached in two periods running.
REPLAY_PERIODS = 2
# Beat evaluates every 15 minutes; a daily rule sees a complete day at its first pass after
# the customer's midnight.
BEAT_PASS = timedelta(minutes=15)
PREDICTIVE_WEEKS = 2
DAY, HOUR, MICRO = timedelta(days=1), timedelta(hours=1), timedelta(microseconds=1)
# A share of the customers never set guardrails (and suspended ones do not bother).
WITHOUT_GUARDRAILS = 0.25
COUNT_LABELS = {
    "Cap": "caps",
    "AlertRule": "rules",
    "WebhookEndpoint": "webhook endpoints",
    "Alert": "alerts",
    "Delivery": "deliveries",
    "DeliveryAttempt": "delivery attempts",
    "ExpansionSignal": "signals",
}

# The operator's defaults for one self-serve plan.
PLAN_RULE = "API calls: included units used"
PLAN_CAP_UNITS = Decimal(1000)

# Rule names: how a rerun finds them.
CAP_RULE = "Data processed: share of the hard cap"
DATA_SPEND_RULE = "Data processing spend this period"
API_UNITS_RULE = "API calls this period"
INCLUDED_RULE = PLAN_RULE
VELOCITY_RULE = "API traffic surge or drop"
ANOMALY_RULE = "Data pipeline anomaly"
PREDICTIVE_RULE = "Data processed: on course to pass its level"
TOTAL_SPEND_RULE = "Total spend this period"

DEVELOPER, FINANCE, PROCUREMENT, EXECUTIVE = "developer", "finance", "procurement", "executive"


def _nice(value: Decimal) -> Decimal:
    """Two significant figures, as a person picks a level: 1578.5 -> 1600, 0.534 -> 0.53."""
    if value <= 0:
        return Decimal(0)
    exponent = value.adjusted() - 1
    rounded = value.scaleb(-exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    result = rounded.scaleb(exponent)
    return result.quantize(Decimal(1)) if exponent >= 0 else result.normalize()


@dataclass
class Recent:
    """A customer's usage and spend in its last complete billing period."""

    units: dict[str, Decimal] = field(default_factory=dict)
    low: dict[str, Decimal] = field(default_factory=dict)  # the lower of the last two periods
    spend: dict[str, Decimal] = field(default_factory=dict)
    last_invoice: Decimal | None = None  # the last billed invoice's total, major units


@dataclass
class Guardrails:
    """What one customer sets up: caps, rules (created before the replay) and total-spend
    rules (after it)."""

    caps: list[dict] = field(default_factory=list)
    rules: list[dict] = field(default_factory=list)
    after_replay: list[dict] = field(default_factory=list)
    endpoints: list[dict] = field(default_factory=list)


# --- Drawing each customer's guardrails -------------------------------------------------------


def _closed_periods(subscription, count: int) -> list[tuple[datetime, datetime]]:
    """The subscription's last ``count`` closed billing periods, newest first."""
    anchor, interval = subscription.billing_anchor, subscription.interval
    periods, end = [], subscription.billed_through
    while len(periods) < count and end > subscription.started_at:
        start, _ = period_bounds(anchor, interval, period_index_at(anchor, interval, end - MICRO))
        periods.append((max(start, subscription.started_at), end))
        end = start
    return periods


def _recent(customer: Customer, subscription, meters: dict[str, Meter], now) -> Recent:
    """Usage in the last closed period (the current one's pace before any), and its price."""
    current = (subscription.billed_through, subscription.current_period_end)
    closed = _closed_periods(subscription, 2)
    prices = invoicing.plan_version_terms(subscription.plan_version).prices
    recent = Recent()
    for code in METER_CODES:
        meter = meters[code]
        totals = metering.usage_totals(
            meter=meter,
            windows=[metering.UsageWindow(customer.pk, start, end) for start, end in closed],
        )
        units = totals[0] if totals else Decimal(0)
        if not units and current[0] < now:
            so_far = metering.usage_total(customer=customer, meter=meter, start=current[0], end=now)
            units = so_far * Decimal(str((current[1] - current[0]) / (now - current[0])))
        recent.units[code] = units
        recent.low[code] = min([units, *(t for t in totals if t)])
        if meter.pk in prices:
            recent.spend[code] = usage_amount(prices[meter.pk], units)
    invoice = (
        Invoice.objects.filter(customer=customer, status__in=Invoice.BILLED, total_minor__gt=0)
        .order_by("-period_start")
        .first()
    )
    if invoice is not None:
        recent.last_invoice = from_minor(invoice.total_minor, invoice.currency)
    return recent


def _roles(placements: list[tuple[Customer, str, str]]) -> dict[int, str]:
    """Give three customers a cap story each: a spend cap, a generous cap that refuses,
    and a cap set below the usage (hit every period: cap pressure for the account team)."""
    roles: dict[int, str] = {}
    wanted = [
        ("money", lambda tier, profile: tier == "growth"),
        ("reject", lambda tier, profile: tier == "enterprise"),
        ("pressure", lambda tier, profile: profile in ("steady", "seasonal", "spiky")),
    ]
    for role, fits in wanted:
        pool = [
            (c, t, p)
            for c, t, p in placements
            if c.pk not in roles and c.status == Customer.Status.ACTIVE
        ]
        chosen = next(
            (c for c, t, p in pool if c.external_id != NORTHWIND and fits(t, p)), None
        ) or next((c for c, _, _ in pool if c.external_id != NORTHWIND), None)
        if chosen is not None:
            roles[chosen.pk] = role
    return roles


def _domain(customer: Customer) -> str:
    return customer.billing_email.rpartition("@")[2] or f"{customer.external_id}.example"


def _guardrails(
    customer: Customer,
    *,
    tier: str,
    profile: str,
    role: str | None,
    recent: Recent,
    draw: random.Random,
    endpoint_story: str | None,
) -> Guardrails:
    plan = Guardrails()
    showcase = customer.external_id == NORTHWIND
    api, data = recent.units.get(API, Decimal(0)), recent.units.get(DATA, Decimal(0))
    if data <= 0 and api <= 0:
        return plan

    # The hard cap on data processed, and the soft levels under it.
    on_exceed, measure, factor = Cap.OnExceed.FLAG, Cap.Measure.UNITS, Decimal("1.2")
    typical = data
    if role == "money" and DATA in recent.spend:
        measure, factor = Cap.Measure.MONEY, Decimal("1.3")
    elif role == "reject":
        on_exceed, factor = Cap.OnExceed.REJECT, Decimal("2.5")
    elif role == "pressure":
        # Under both recent periods' usage: reached every period, the cap is in the way.
        typical, factor = recent.low.get(DATA, data), Decimal("0.85")
    elif not showcase:
        factor = Decimal("1.15") + Decimal(draw.randint(0, 35)) / 100
    if data > 0:
        base = recent.spend.get(DATA, Decimal(0)) if measure == Cap.Measure.MONEY else typical
        limit = _nice(base * factor)
        if limit > 0:
            plan.caps.append(
                {"meter": DATA, "limit": limit, "on_exceed": on_exceed, "measure": measure}
            )
            levels = [50, 80] if on_exceed == Cap.OnExceed.REJECT else [80, 100]
            plan.rules.append(
                {
                    "name": CAP_RULE,
                    "kind": "threshold",
                    "meter": DATA,
                    "basis": "percent_cap",
                    "levels": levels,
                    "audience": [DEVELOPER, FINANCE],
                }
            )
    if api > 0 and (showcase or draw.random() < 0.25):
        plan.caps.append(
            {"meter": API, "limit": _nice(api * Decimal("1.6")), "on_exceed": Cap.OnExceed.FLAG}
        )
    usage_spend = sum(recent.spend.values(), Decimal(0))
    if showcase and usage_spend > 0:
        # A cap on the whole usage bill, well above the recent periods': flagged, not refused.
        plan.caps.append(
            {
                "meter": None,
                "limit": _nice(usage_spend * 2),
                "on_exceed": Cap.OnExceed.FLAG,
                "measure": Cap.Measure.MONEY,
            }
        )

    spend = recent.spend.get(DATA, Decimal(0))
    money_cap = next((c for c in plan.caps if c.get("measure") == Cap.Measure.MONEY), None)
    if spend > 0 and (showcase or money_cap or draw.random() < 0.4):
        levels = sorted({_nice(spend * Decimal("0.5")), _nice(spend * Decimal("0.9"))})
        if money_cap:
            levels = [level for level in levels if level <= money_cap["limit"]]
        if levels and levels[0] > 0:
            plan.rules.append(
                {
                    "name": DATA_SPEND_RULE,
                    "kind": "threshold",
                    "meter": DATA,
                    "basis": "money",
                    "levels": levels,
                    "audience": [FINANCE, PROCUREMENT],
                }
            )
    if api > 0 and (showcase or draw.random() < 0.35):
        plan.rules.append(
            {
                "name": API_UNITS_RULE,
                "kind": "threshold",
                "meter": API,
                "basis": "units",
                "levels": [_nice(api * Decimal("0.9"))],
                "audience": [DEVELOPER],
            }
        )
    if tier == "growth" and (showcase or draw.random() < 0.3):
        plan.rules.append(
            {
                "name": INCLUDED_RULE,
                "kind": "threshold",
                "meter": API,
                "basis": "percent_included",
                "levels": [80, 100],
                "audience": [DEVELOPER, FINANCE],
            }
        )
    if api > 0 and (showcase or profile in ("spiky", "growing")):
        plan.rules.append(
            {
                "name": VELOCITY_RULE,
                "kind": "velocity",
                "meter": API,
                "factor": Decimal("1.5"),
                "recent_days": 7,
                "baseline_days": 28,
                # A few calls a day is noise, not a trend.
                "min_volume": max(_nice(api / 30 / 4), Decimal(1)),
                "audience": [DEVELOPER, EXECUTIVE],
            }
        )
    if data > 0 and (showcase or profile == "spiky" or draw.random() < 0.15):
        plan.rules.append(
            {
                "name": ANOMALY_RULE,
                "kind": "anomaly",
                "meter": DATA,
                "sensitivity": Decimal(6),
                "min_volume": max(_nice(data / 30 / 4), Decimal(1)),
                "audience": [DEVELOPER],
            }
        )
    if data > 0 and (showcase or profile == "growing" or draw.random() < 0.1):
        # A little above last period's usage: "we are on course to use more than last time".
        plan.rules.append(
            {
                "name": PREDICTIVE_RULE,
                "kind": "predictive",
                "meter": DATA,
                "basis": "units",
                "levels": [_nice(data * Decimal("1.15"))],
                "confidence": Decimal("0.8"),
                "within_days": 14,
                "audience": [DEVELOPER, FINANCE],
            }
        )
    if recent.last_invoice and (showcase or draw.random() < 0.35):
        total = recent.last_invoice
        plan.after_replay.append(
            {
                "name": TOTAL_SPEND_RULE,
                "kind": "threshold",
                "meter": None,
                "basis": "money",
                "levels": sorted({_nice(total * Decimal("0.8")), _nice(total)}),
                "audience": [FINANCE, PROCUREMENT, EXECUTIVE],
            }
        )
    domain = _domain(customer)
    if endpoint_story == "operations":
        plan.endpoints.append(
            {
                "url": f"https://hooks.{domain}/meterbook",
                "description": "Platform on-call: routes usage alerts to the pager.",
                "personas": [DEVELOPER],
            }
        )
    elif endpoint_story == "procurement":
        plan.endpoints.append(
            {
                "url": f"https://hooks.{domain}/meterbook/procurement",
                "description": "Procurement system: every alert, for budget tracking.",
                "personas": [],
            }
        )
    return plan


# --- Creating them through the services -------------------------------------------------------


def _plan_defaults(subscriptions, meters) -> None:
    """The operator's defaults for one self-serve plan: an included-units alert and a
    generous API cap that flags, for every subscriber that has not set its own."""
    plans = {
        sub.plan_version.plan
        for sub in subscriptions
        if sub.plan_version.plan.code.startswith("self-serve-")
    }
    if not plans:
        return
    plan = next((p for p in plans if p.code == "self-serve-usd"), min(plans, key=lambda p: p.code))
    with transaction.atomic():
        if not PlanCapDefault.objects.filter(plan=plan, meter=meters[API]).exists():
            plan_cap_default_set(
                actor=None,
                plan=plan,
                meter=meters[API],
                limit=PLAN_CAP_UNITS,
                on_exceed=Cap.OnExceed.FLAG,
            )
        if not AlertRule.objects.filter(plan=plan, name=PLAN_RULE).exists():
            rule_create(
                actor=None,
                plan=plan,
                name=PLAN_RULE,
                kind="threshold",
                meter=meters[API],
                basis="percent_included",
                levels=[80, 100],
                audience=[DEVELOPER, FINANCE],
            )
        plan_defaults_apply(plan=plan)


def _create(customer: Customer, plan: Guardrails, meters, *, now: datetime) -> None:
    have_caps = set(Cap.objects.filter(customer=customer).values_list("meter__code", flat=True))
    for spec in plan.caps:
        if spec["meter"] not in have_caps:  # None: the total spend cap
            meter = meters[spec["meter"]] if spec["meter"] else None
            cap_set(actor=None, customer=customer, **{**spec, "meter": meter})
    _create_rules(customer, plan.rules, meters)
    have_urls = set(WebhookEndpoint.objects.filter(customer=customer).values_list("url", flat=True))
    for spec in plan.endpoints:
        if spec["url"] not in have_urls:
            endpoint_create(actor=None, customer=customer, now=now, **spec)


def _create_rules(customer: Customer, specs: list[dict], meters) -> None:
    names = set(AlertRule.objects.filter(customer=customer).values_list("name", flat=True))
    caps = {
        cap.meter.code: cap
        for cap in Cap.objects.filter(customer=customer, meter__isnull=False).select_related(
            "meter"
        )
    }
    for spec in specs:
        if spec["name"] in names:
            continue
        meter = meters[spec["meter"]] if spec["meter"] else None
        cap = caps.get(spec["meter"])
        if cap is not None and spec.get("basis") == cap.measure:
            # A soft level past the hard cap would never warn first (a plan default's cap).
            spec = {**spec, "levels": [v for v in spec["levels"] if v <= cap.limit]}
            if not spec["levels"]:
                continue
        rule_create(actor=None, customer=customer, **{**spec, "meter": meter})


# --- Replaying the history --------------------------------------------------------------------


@dataclass
class Moment:
    """What the engine is asked at one past moment."""

    thresholds: set[int] = field(default_factory=set)  # meter ids
    rules: list[AlertRule] = field(default_factory=list)
    # Levels expected to have fired by now: if they have not, ask the thresholds again.
    backstop: set[tuple[int, datetime, str]] = field(default_factory=set)
    periods_ended: bool = False


def _periods(customer: Customer, now: datetime, count: int) -> list[metering.Period]:
    """The current billing period and up to ``count - 1`` before it, oldest first, as far
    back as the billing-period hook knows them (before that, the engine would place a
    moment in a calendar month instead: not the customer's period)."""
    periods = [metering.current_period(customer, now)]
    while len(periods) < count:
        earlier = metering.current_period(customer, periods[0].start - MICRO)
        if not earlier.billing:
            break
        periods.insert(0, earlier)
    return periods


def _first_at_least(totals: list[Decimal], level: Decimal) -> int | None:
    return next((i for i, total in enumerate(totals) if total >= level), None)


def _crossings(customer, meter, period, levels: set[Decimal], now: datetime) -> dict:
    """When the period's running total of ``meter`` first reached each level: the end of
    that hour (what the ingest path would have seen), found with two set-based reads."""
    end = min(period.end, now)
    if end <= period.start or not levels:
        return {}
    day_ends = []
    moment = period.start + DAY
    while moment < end:
        day_ends.append(moment)
        moment += DAY
    day_ends.append(end)
    totals = metering.usage_totals(
        meter=meter, windows=[metering.UsageWindow(customer.pk, period.start, e) for e in day_ends]
    )
    found: dict[Decimal, datetime] = {}
    hourly: dict[int, tuple[list[datetime], list[Decimal]]] = {}
    for level in sorted(levels):
        day = _first_at_least(totals, level)
        if day is None:
            continue
        if day not in hourly:
            start = day_ends[day - 1] if day else period.start
            ends = []
            moment = start + HOUR
            while moment < day_ends[day]:
                ends.append(moment)
                moment += HOUR
            ends.append(day_ends[day])
            hourly[day] = (
                ends,
                metering.usage_totals(
                    meter=meter,
                    windows=[metering.UsageWindow(customer.pk, period.start, e) for e in ends],
                ),
            )
        ends, values = hourly[day]
        found[level] = ends[_first_at_least(values, level) or 0]
    return found


def _beat_pass(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone) + BEAT_PASS


def _daily_usage(customer, meter, first: date, last: date) -> dict[date, Decimal]:
    """Complete days' usage in the customer's zone, ``first`` to ``last`` inclusive."""
    zone = ZoneInfo(customer.timezone)
    points = metering.usage_series(
        customer=customer,
        meter=meter,
        start=datetime(first.year, first.month, first.day, tzinfo=zone),
        end=datetime(last.year, last.month, last.day, tzinfo=zone) + DAY,
        granularity="day",
    )
    return {p.bucket.date(): p.value or Decimal(0) for p in points}


def _velocity_direction(rule: AlertRule, series: dict[date, Decimal], day: date) -> str | None:
    """The engine's velocity test as its pass on ``day`` would see it (complete days only)."""
    days = (rule.recent_days or 7) + (rule.baseline_days or 28)
    values = [series.get(day - timedelta(days=n), Decimal(0)) for n in range(days, 0, -1)]
    return engine.velocity(rule, values)[0]


def _unusual_yesterday(rule: AlertRule, series: dict[date, Decimal], day: date) -> bool:
    """Whether the day before ``day`` looks far from its weekday baseline, with some margin:
    the engine's anomaly pass on ``day`` is asked and decides."""
    yesterday = series.get(day - DAY, Decimal(0))
    history = [
        series.get(day - DAY - timedelta(days=n), Decimal(0))
        for n in range(engine.ANOMALY_WEEKS * 7, 0, -1)
    ]
    baseline = engine.anomaly_baseline(history)
    if len(baseline) < engine.ANOMALY_MIN_SAME_WEEKDAYS:
        return False
    median, sigma = engine.robust_band(baseline)
    if max(yesterday, median) < (rule.min_volume or 0):
        return False
    return abs(yesterday - median) >= (rule.sensitivity or Decimal(6)) * sigma * Decimal("0.8")


def _evaluate_rule(rule: AlertRule, subjects: Subjects) -> None:
    """One scheduled rule at the subjects' moment, as Beat's pass evaluates each rule.
    (``rules_evaluate_scheduled`` runs every rule of every customer; the replay asks one
    customer's rules at the moments that matter to them.)"""
    engine.rule_evaluate(rule, subjects)


def _replay(customer: Customer, *, now: datetime, periods: int) -> None:
    """Ask the engine at the moments of the customer's last ``periods`` billing periods
    that can fire or resolve something, oldest first."""
    rules = list(
        AlertRule.objects.filter(customer=customer, enabled=True).select_related(
            "customer", "meter"
        )
    )
    zone = ZoneInfo(customer.timezone)
    moments: dict[datetime, Moment] = defaultdict(Moment)
    periods = _periods(customer, now, periods)
    since = periods[0].start

    # Thresholds: ask at the hour each level was first reached in each period.
    thresholds = [r for r in rules if r.kind == AlertRule.Kind.THRESHOLD and r.meter_id]
    for period in periods:
        subjects = Subjects(min(period.end - timedelta(seconds=1), now))
        wanted: dict[int, dict[Decimal, list[tuple[AlertRule, Decimal]]]] = defaultdict(dict)
        for rule in thresholds:
            for level in rule.levels:
                units = subjects.level_in_units(rule, level)
                if units is not None and units > 0:
                    wanted[rule.meter_id].setdefault(units, []).append((rule, level))
        meters = {r.meter_id: r.meter for r in thresholds}
        last = min(period.end - timedelta(seconds=1), now)
        for meter_id, levels in wanted.items():
            crossed = _crossings(customer, meters[meter_id], period, set(levels), now)
            for units, moment in crossed.items():
                moments[moment].thresholds.add(meter_id)
                moments[last].backstop.update(
                    (rule.pk, period.start, engine.level_key(level))
                    for rule, level in levels[units]
                )
        if period.end + BEAT_PASS <= now:
            moments[period.end + BEAT_PASS].periods_ended = True

    # Velocity and anomaly: the first pass of each day their figures change.
    today = now.astimezone(zone).date()
    first_day = since.astimezone(zone).date()
    if _beat_pass(first_day, zone) < since:
        first_day += DAY
    daily = [r for r in rules if r.kind in (AlertRule.Kind.VELOCITY, AlertRule.Kind.ANOMALY)]
    series: dict[int, dict[date, Decimal]] = {}
    for rule in daily:
        if rule.meter_id not in series:
            series[rule.meter_id] = _daily_usage(
                customer,
                rule.meter,
                first_day - timedelta(days=engine.ANOMALY_WEEKS * 7 + 35),
                today - DAY,
            )
        usage = series[rule.meter_id]
        previous = None  # a trend already running at the start fires at the first pass
        day = first_day
        while day <= today:
            moment = _beat_pass(day, zone)
            if rule.kind == AlertRule.Kind.VELOCITY:
                direction = _velocity_direction(rule, usage, day)
                new_period = any(p.start <= moment < p.start + DAY for p in periods)
                if direction != previous or (direction and new_period):
                    moments[moment].rules.append(rule)
                previous = direction
            elif _unusual_yesterday(rule, usage, day):
                moments[moment].rules.append(rule)
                # The next pass: resolved if that day is back to normal.
                moments[_beat_pass(day + DAY, zone)].rules.append(rule)
            day += DAY

    # Predictive: once a week over the last two weeks (the final pass adds today).
    for rule in (r for r in rules if r.kind == AlertRule.Kind.PREDICTIVE):
        for weeks_back in range(PREDICTIVE_WEEKS, 0, -1):
            moments[_beat_pass(today - timedelta(weeks=weeks_back), zone)].rules.append(rule)

    for moment in sorted(m for m in moments if since <= m <= now):
        _ask(customer, moment, moments[moment])


def _ask(customer: Customer, moment: datetime, asked: Moment) -> None:
    if asked.thresholds:
        engine.thresholds_evaluate({(customer.pk, m) for m in asked.thresholds}, now=moment)
    subjects = Subjects(moment)
    seen = set()
    for rule in asked.rules:
        if rule.pk not in seen:
            seen.add(rule.pk)
            _evaluate_rule(rule, subjects)
    if asked.backstop:
        fired = set(
            Alert.objects.filter(
                rule_id__in={rule_id for rule_id, _, _ in asked.backstop}
            ).values_list("rule_id", "period_start", "level")
        )
        missing = {(rule_id, start, level) for rule_id, start, level in asked.backstop} - {
            (rule_id, start, level) for rule_id, start, level in fired
        }
        if missing:
            pairs = set(
                AlertRule.objects.filter(pk__in={m[0] for m in missing}).values_list(
                    "customer_id", "meter_id"
                )
            )
            engine.thresholds_evaluate(pairs, now=moment)
    if asked.periods_ended:
        engine.periods_ended_resolve(now=moment)
    _sweep(moment)


def _sweep(now: datetime) -> None:
    """Every due delivery gets its attempt (a dry run: recorded as skipped)."""
    while deliveries_sweep(now=now) >= SWEEP_BATCH:
        pass


# --- The seeder -------------------------------------------------------------------------------


def _snapshot(customers: list[Customer]) -> dict[str, int]:
    return {
        "Cap": Cap.objects.filter(customer__in=customers).count(),
        "AlertRule": AlertRule.objects.filter(customer__in=customers).count()
        + AlertRule.objects.filter(plan__isnull=False).count(),
        "WebhookEndpoint": WebhookEndpoint.objects.filter(
            customer__in=customers, contact__isnull=True
        ).count(),
        "Alert": Alert.objects.filter(customer__in=customers).count(),
        "Delivery": Delivery.objects.filter(alert__customer__in=customers).count(),
        "DeliveryAttempt": DeliveryAttempt.objects.filter(
            delivery__alert__customer__in=customers
        ).count(),
        "ExpansionSignal": ExpansionSignal.objects.filter(customer__in=customers).count(),
    }


def seed_alerts(
    stdout,
    rng: random.Random,
    *,
    customers=None,
    now: datetime | None = None,
    replay_periods: int = REPLAY_PERIODS,
) -> dict[str, int]:
    """Seed guardrails for most of ``customers`` (default: every customer) and replay their
    last ``replay_periods`` billing periods of usage through the alert engine. Returns the
    counts of what it created."""
    started = time.monotonic()
    now = now or timezone.now()
    if not getattr(settings, "ALERTS_OUTBOUND_DRY_RUN", False):
        stdout.write(
            "seed_alerts: skipped: ALERTS_OUTBOUND_DRY_RUN is off, and the demo's alerts "
            "must never be sent (the development settings turn it on)"
        )
        return {}
    meters = {m.code: m for m in Meter.objects.filter(code__in=METER_CODES)}
    if len(meters) < len(METER_CODES):
        stdout.write("seed_alerts: skipped: the demo meters are missing (seed usage first)")
        return {}
    customers = sorted(
        customers if customers is not None else Customer.objects.all(),
        key=lambda customer: customer.external_id,
    )
    before = _snapshot(customers)
    base_seed = rng.getrandbits(64)  # the same draw as metering.demo: same profile and size
    had_rules = set(
        AlertRule.objects.filter(customer__in=customers).values_list("customer_id", flat=True)
    )

    placements, subscriptions = [], {}
    for customer in customers:
        subscription = invoicing.subscription_current(customer=customer)
        if subscription is None:
            continue
        tier = subscription.plan_version.plan.code.rpartition("-")[0]
        placements.append((customer, tier, account_for(customer, base_seed).profile))
        subscriptions[customer.pk] = subscription
    roles = _roles(placements)
    _plan_defaults(subscriptions.values(), meters)

    procurement_told = False
    for customer, tier, profile in placements:
        account = account_for(customer, base_seed)
        draw = random.Random(f"{account.seed}:alerts")  # noqa: S311 - demo data
        skip = draw.random() < WITHOUT_GUARDRAILS and customer.pk not in roles
        if customer.external_id != NORTHWIND and (
            skip or customer.status != Customer.Status.ACTIVE
        ):
            continue
        story = None
        if customer.external_id == NORTHWIND:
            story = "operations"
        elif tier == "enterprise" and not procurement_told:
            story, procurement_told = "procurement", True
        with transaction.atomic():
            plan = _guardrails(
                customer,
                tier=tier,
                profile=profile,
                role=roles.get(customer.pk),
                recent=_recent(customer, subscriptions[customer.pk], meters, now),
                draw=draw,
                endpoint_story=story,
            )
            _create(customer, plan, meters, now=now)
            if customer.pk not in had_rules:
                _replay(customer, now=now, periods=replay_periods)
            _create_rules(customer, plan.after_replay, meters)

    # Then Beat's pass at ``now`` over every rule, and the sweep.
    engine.rules_evaluate_scheduled(now=now)
    _sweep(now)

    after = _snapshot(customers)
    counts = {COUNT_LABELS[k]: after[k] - before[k] for k in after}
    created = ", ".join(f"{n:,} {what}" for what, n in counts.items() if n) or "nothing new"
    stdout.write(f"seed_alerts: {created} ({time.monotonic() - started:.1f}s)")
    return counts


__all__ = ["seed_alerts"]

"""Expansion signals: alerts that mean the customer is outgrowing what it buys.

Recorded with the alert that showed it, for the account team's work queue:

* **tier trending** — usage or spend reaches (or is forecast to reach) all of the included
  units or the commitment;
* **cap pressure** — the hard cap is reached in a second period running;
* **fast growth** — a meter's recent rate is up by the velocity rule's factor.

The estimated revenue impact is what one more period at the evidence's trajectory would
add at the customer's current prices: conservative, and in the plan's currency.
"""

from datetime import datetime
from decimal import Decimal

from invoicing import selectors as invoicing
from invoicing.currency import to_minor
from invoicing.rating import usage_amount

from ..models import Alert, AlertRule, ExpansionSignal

Kind = AlertRule.Kind
Basis = AlertRule.Basis
Signal = ExpansionSignal.Kind
TIER_BASES = (Basis.PERCENT_INCLUDED, Basis.PERCENT_COMMITMENT)


def _kind(alert: Alert, rule: AlertRule) -> str | None:
    if alert.kind == Kind.VELOCITY:
        return Signal.FAST_GROWTH if alert.level == "rising" else None
    if alert.kind in (Kind.THRESHOLD, Kind.PREDICTIVE) and rule.basis in TIER_BASES:
        return Signal.TIER_TRENDING if Decimal(alert.level) >= 100 else None
    if alert.kind == Kind.THRESHOLD and rule.basis == Basis.PERCENT_CAP:
        if Decimal(alert.level) < 100:
            return None
        # A second period in a row at the cap: the cap, not a one-off, is in the way.
        before = Alert.objects.filter(
            rule=rule, kind=Kind.THRESHOLD, period_end__lte=alert.period_start
        ).order_by("-period_start")
        last = before.values_list("period_start", flat=True).first()
        hit = last is not None and any(
            Decimal(level) >= 100
            for level in before.filter(period_start=last).values_list("level", flat=True)
        )
        return Signal.CAP_PRESSURE if hit else None
    return None


def _extra_units(alert: Alert, kind: str) -> Decimal:
    """Units more per period the evidence points at."""
    evidence = alert.evidence
    if kind == Signal.FAST_GROWTH:
        days = Decimal((alert.period_end - alert.period_start).days or 1)
        recent = Decimal(evidence.get("recent_daily_rate") or 0)
        baseline = Decimal(evidence.get("baseline_daily_rate") or 0)
        return max(recent - baseline, Decimal(0)) * days
    if kind == Signal.CAP_PRESSURE:
        return Decimal(evidence.get("cap_units") or 0) / 2
    usage = Decimal(evidence.get("usage") or 0)
    band = evidence.get("band") or {}
    p50 = Decimal(str(band.get("p50", "0")).replace(",", "") or 0)
    return max(p50 - usage, Decimal(0)) if p50 else usage * Decimal("0.2")


def expansion_signal_for(alert: Alert, *, rule: AlertRule, now: datetime) -> ExpansionSignal | None:
    """Record the signal ``alert`` means, if any (once: one signal per alert)."""
    kind = _kind(alert, rule)
    if kind is None:
        return None
    currency, impact = "", 0
    if alert.meter_id is not None:
        priced = invoicing.meter_price(customer=alert.customer, meter=alert.meter)
        if priced is not None:
            usage = Decimal(alert.evidence.get("usage") or 0)
            extra = _extra_units(alert, kind)
            added = usage_amount(priced.price, usage + extra) - usage_amount(priced.price, usage)
            currency, impact = priced.currency, to_minor(added, priced.currency)
    signal, _ = ExpansionSignal.objects.get_or_create(
        alert=alert,
        defaults={
            "customer": alert.customer,
            "kind": kind,
            "meter": alert.meter,
            "evidence": {"alert": alert.title, "summary": alert.summary, **alert.evidence},
            "currency": currency,
            "estimated_revenue_impact_minor": impact,
            "created_at": now,
        },
    )
    return signal

"""What alerts say, and to whom: titles and summaries when they fire, and the message each
persona gets on each channel.

A developer reads the technical state (meter, usage, what is left, the rate, when the
period resets, the cap); finance and procurement the budget impact (the projected invoice
with its range, the commitment position, options from the vendor's plans); an executive
one line. Everything here is formatting of figures the services measured: no queries,
except ``budget`` which the outbox reads once per alert and keeps in the alert's evidence.
"""

from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.urls import reverse

from accounts.models import Persona
from invoicing.currency import format_money, to_minor

from .channels import Notice, NoticeAction, Severity
from .models import Alert, AlertRule

Kind = AlertRule.Kind
Basis = AlertRule.Basis


def number(value: Decimal | str | int | None, places: int | None = None) -> str:
    """'12,345' or '12,345.5': grouped, no trailing zeros, no exponent."""
    if value is None:
        return "—"
    value = Decimal(str(value))
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
    text = f"{value.normalize():,f}" if value == value.to_integral() else f"{value:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def plain(value: Decimal | None) -> str | None:
    """An exact figure for evidence: '0.5', '12000' (no padding, no exponent)."""
    return None if value is None else f"{value.normalize():f}"


def money(value: Decimal | str | None, currency: str | None) -> str:
    """An amount in major units as '1,234.50 USD' (a plain number without a currency)."""
    if value is None:
        return "—"
    if not currency:
        return number(value, 2)
    return format_money(to_minor(Decimal(str(value)), currency), currency)


def subject(rule: AlertRule) -> str:
    return rule.meter.name if rule.meter_id else "Total spend"


def level_text(rule: AlertRule, level: Decimal, currency: str | None = None) -> str:
    if rule.basis == Basis.UNITS:
        return f"{number(level)} {rule.meter.unit_label}"
    if rule.basis == Basis.MONEY:
        return money(level, currency) if currency else number(level)
    reference = {
        Basis.PERCENT_INCLUDED: "of included units",
        Basis.PERCENT_COMMITMENT: "of the commitment",
        Basis.PERCENT_CAP: "of the hard cap",
    }[rule.basis]
    return f"{number(level)}% {reference}"


def _percent_basis(rule: AlertRule) -> bool:
    return rule.basis in (Basis.PERCENT_INCLUDED, Basis.PERCENT_COMMITMENT, Basis.PERCENT_CAP)


# --- Thresholds ---------------------------------------------------------------------------


def threshold_severity(rule: AlertRule, level: Decimal) -> str:
    if _percent_basis(rule) and level >= 100:
        return Alert.Severity.CRITICAL
    return Alert.Severity.WARNING


def threshold_title(rule: AlertRule, level: Decimal, currency: str | None = None) -> str:
    return f"{subject(rule)} reached {level_text(rule, level, currency)}"


def threshold_summary(rule: AlertRule, level: Decimal, position, period) -> str:
    now_text = (
        f"{number(position.value, 1)}%"
        if _percent_basis(rule)
        else money(position.value, position.currency)
        if rule.basis == Basis.MONEY
        else f"{number(position.value)} {rule.meter.unit_label}"
    )
    return (
        f"{subject(rule)} stands at {now_text} this billing period "
        f"(alert level {level_text(rule, level, position.currency)}); the period ends "
        f"{period.end:%Y-%m-%d %H:%M} UTC."
    )


def threshold_evidence(rule: AlertRule, level: Decimal, position, period, subjects) -> dict:
    evidence = {
        "meter": rule.meter.code if rule.meter_id else None,
        "basis": rule.basis,
        "level": plain(level),
        "value": plain(position.value.quantize(Decimal("0.001"))),
        "usage": plain(position.usage),
        "spend": plain(position.spend),
        "reference": plain(position.reference),
        "currency": position.currency,
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
    }
    if rule.meter_id and position.usage is not None:
        elapsed_days = Decimal((subjects.now - period.start).total_seconds()) / 86400
        if elapsed_days > 0:
            evidence["daily_rate"] = plain((position.usage / elapsed_days).quantize(Decimal("0.1")))
        cap = subjects.cap(rule.customer, rule.meter)
        if cap is not None:
            limit, on_exceed = cap
            evidence["cap_units"] = plain(limit)
            evidence["cap_on_exceed"] = on_exceed
            evidence["remaining_units"] = plain(max(limit - position.usage, Decimal(0)))
    return evidence


# --- Velocity, anomaly, predictive ---------------------------------------------------------


def velocity_title(rule: AlertRule, direction: str) -> str:
    verb = "is growing fast" if direction == "rising" else "has slowed sharply"
    return f"{subject(rule)} {verb}"


def velocity_summary(rule: AlertRule, direction: str, recent: Decimal, baseline: Decimal) -> str:
    unit = rule.meter.unit_label
    change = f"{number(recent / baseline, 1)}x" if baseline else "up from nothing"
    return (
        f"{subject(rule)} averaged {number(recent, 1)} {unit}/day over the last "
        f"{rule.recent_days or 7} days against {number(baseline, 1)} {unit}/day over the "
        f"{rule.baseline_days or 28} days before ({change})."
    )


def velocity_resolution(rule: AlertRule, recent: Decimal, baseline: Decimal) -> str:
    return (
        f"Back within {number(rule.factor or 2)}x: {number(recent, 1)}/day recently against "
        f"{number(baseline, 1)}/day before."
    )


def anomaly_title(rule: AlertRule, day: date, spike: bool) -> str:
    what = "Unusual spike" if spike else "Unusual drop"
    return f"{what} in {subject(rule)} on {day:%a %d %b}"


def anomaly_summary(
    rule: AlertRule, day: date, value: Decimal, median: Decimal, complete: bool, spike: bool
) -> str:
    so_far = "" if complete else " so far today"
    return (
        f"{number(value)} {rule.meter.unit_label}{so_far} on {day:%A %d %B}, against a typical "
        f"{day:%A} of {number(median, 1)}. "
        + ("A runaway job or a new workload?" if spike else "An integration that stopped sending?")
    )


def anomaly_resolution(rule: AlertRule, day: date, value: Decimal, median: Decimal) -> str:
    return (
        f"{day:%A %d %B} was back to normal: {number(value)} against a typical {number(median, 1)}."
    )


def predictive_title(rule: AlertRule, level: Decimal, probability: Decimal, within: int) -> str:
    return (
        f"{probability:.0%} likely to pass {level_text(rule, level)} on {subject(rule)} "
        f"within {within} days"
    )


def predictive_summary(rule, level, units, probability, within, crossing) -> str:
    when = f"; most likely around {crossing.expected_date:%d %B}" if crossing.expected_date else ""
    return (
        f"At its current pace, {subject(rule)} is {probability:.0%} likely to pass "
        f"{number(units)} {rule.meter.unit_label} within {within} days{when}."
    )


def band_evidence(forecast) -> dict:
    """The period-end usage range of a meter forecast, for messages."""
    q = forecast.forecast.period_end_quantiles()
    return {"p10": number(q.p10, 0), "p50": number(q.p50, 0), "p90": number(q.p90, 0)}


# --- Messages per persona ----------------------------------------------------------------------


def portal_url(path_name: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse(path_name)


def _severity(alert: Alert) -> Severity:
    return Severity(alert.severity)


def notice(alert: Alert, *, event: str, persona: str, budget: dict | None = None) -> Notice:
    """The alert as ``persona`` reads it (``event``: 'alert.triggered' or 'alert.resolved')."""
    resolved = event == "alert.resolved"
    title = f"Resolved: {alert.title}" if resolved else alert.title
    summary = alert.resolution if resolved and alert.resolution else alert.summary
    facts: list[tuple[str, str]] = []
    evidence = alert.evidence or {}
    actions: list[NoticeAction] = []
    if persona == Persona.DEVELOPER:
        facts += _technical_facts(alert, evidence)
    elif persona in (Persona.FINANCE, Persona.PROCUREMENT):
        facts += _budget_facts(budget)
        actions += [
            NoticeAction(option["title"], option.get("url") or portal_url("alerts:guardrails"))
            for option in (budget or {}).get("options", [])[:2]
        ]
    else:  # executives: the one line, and the projected invoice if there is one
        if budget and budget.get("projected_p50"):
            facts.append(("Projected invoice", budget["projected_p50"]))
    if resolved:
        facts.insert(0, ("Resolved", f"{alert.resolved_at:%Y-%m-%d %H:%M} UTC"))
    return Notice(
        title=title,
        summary=summary,
        severity=Severity.INFO if resolved else _severity(alert),
        facts=tuple(facts),
        body=(budget or {}).get("commitment_text", "") if persona != Persona.DEVELOPER else "",
        link_url=portal_url("alerts:notifications"),
        actions=tuple(actions),
    )


def _technical_facts(alert: Alert, evidence: dict) -> list[tuple[str, str]]:
    facts = [("Meter", evidence.get("meter") or "total spend")]
    labels = (
        ("usage", "Usage this period"),
        ("remaining_units", "Left under the cap"),
        ("cap_units", "Hard cap (units)"),
        ("cap_on_exceed", "Past the cap"),
        ("daily_rate", "Rate per day this period"),
        ("recent_daily_rate", "Recent rate per day"),
        ("baseline_daily_rate", "Baseline rate per day"),
        ("value", "Value"),
        ("baseline_median", "Typical for the weekday"),
        ("probability", "Probability"),
        ("expected_crossing_date", "Expected crossing"),
    )
    for key, label in labels:
        if evidence.get(key) not in (None, ""):
            value = evidence[key]
            if key == "probability":
                value = f"{Decimal(value):.0%}"
            elif key == "cap_on_exceed":
                value = "events refused" if value == "reject" else "events accepted and flagged"
            elif key not in ("expected_crossing_date",):
                value = number(value)
            facts.append((label, value))
    facts.append(("Period resets", f"{alert.period_end:%Y-%m-%d %H:%M} UTC"))
    return facts


def _budget_facts(budget: dict | None) -> list[tuple[str, str]]:
    if not budget:
        return []
    facts = []
    if budget.get("so_far"):
        facts.append(("Invoice so far", budget["so_far"]))
    if budget.get("projected_p50"):
        facts.append(
            (
                "Projected invoice",
                f"{budget['projected_p50']} (range {budget['projected_p10']} to "
                f"{budget['projected_p90']})",
            )
        )
    if budget.get("commitment"):
        facts.append(("Commitment", budget["commitment"]))
    return facts


def webhook_payload(alert: Alert, *, event: str, delivery_id: int) -> dict:
    """The Standard Webhooks body: ``type``, ``timestamp`` and the alert as ``data``."""
    return {
        "type": event,
        "timestamp": (alert.resolved_at if event == "alert.resolved" else alert.triggered_at),
        "data": {
            "id": alert.pk,
            "customer": alert.customer.external_id,
            "kind": alert.kind,
            "meter": alert.meter.code if alert.meter_id else None,
            "level": alert.level,
            "severity": alert.severity,
            "status": alert.status,
            "title": alert.title,
            "summary": alert.summary,
            "evidence": alert.evidence,
            "period_start": alert.period_start,
            "period_end": alert.period_end,
            "triggered_at": alert.triggered_at,
            "resolved_at": alert.resolved_at,
            "resolution": alert.resolution,
            "delivery": delivery_id,
        },
    }


def moment(value: datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"

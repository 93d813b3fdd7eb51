"""Pieces the alerts admin modules share: the service-backed base class and display helpers."""

import json
from decimal import Decimal

from django.utils.html import format_html

from accounts.models import Persona
from invoicing.admin._shared import number

from ..models import AlertRule


def pretty_json(value) -> str:
    """Evidence as indented JSON, keys sorted, escaped for the page."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="mb-evidence">{}</pre>', text)


def rule_levels(rule: AlertRule) -> str:
    """What makes the rule fire, in one line: its levels, or its kind's tuning."""
    Kind = AlertRule.Kind
    if rule.kind == Kind.VELOCITY:
        if rule.factor is None:
            return "—"
        return (
            f"{number(rule.factor)} times the rate: last {rule.recent_days} d "
            f"against {rule.baseline_days} d"
        )
    if rule.kind == Kind.ANOMALY:
        if rule.sensitivity is None:
            return "—"
        return f"{number(rule.sensitivity)} robust deviations"
    percent = "%" if rule.basis.startswith("percent") else ""
    text = ", ".join(f"{number(level)}{percent}" for level in rule.levels) or "—"
    if rule.kind == Kind.PREDICTIVE and rule.confidence is not None:
        likely = number(Decimal(rule.confidence) * 100)
        text += f" ({likely}% likely within {rule.within_days} d)"
    return text


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 subscriber', '3 subscribers'."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def personas(values) -> str:
    labels = dict(Persona.choices)
    return ", ".join(labels.get(value, value) for value in values) or "everyone"

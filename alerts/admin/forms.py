"""Forms behind the operator's plan defaults in the admin (rules and caps).

They only collect input, as text where the service reads numbers, so the service's own
rules and messages apply; its refusals come back onto the form through ``add_domain_error``.
"""

from decimal import Decimal

from django import forms

from accounts.models import Persona
from invoicing.models import Plan
from metering.models import Meter

from ..models import AlertRule, Cap, PlanCapDefault
from ..services.rules import DEFAULTS, TUNING_FIELDS


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value)


def _plans():
    return Plan.objects.filter(is_active=True).order_by("name")


def _meters():
    return Meter.objects.filter(is_active=True).order_by("code")


TUNING_HELP = {
    "confidence": "Predictive: how likely (between 0 and 1) the level is passed in time.",
    "within_days": "Predictive: how many days ahead to look.",
    "factor": "Velocity: fires when the recent daily rate is this many times the baseline's.",
    "recent_days": "Velocity: days in the recent window.",
    "baseline_days": "Velocity: days in the baseline window (longer than the recent one).",
    "sensitivity": "Anomaly: robust standard deviations from the weekday baseline.",
    "min_volume": "Velocity and anomaly: days below this daily volume are noise.",
}


class PlanRuleForm(forms.Form):
    """A plan's default alert rule: created with ``plan``, or changed (``rule`` given)."""

    plan = forms.ModelChoiceField(
        queryset=_plans(),
        help_text="Its current subscribers get a copy at once; later subscribers when they join.",
    )
    name = forms.CharField(max_length=120, required=False)
    kind = forms.ChoiceField(choices=AlertRule.Kind.choices, initial=AlertRule.Kind.THRESHOLD)
    meter = forms.ModelChoiceField(
        queryset=_meters(),
        required=False,
        empty_label="Total spend (basis money or percent of commitment)",
    )
    basis = forms.ChoiceField(choices=AlertRule.Basis.choices, initial=AlertRule.Basis.UNITS)
    levels = forms.CharField(
        required=False,
        help_text="Comma-separated: units or spend (50000, 80000), or percentages (80, 100) "
        "for the percent bases. Threshold: up to ten levels; predictive: one; velocity and "
        "anomaly: none.",
    )
    confidence = forms.CharField(required=False)
    within_days = forms.CharField(required=False)
    factor = forms.CharField(required=False)
    recent_days = forms.CharField(required=False)
    baseline_days = forms.CharField(required=False)
    sensitivity = forms.CharField(required=False)
    min_volume = forms.CharField(required=False)
    audience = forms.MultipleChoiceField(
        choices=Persona.choices,
        required=False,
        initial=list(Persona.values),
        widget=forms.CheckboxSelectMultiple,
        help_text="Who hears about it.",
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, rule: AlertRule | None = None, **kwargs):
        if rule is not None:
            initial = {name: _text(getattr(rule, name)) for name in TUNING_FIELDS}
            initial.update(
                name=rule.name,
                kind=rule.kind,
                meter=rule.meter_id,
                basis=rule.basis,
                levels=", ".join(_text(level) for level in rule.levels),
                audience=list(rule.audience),
                enabled=rule.enabled,
            )
            kwargs["initial"] = {**initial, **kwargs.get("initial", {})}
        super().__init__(*args, **kwargs)
        if rule is not None:
            del self.fields["plan"]  # a default stays with its plan
        for name in TUNING_FIELDS:
            self.fields[
                name
            ].help_text = (
                f"{TUNING_HELP[name]} Empty: {_text(DEFAULTS[name])} where the kind reads it."
            )

    def rule_fields(self) -> dict:
        """The arguments of ``rule_create`` / ``rule_update`` (the plan aside)."""
        data = self.cleaned_data
        fields = {name: data[name] for name in ("name", "kind", "meter", "basis", "enabled")}
        fields["levels"] = [part.strip() for part in data["levels"].split(",") if part.strip()]
        fields.update({name: data[name].strip() or None for name in TUNING_FIELDS})
        fields["audience"] = list(data["audience"])
        return fields


class PlanCapDefaultForm(forms.Form):
    """A plan's default cap: plan and meter when it is made, the rest whenever."""

    plan = forms.ModelChoiceField(queryset=_plans())
    meter = forms.ModelChoiceField(queryset=_meters(), help_text="A count or sum meter.")
    measure = forms.ChoiceField(choices=Cap.Measure.choices, initial=Cap.Measure.UNITS)
    limit = forms.CharField(
        help_text="Units of the meter, or spend on it in the plan's currency, per billing period."
    )
    on_exceed = forms.ChoiceField(choices=Cap.OnExceed.choices, initial=Cap.OnExceed.REJECT)

    def __init__(self, *args, default: PlanCapDefault | None = None, **kwargs):
        if default is not None:
            kwargs["initial"] = {
                "measure": default.measure,
                "limit": _text(default.limit),
                "on_exceed": default.on_exceed,
                **kwargs.get("initial", {}),
            }
        super().__init__(*args, **kwargs)
        if default is not None:
            del self.fields["plan"], self.fields["meter"]

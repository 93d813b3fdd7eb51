"""Portal forms of the Caps & alerts page. They check the shape of input (a number is a
number); ``alerts.services`` decide what is allowed, and their refusals come back on the
field they concern (``accounts.forms.add_domain_error``)."""

import re
from decimal import Decimal, InvalidOperation

from django import forms

from accounts.forms import PageForm
from accounts.models import Persona

from .models import AlertRule, Cap
from .services.rules import KIND_FIELDS

Kind = AlertRule.Kind
TOTAL_SPEND = ""  # the meter choice for rules on the customer's total spend
LEVEL_SEPARATORS = re.compile(r"[,;\s]+")


def _meter_choices(meters, *, extra: tuple[str, str] | None = None) -> list[tuple[str, str]]:
    choices = [(m.code, f"{m.name} ({m.unit_label})") for m in meters]
    # Last: a new form starts on a meter, which every kind and basis can watch.
    return [*choices, extra] if extra else choices


class CapForm(PageForm):
    id_prefix = "cap"

    # The code as typed or chosen: the service names an unknown meter in its answer. Blank
    # (TOTAL_SPEND) caps the total spend on usage.
    meter = forms.CharField(max_length=128, required=False, widget=forms.Select)
    measure = forms.ChoiceField(
        label="Cap on",
        choices=[(Cap.Measure.UNITS, "Units"), (Cap.Measure.MONEY, "Spend")],
        initial=Cap.Measure.UNITS,
        widget=forms.RadioSelect,
    )
    limit = forms.CharField(
        max_length=60,
        help_text="Per billing period: units of the meter, or spend on it in your plan's "
        "currency. Total spend counts every usage charge (not the plan's fixed fees) and is "
        "always in money. 0 stops all usage.",
    )
    on_exceed = forms.ChoiceField(
        label="Past the cap",
        choices=Cap.OnExceed.choices,
        initial=Cap.OnExceed.REJECT,
        widget=forms.RadioSelect,
    )

    def __init__(self, *args, meters=(), **kwargs):
        super().__init__(*args, **kwargs)
        cappable = [m for m in meters if m.is_additive]
        self.fields["meter"].widget.choices = _meter_choices(
            cappable, extra=(TOTAL_SPEND, "Total spend (all usage)")
        )
        if cappable and not self.is_bound and "meter" not in self.initial:
            self.initial["meter"] = cappable[0].code  # blank would select total spend

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("meter", "").strip() == TOTAL_SPEND:
            cleaned["measure"] = Cap.Measure.MONEY  # a total spend cap only counts money
        return cleaned

    @classmethod
    def initial_from(cls, cap: Cap) -> dict:
        return {
            "meter": TOTAL_SPEND if cap.is_total else cap.meter.code,
            "measure": cap.measure,
            "limit": f"{cap.limit.normalize():f}",
            "on_exceed": cap.on_exceed,
        }


class RuleForm(PageForm):
    """One form for every kind: it shows (and sends on) the fields of the chosen kind."""

    id_prefix = "rule"

    kind = forms.ChoiceField(label="Alert when", choices=Kind.choices, initial=Kind.THRESHOLD)
    meter = forms.CharField(label="Watch", max_length=128, required=False, widget=forms.Select)
    basis = forms.ChoiceField(
        label="Levels in", choices=AlertRule.Basis.choices, initial=AlertRule.Basis.UNITS
    )
    levels = forms.CharField(
        required=False,
        max_length=500,
        help_text="Separate levels with commas, e.g. 50000, 80000; percentages as 80, 100.",
    )
    confidence = forms.CharField(
        label="Likelihood (%)",
        required=False,
        max_length=10,
        help_text="Alert when passing the level becomes at least this likely.",
    )
    within_days = forms.IntegerField(label="Within (days)", required=False)
    factor = forms.CharField(
        required=False,
        max_length=12,
        help_text="2 alerts when the daily rate doubles, or halves.",
    )
    recent_days = forms.IntegerField(label="Recent days", required=False)
    baseline_days = forms.IntegerField(label="Compared with the previous (days)", required=False)
    sensitivity = forms.CharField(
        required=False,
        max_length=10,
        help_text="How far from its usual weekday a day must be; lower alerts more often.",
    )
    min_volume = forms.CharField(
        label="Ignore days under",
        required=False,
        max_length=40,
        help_text="Units per day too small to matter.",
    )
    audience = forms.MultipleChoiceField(
        label="Who hears about it",
        choices=Persona.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    name = forms.CharField(
        required=False, max_length=120, help_text="Optional; shown in alerts and here."
    )
    enabled = forms.BooleanField(label="Enabled", required=False, initial=True)

    def __init__(self, *args, meters=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["meter"].widget.choices = _meter_choices(
            meters, extra=(TOTAL_SPEND, "Total spend (all meters)")
        )
        if not self.is_bound and "audience" not in self.initial:
            self.initial["audience"] = list(Persona.values)

    @property
    def chosen_kind(self) -> str:
        """The kind the form is for: as posted, else as it starts."""
        value = self.data.get(self.add_prefix("kind")) if self.is_bound else None
        value = value or self.initial.get("kind") or Kind.THRESHOLD
        return value if value in KIND_FIELDS else Kind.THRESHOLD

    @property
    def shown(self) -> set[str]:
        """The kind's own fields, which the template shows (with the common ones)."""
        fields = set(KIND_FIELDS[self.chosen_kind])
        if self.chosen_kind in (Kind.THRESHOLD, Kind.PREDICTIVE):
            fields.add("basis")
        return fields

    def clean_levels(self) -> list[str]:
        levels = [part for part in LEVEL_SEPARATORS.split(self.cleaned_data["levels"]) if part]
        for level in levels:
            try:
                Decimal(level)
            except InvalidOperation:
                raise forms.ValidationError(f"“{level}” is not a number.") from None
        return levels

    def clean_confidence(self) -> str | None:
        value = self.cleaned_data["confidence"].strip().rstrip("%").strip()
        if not value:
            return None
        try:
            percent = Decimal(value)
        except InvalidOperation:
            raise forms.ValidationError(f"“{value}” is not a number; write 80 for 80%.") from None
        if not (percent.is_finite() and 0 < percent < 100):
            raise forms.ValidationError("Give a likelihood between 0 and 100%, e.g. 80.")
        return f"{(percent / 100).normalize():f}"

    def service_fields(self) -> dict:
        """What to hand ``rule_create``/``rule_update``: the fields the kind reads; blanks
        take the service's defaults."""
        data = self.cleaned_data
        fields = {
            "kind": self.chosen_kind,
            "name": data["name"],
            "meter": data["meter"] or None,
            "audience": data["audience"],
            "enabled": data["enabled"],
        }
        if "basis" in self.shown:
            fields["basis"] = data["basis"]
        for name in KIND_FIELDS[self.chosen_kind]:
            value = data.get(name)
            if name == "levels" or value not in (None, ""):
                fields[name] = value
        return fields

    @classmethod
    def initial_from(cls, rule: AlertRule) -> dict:
        def shown(value):
            return None if value is None else f"{value.normalize():f}"

        return {
            "kind": rule.kind,
            "meter": rule.meter.code if rule.meter_id else TOTAL_SPEND,
            "basis": rule.basis,
            "levels": ", ".join(shown(level) for level in rule.levels),
            "confidence": shown(rule.confidence * 100) if rule.confidence is not None else None,
            "within_days": rule.within_days,
            "factor": shown(rule.factor),
            "recent_days": rule.recent_days,
            "baseline_days": rule.baseline_days,
            "sensitivity": shown(rule.sensitivity),
            "min_volume": shown(rule.min_volume),
            "audience": list(rule.audience),
            "name": rule.name,
            "enabled": rule.enabled,
        }

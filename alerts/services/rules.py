"""Writes for alert rules: checking, creating, changing and removing them.

A rule belongs to a customer, or, with ``plan`` instead, is the operator's template for
that plan's subscribers (``alerts.services.plan_defaults`` copies templates onto them).
Evaluating rules is ``alerts.services.evaluation``'s job.
"""

from decimal import Decimal

from django.db import transaction

from accounts.errors import InvalidInput
from accounts.models import AuditLog, Customer, Persona
from accounts.services import (
    Actor,
    audit_entry,
    audit_record,
    exact_decimal,
    reject_unknown_fields,
)
from invoicing.models import Plan
from metering.models import Meter

from ..models import AlertRule, Cap, PlanCapDefault
from .caps import parse_quantity

Kind, Basis = AlertRule.Kind, AlertRule.Basis

MAX_LEVELS = 10
# The highest level each percent basis takes: past a tenfold of included units or of the
# commitment a percentage says little; past the hard cap nothing can be used (or counts).
PERCENT_CEILING = {
    Basis.PERCENT_INCLUDED: Decimal(1000),
    Basis.PERCENT_COMMITMENT: Decimal(1000),
    Basis.PERCENT_CAP: Decimal(100),
}
# Total spend (no meter) is measured in money only.
TOTAL_SPEND_BASES = (Basis.MONEY, Basis.PERCENT_COMMITMENT)
MAX_WINDOW_DAYS = 90

# What each kind reads besides meter, basis and audience; the rest is stored empty.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    Kind.THRESHOLD: ("levels",),
    Kind.PREDICTIVE: ("levels", "confidence", "within_days"),
    Kind.VELOCITY: ("factor", "recent_days", "baseline_days", "min_volume"),
    Kind.ANOMALY: ("sensitivity", "min_volume"),
}
DEFAULTS: dict[str, object] = {
    "confidence": Decimal("0.8"),
    "within_days": 14,
    "factor": Decimal(2),
    "recent_days": 7,
    "baseline_days": 28,
    "sensitivity": Decimal(6),
    "min_volume": Decimal(0),
}
TUNING_FIELDS = tuple(DEFAULTS)
RULE_FIELDS = ("name", "kind", "meter", "basis", "levels", *TUNING_FIELDS, "audience", "enabled")


# --- Reading the input ------------------------------------------------------------------


def meter_lookup(value, *, field: str = "meter") -> Meter | None:
    """An active meter, given as itself or by its code; blank is none (total spend)."""
    if value is None or value == "":
        return None
    if isinstance(value, Meter):
        meter = value
    elif isinstance(value, str):
        meter = Meter.objects.filter(code=value.strip()).first()
    else:
        raise InvalidInput(f"{field} must be a meter code.", field=field)
    if meter is None or not meter.is_active:
        shown = value.code if isinstance(value, Meter) else value.strip()[:128]
        raise InvalidInput(
            f"No active meter has code {shown!r}.", field=field, code="unknown_meter"
        )
    return meter


def _number(value, *, field: str, places: int) -> Decimal:
    number = exact_decimal(value, field=field)
    if not number.is_finite():
        raise InvalidInput(f"{field} must be a finite number.", field=field)
    if number != number.quantize(Decimal(1).scaleb(-places)):
        raise InvalidInput(f"{field} takes at most {places} decimals.", field=field)
    return number


def _whole(value, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"{field} must be a whole number of days.", field=field)
    try:
        return int(str(value).strip())
    except ValueError:
        raise InvalidInput(f"{field} must be a whole number of days.", field=field) from None


def _out_of_range(field: str, rule: str) -> InvalidInput:
    return InvalidInput(f"{field} must be {rule}.", field=field, code="out_of_range")


def _shown(number: Decimal) -> str:
    return f"{number.normalize():f}"


def _choice(value, choices, *, field: str) -> str:
    if value not in choices.values:
        raise InvalidInput(
            f"{field} must be one of: {', '.join(choices.values)}.",
            field=field,
            code="invalid_choice",
        )
    return value


# --- Checking a rule --------------------------------------------------------------------


def _hard_cap(rule: AlertRule) -> Cap | PlanCapDefault | None:
    """The hard cap on the rule's meter: the customer's, or the plan's default for a template."""
    if rule.meter_id is None:
        return None
    if rule.customer_id is not None:
        return Cap.objects.filter(customer_id=rule.customer_id, meter_id=rule.meter_id).first()
    return PlanCapDefault.objects.filter(plan_id=rule.plan_id, meter_id=rule.meter_id).first()


def _clean_levels(rule: AlertRule, given: set[str]) -> None:
    if "levels" not in KIND_FIELDS[rule.kind]:
        rule.levels = []
        return
    raw = rule.levels
    if isinstance(raw, str | bytes) or not isinstance(raw, list | tuple):
        raise InvalidInput("levels must be a list of numbers.", field="levels")
    levels = []
    for index, value in enumerate(raw):
        where = f"levels[{index}]"
        level = exact_decimal(value, field=where)
        if not level.is_finite() or level <= 0:
            raise InvalidInput(
                f"Levels must be more than zero; {value} is not.",
                field=where,
                code="level_not_positive",
            )
        level = parse_quantity(level, field=where)
        if level in levels:
            raise InvalidInput(
                f"Level {_shown(level)} is given twice.", field=where, code="levels_duplicate"
            )
        levels.append(level)
    if not levels:
        raise InvalidInput(
            f"A {rule.kind} rule needs a level.", field="levels", code="levels_required"
        )
    if rule.kind == Kind.PREDICTIVE and len(levels) > 1:
        raise InvalidInput(
            "A predictive rule forecasts against one level; make one rule per level.",
            field="levels",
            code="one_level_only",
        )
    if len(levels) > MAX_LEVELS:
        raise InvalidInput(
            f"At most {MAX_LEVELS} levels per rule.", field="levels", code="too_many_levels"
        )
    rule.levels = sorted(levels)
    _check_levels_against_cap(rule)


def _check_levels_against_cap(rule: AlertRule) -> None:
    ceiling = PERCENT_CEILING.get(rule.basis)
    for index, level in enumerate(rule.levels):
        if ceiling is not None and level > ceiling:
            raise InvalidInput(
                f"{_shown(level)}% is out of range: {rule.get_basis_display().lower()} "
                f"levels go up to {_shown(ceiling)}%.",
                field=f"levels[{index}]",
                code="level_out_of_range",
            )
    if rule.basis not in (Basis.PERCENT_CAP, Basis.UNITS, Basis.MONEY) or rule.meter_id is None:
        return
    cap = _hard_cap(rule)
    if rule.basis == Basis.PERCENT_CAP:
        if cap is None:
            whose = "the customer has" if rule.customer_id else "the plan sets"
            raise InvalidInput(
                f"A percentage of the hard cap needs a hard cap, and {whose} none on "
                f"{rule.meter.code}. Set the cap first, or alert on units.",
                field="basis",
                code="no_hard_cap",
            )
        return
    # A soft level past the hard cap would never warn before the cap does.
    if cap is None or cap.measure != rule.basis:
        return
    for index, level in enumerate(rule.levels):
        if level > cap.limit:
            unit = rule.meter.unit_label if cap.measure == Cap.Measure.UNITS else "of spend"
            raise InvalidInput(
                f"{_shown(level)} is above the hard cap of {_shown(cap.limit)} {unit} on "
                f"{rule.meter.code}: a soft alert must come before the cap.",
                field=f"levels[{index}]",
                code="level_above_cap",
            )


def _clean_tuning(rule: AlertRule, given: set[str]) -> None:
    wanted = KIND_FIELDS[rule.kind]
    for name in TUNING_FIELDS:
        if name not in wanted:
            setattr(rule, name, None)
        elif getattr(rule, name) is None:
            setattr(rule, name, DEFAULTS[name])
    if rule.kind == Kind.PREDICTIVE:
        rule.confidence = _number(rule.confidence, field="confidence", places=3)
        if not Decimal(0) < rule.confidence < Decimal(1):
            raise _out_of_range("confidence", "between 0 and 1 (e.g. 0.8 for 80%)")
        rule.within_days = _whole(rule.within_days, field="within_days")
        if not 1 <= rule.within_days <= MAX_WINDOW_DAYS:
            raise _out_of_range("within_days", f"from 1 to {MAX_WINDOW_DAYS} days")
    if rule.kind == Kind.VELOCITY:
        rule.factor = _number(rule.factor, field="factor", places=3)
        if not Decimal(1) < rule.factor < Decimal(100000):
            raise _out_of_range("factor", "more than 1 (2 fires on doubling or halving)")
        rule.recent_days = _whole(rule.recent_days, field="recent_days")
        rule.baseline_days = _whole(rule.baseline_days, field="baseline_days")
        if rule.recent_days < 1:
            raise _out_of_range("recent_days", "at least 1 day")
        if not rule.recent_days < rule.baseline_days <= MAX_WINDOW_DAYS:
            raise _out_of_range(
                "baseline_days", f"longer than recent_days and at most {MAX_WINDOW_DAYS} days"
            )
    if rule.kind == Kind.ANOMALY:
        rule.sensitivity = _number(rule.sensitivity, field="sensitivity", places=2)
        if not Decimal(0) < rule.sensitivity < Decimal(10000):
            raise _out_of_range("sensitivity", "more than 0 (6 robust deviations is a good start)")
    if rule.min_volume is not None:
        number = exact_decimal(rule.min_volume, field="min_volume")
        if number.is_finite() and number < 0:
            raise _out_of_range("min_volume", "zero or more")
        rule.min_volume = parse_quantity(number, field="min_volume", allow_zero=True)


def _clean_audience(rule: AlertRule) -> None:
    audience = rule.audience
    if isinstance(audience, str) or not isinstance(audience, list | tuple | set):
        raise InvalidInput("audience must be a list of personas.", field="audience")
    for persona in audience:
        _choice(persona, Persona, field="audience")
    if not audience:
        raise InvalidInput(
            "Choose at least one persona to hear about this rule.",
            field="audience",
            code="audience_empty",
        )
    # In the personas' own order, once each.
    rule.audience = [p for p in Persona.values if p in audience]


def _clean(rule: AlertRule, given: set[str]) -> None:
    """What every saved rule satisfies; fields its kind does not read are stored empty."""
    _choice(rule.kind, Kind, field="kind")
    _choice(rule.basis, Basis, field="basis")
    if rule.kind == Kind.PREDICTIVE and rule.meter_id is None:
        raise InvalidInput(
            "A predictive rule forecasts a meter's usage: choose the meter (a spend level "
            "on it is fine).",
            field="meter",
            code="meter_required",
        )
    if rule.kind in (Kind.VELOCITY, Kind.ANOMALY):
        if rule.meter_id is None:
            raise InvalidInput(
                f"A {rule.kind} rule watches a meter's daily usage: choose the meter.",
                field="meter",
                code="meter_required",
            )
        if rule.basis != Basis.UNITS:
            if "basis" in given:
                raise InvalidInput(
                    f"A {rule.kind} rule compares units of its meter; basis must be units.",
                    field="basis",
                    code="basis_not_for_kind",
                )
            rule.basis = Basis.UNITS
    if rule.meter_id is None and rule.basis not in TOTAL_SPEND_BASES:
        raise InvalidInput(
            "A rule on total spend measures money: choose a meter, or the basis money or "
            "percent_commitment.",
            field="meter",
            code="meter_required",
        )
    if rule.meter_id is not None and not rule.meter.is_additive:
        counts_units = rule.kind != Kind.THRESHOLD or rule.basis == Basis.UNITS
        if counts_units:
            raise InvalidInput(
                f"Meter {rule.meter.code} {rule.meter.get_aggregation_display().lower()}s, "
                f"which does not add up over days: a {rule.kind} rule on its units needs a "
                "count or sum meter.",
                field="meter",
                code="meter_not_countable",
            )
    _clean_levels(rule, given)
    _clean_tuning(rule, given)
    _clean_audience(rule)
    rule.name = (rule.name or "").strip()
    if len(rule.name) > AlertRule._meta.get_field("name").max_length or "\x00" in rule.name:
        raise InvalidInput("name takes at most 120 characters.", field="name")
    if not isinstance(rule.enabled, bool):
        raise InvalidInput("enabled must be true or false.", field="enabled")


def changed_fields(before: dict, after: dict) -> tuple[dict, dict]:
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def _plain(value):
    if isinstance(value, Decimal):
        return _shown(value)
    return value


def rule_state(rule: AlertRule) -> dict:
    """The rule as the audit log keeps it (meter and plan by code)."""
    return {
        "name": rule.name,
        "kind": rule.kind,
        "meter": rule.meter.code if rule.meter_id else None,
        "basis": rule.basis,
        "levels": [_shown(level) for level in rule.levels],
        **{name: _plain(getattr(rule, name)) for name in TUNING_FIELDS},
        "audience": list(rule.audience),
        "enabled": rule.enabled,
        "plan": rule.plan.code if rule.plan_id else None,
        "plan_default": rule.plan_default_id,
    }


# --- Rules ------------------------------------------------------------------------------


@transaction.atomic
def rule_create(
    *, actor: Actor, customer: Customer | None = None, plan: Plan | None = None, **fields
) -> AlertRule:
    """A customer's rule, or with ``plan`` the operator's default for its subscribers (copied
    onto them at once)."""
    reject_unknown_fields(fields, RULE_FIELDS, what="alert rule")
    if (customer is None) == (plan is None):
        raise InvalidInput(
            "A rule belongs to a customer or, as a default, to a plan: name exactly one.",
            field="customer",
            code="customer_or_plan",
        )
    given = set(fields)
    fields.setdefault("kind", Kind.THRESHOLD)
    if "meter" in fields:
        fields["meter"] = meter_lookup(fields["meter"])
    if fields.get("audience") is None:
        fields.pop("audience", None)
    rule = AlertRule(customer=customer, plan=plan, **fields)
    _clean(rule, given)
    rule.save()
    audit_record(
        actor=actor,
        action="alert_rule.created",
        obj=rule,
        customer=customer,
        after=rule_state(rule),
    )
    if plan is not None:
        from .plan_defaults import plan_defaults_apply  # it builds on this module

        plan_defaults_apply(plan=plan)
    return rule


@transaction.atomic
def rule_update(*, actor: Actor, rule: AlertRule, **changes) -> AlertRule:
    """Change a rule; a person's change to a plan default's copy makes it the customer's own."""
    reject_unknown_fields(changes, RULE_FIELDS, what="alert rule")
    rule = (
        AlertRule.objects.select_for_update(of=("self",))
        .select_related("customer", "plan", "meter")
        .get(pk=rule.pk)
    )
    before = rule_state(rule)
    if "meter" in changes:
        changes["meter"] = meter_lookup(changes["meter"])
    for name, value in changes.items():
        setattr(rule, name, value)
    _clean(rule, set(changes))
    old, new = changed_fields(before, rule_state(rule))
    if not new:
        return rule
    if rule.plan_default_id is not None and actor is not None:
        rule.plan_default = None
        old, new = changed_fields(before, rule_state(rule))
    rule.save()
    audit_record(
        actor=actor,
        action="alert_rule.changed",
        obj=rule,
        customer=rule.customer,
        before=old,
        after=new,
    )
    if rule.plan_id is not None:
        from .plan_defaults import plan_defaults_apply  # it builds on this module

        plan_defaults_apply(plan=rule.plan)
    return rule


@transaction.atomic
def rule_delete(*, actor: Actor, rule: AlertRule) -> None:
    """Remove a rule (its alerts stay as history); a plan default takes its attached copies
    with it."""
    rule = AlertRule.objects.select_related("customer", "plan", "meter").get(pk=rule.pk)
    if rule.plan_id is not None:
        # Before the template goes: deleting it would set the copies' link to NULL and
        # leave them looking like the customers' own rules.
        _remove_rules(actor, AlertRule.objects.filter(plan_default=rule))
    audit_record(
        actor=actor,
        action="alert_rule.removed",
        obj=rule,
        customer=rule.customer,
        before=rule_state(rule),
    )
    rule.delete()


def _remove_rules(actor: Actor, rules) -> int:
    rules = list(rules.select_related("customer", "plan", "meter"))
    if not rules:
        return 0
    AuditLog.objects.bulk_create(
        audit_entry(
            actor=actor,
            action="alert_rule.removed",
            obj=r,
            customer=r.customer,
            before=rule_state(r),
        )
        for r in rules
    )
    AlertRule.objects.filter(pk__in=[r.pk for r in rules]).delete()
    return len(rules)


__all__ = [
    "DEFAULTS",
    "KIND_FIELDS",
    "MAX_LEVELS",
    "RULE_FIELDS",
    "meter_lookup",
    "rule_create",
    "rule_delete",
    "rule_state",
    "rule_update",
]

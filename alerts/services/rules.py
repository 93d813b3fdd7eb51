"""Writes for alert rules, and for the operator's defaults per plan (rules and caps).

A rule belongs to a customer, or, with ``plan`` instead, is the operator's template for
that plan's subscribers. ``plan_defaults_apply`` copies each template onto every current
subscriber of its plan (the copy points back at it through ``plan_default``), keeps
attached copies equal to their template, and removes them when the template goes or the
customer leaves the plan. A person's change to a copy detaches it: from then on it is the
customer's own rule, and the template is never copied onto that customer again. Cap
defaults (``PlanCapDefault``) work the same way through ``cap_set``, for subscribers
without their own cap on the meter.

Only the rules are kept here; evaluating them is ``alerts.services.evaluation``'s job.
"""

import dataclasses
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.errors import InvalidInput
from accounts.models import AuditLog, Customer, Persona
from accounts.services import (
    Actor,
    audit_entry,
    audit_record,
    exact_decimal,
    reject_unknown_fields,
)
from invoicing.models import Plan, PriceComponent, Subscription
from metering.models import Meter

from ..models import AlertRule, Cap, PlanCapDefault
from .caps import cap_remove, cap_set, parse_quantity

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


# --- Cap defaults per plan --------------------------------------------------------------


def _plan_prices(plan: Plan, meter: Meter) -> bool:
    """The plan's newest version has a usage price for ``meter``."""
    newest = plan.versions.order_by("-version").first()
    return (
        newest is not None
        and PriceComponent.objects.filter(
            plan_version=newest, kind=PriceComponent.Kind.USAGE, meter=meter
        ).exists()
    )


def _cap_default_state(default: PlanCapDefault) -> dict:
    return {
        "plan": default.plan.code,
        "meter": default.meter.code,
        "measure": default.measure,
        "limit": _shown(default.limit),
        "on_exceed": default.on_exceed,
    }


@transaction.atomic
def plan_cap_default_set(
    *,
    actor: Actor,
    plan: Plan,
    meter,
    limit,
    measure: str = Cap.Measure.UNITS,
    on_exceed: str = Cap.OnExceed.REJECT,
) -> PlanCapDefault:
    """Create or change the plan's default cap on ``meter``; subscribers without their own
    cap on it get it (or its change) at once."""
    meter = meter_lookup(meter)
    if meter is None:
        raise InvalidInput("Choose the meter to cap.", field="meter", code="meter_required")
    if not meter.is_additive:
        raise InvalidInput(
            f"Meter {meter.code} {meter.get_aggregation_display().lower()}s: only count and "
            "sum meters can be capped.",
            field="meter",
            code="meter_not_cappable",
        )
    limit = parse_quantity(limit, field="limit", allow_zero=True)
    _choice(measure, Cap.Measure, field="measure")
    _choice(on_exceed, Cap.OnExceed, field="on_exceed")
    if measure == Cap.Measure.MONEY and not _plan_prices(plan, meter):
        raise InvalidInput(
            f"Plan {plan.code} does not price {meter.code}, so a spend cap on it has nothing "
            "to count; cap its units instead.",
            field="measure",
            code="meter_not_priced",
        )
    default = (
        PlanCapDefault.objects.select_for_update(of=("self",))
        .select_related("plan", "meter")
        .filter(plan=plan, meter=meter)
        .first()
    )
    before = None if default is None else _cap_default_state(default)
    if default is None:
        default = PlanCapDefault(plan=plan, meter=meter)
    default.limit, default.measure, default.on_exceed = limit, measure, on_exceed
    default.save()
    after = _cap_default_state(default)
    if before != after:
        audit_record(
            actor=actor,
            action="plan_cap_default.set",
            obj=default,
            customer=None,
            before=before,
            after=after,
        )
        plan_defaults_apply(plan=plan)
    return default


@transaction.atomic
def plan_cap_default_remove(*, actor: Actor, default: PlanCapDefault) -> None:
    """Remove a plan's default cap, and the caps still copied from it."""
    default = PlanCapDefault.objects.select_related("plan", "meter").get(pk=default.pk)
    for cap in Cap.objects.select_related("customer", "meter").filter(plan_default=default):
        cap_remove(actor=actor, cap=cap)
    audit_record(
        actor=actor,
        action="plan_cap_default.removed",
        obj=default,
        customer=None,
        before=_cap_default_state(default),
    )
    default.delete()


# --- Applying the plan defaults ---------------------------------------------------------


@dataclasses.dataclass
class PlanDefaultsApplied:
    rules_created: int = 0
    rules_updated: int = 0
    rules_removed: int = 0
    caps_set: int = 0
    caps_removed: int = 0
    # (customer id, plan cap default id) a default could not apply to, with the reason.
    caps_skipped: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> int:
        return (
            self.rules_created
            + self.rules_updated
            + self.rules_removed
            + self.caps_set
            + self.caps_removed
        )


def plan_subscribers(plan_ids, *, now: datetime) -> dict[int, set[int]]:
    """{plan id: customers whose current subscription is on it}, in one query. The current
    subscription is ``invoicing.selectors.subscription_current``'s: the latest started one
    still billing (already started at ``now``)."""
    latest = (
        Subscription.objects.filter(current_period_end__isnull=False, started_at__lte=now)
        .order_by("customer_id", "-started_at")
        .distinct("customer_id")
        .values("pk")
    )
    found: dict[int, set[int]] = {pk: set() for pk in plan_ids}
    rows = Subscription.objects.filter(
        pk__in=latest, plan_version__plan_id__in=list(plan_ids)
    ).values_list("plan_version__plan_id", "customer_id")
    for plan_id, customer_id in rows:
        found[plan_id].add(customer_id)
    return found


def _declined(
    template_ids, *, model=AlertRule, actions=("alert_rule.changed", "alert_rule.removed")
):
    """(customer id, template id) of copies a person changed or removed: the template is
    not copied onto that customer again. (The audit log is where that fact lives: the
    change itself nulls the copy's link, and a removal leaves no row.)"""
    rows = (
        AuditLog.objects.filter(
            action__in=list(actions),
            object_type=model._meta.label_lower,
            before__plan_default__in=list(template_ids),
        )
        .filter(Q(actor_user__isnull=False) | Q(actor_api_key__isnull=False))
        .values_list("customer_id", "before__plan_default")
    )
    return {(customer_id, template_id) for customer_id, template_id in rows}


def _copy_values(template: AlertRule) -> dict:
    return {name: getattr(template, name) for name in RULE_FIELDS}


def _apply_rules(plan: Plan | None, subscribers, applied: PlanDefaultsApplied) -> None:
    templates = AlertRule.objects.filter(plan__isnull=False).select_related("meter", "plan")
    copies = AlertRule.objects.filter(plan_default__isnull=False)
    if plan is not None:
        templates = templates.filter(plan=plan)
        copies = copies.filter(plan_default__plan=plan)
    templates = {t.pk: t for t in templates}
    copies = list(copies.select_related("customer", "meter", "plan_default__plan"))

    # Copies of customers who left the template's plan go (the customer never made them theirs).
    gone = [c.pk for c in copies if c.customer_id not in subscribers[c.plan_default.plan_id]]
    applied.rules_removed += _remove_rules(None, AlertRule.objects.filter(pk__in=gone))
    copies = [c for c in copies if c.pk not in set(gone)]

    # Copies that drifted from their template take its values again.
    stale: dict[int, list[AlertRule]] = {}
    for copy in copies:
        template = templates[copy.plan_default_id]
        if _copy_values(copy) != _copy_values(template):
            stale.setdefault(template.pk, []).append(copy)
    entries = []
    for template_id, outdated in stale.items():
        values = _copy_values(templates[template_id])
        AlertRule.objects.filter(pk__in=[c.pk for c in outdated]).update(
            **values, updated_at=timezone.now()
        )
        for copy in outdated:
            before = rule_state(copy)
            for name, value in values.items():
                setattr(copy, name, value)
            old, new = changed_fields(before, rule_state(copy))
            entries.append(
                audit_entry(
                    actor=None,
                    action="alert_rule.changed",
                    obj=copy,
                    customer=copy.customer,
                    before=old,
                    after=new,
                )
            )
        applied.rules_updated += len(outdated)

    # Subscribers without a copy get one, unless they made theirs their own before.
    have = {(c.customer_id, c.plan_default_id) for c in copies} | _declined(templates)
    new_copies = [
        AlertRule(customer_id=customer_id, plan_default=template, **_copy_values(template))
        for template in templates.values()
        for customer_id in sorted(subscribers[template.plan_id])
        if (customer_id, template.pk) not in have
    ]
    if new_copies:
        AlertRule.objects.bulk_create(new_copies)
        customers = Customer.objects.in_bulk({c.customer_id for c in new_copies})
        for copy in new_copies:
            copy.customer = customers[copy.customer_id]
            entries.append(
                audit_entry(
                    actor=None,
                    action="alert_rule.created",
                    obj=copy,
                    customer=copy.customer,
                    after=rule_state(copy),
                )
            )
        applied.rules_created += len(new_copies)
    AuditLog.objects.bulk_create(entries)


def _cap_values(item: Cap | PlanCapDefault) -> tuple:
    return (item.measure, item.limit, item.on_exceed)


def _apply_caps(plan: Plan | None, subscribers, applied: PlanDefaultsApplied) -> None:
    defaults = PlanCapDefault.objects.select_related("meter", "plan")
    attached = Cap.objects.filter(plan_default__isnull=False)
    if plan is not None:
        defaults = defaults.filter(plan=plan)
        attached = attached.filter(plan_default__plan=plan)
    defaults = list(defaults)

    for cap in attached.select_related("customer", "meter", "plan_default"):
        if cap.customer_id not in subscribers.get(cap.plan_default.plan_id, ()):
            cap_remove(actor=None, cap=cap)
            applied.caps_removed += 1

    # A copy a person removed stays removed (a change detaches it, and it then counts as
    # the customer's own cap below).
    declined = _declined([d.pk for d in defaults], model=Cap, actions=("cap.removed",))
    wanted = {
        (c, d.meter_id): d
        for d in defaults
        for c in subscribers[d.plan_id]
        if (c, d.pk) not in declined
    }
    if not wanted:
        return
    caps = {
        (cap.customer_id, cap.meter_id): cap
        for cap in Cap.objects.filter(
            customer_id__in={c for c, _ in wanted}, meter_id__in={m for _, m in wanted}
        )
    }
    to_set = []
    for key, default in wanted.items():
        cap = caps.get(key)
        if cap is None or (
            cap.plan_default_id is not None
            and (cap.plan_default_id != default.pk or _cap_values(cap) != _cap_values(default))
        ):
            to_set.append((key[0], default))
    customers = Customer.objects.in_bulk({c for c, _ in to_set})
    for customer_id, default in to_set:
        try:
            # cap_set with no actor keeps the cap attached and moves its windows' limits.
            cap = cap_set(
                actor=None,
                customer=customers[customer_id],
                meter=default.meter,
                limit=default.limit,
                on_exceed=default.on_exceed,
                measure=default.measure,
            )
        except InvalidInput as exc:
            # e.g. a spend cap on a meter the customer's (older) plan version does not price
            applied.caps_skipped.append((customer_id, default.pk, exc.code))
            continue
        if cap.plan_default_id != default.pk:
            Cap.objects.filter(pk=cap.pk).update(plan_default=default)
        applied.caps_set += 1


@transaction.atomic
def plan_defaults_apply(*, plan: Plan | None = None, now: datetime | None = None):
    """Bring every current subscriber of ``plan`` (of every plan: None) in line with its
    plan's default rules and caps. Idempotent: a second run changes nothing. Queries do
    not grow with the subscribers except for caps that change (each through ``cap_set``)."""
    now = now or timezone.now()
    plan_ids = set(
        AlertRule.objects.filter(plan__isnull=False).values_list("plan_id", flat=True)
    ) | set(PlanCapDefault.objects.values_list("plan_id", flat=True))
    # Plans whose copies may need removing, though the plan has no defaults left.
    plan_ids |= set(
        AlertRule.objects.filter(plan_default__isnull=False).values_list(
            "plan_default__plan_id", flat=True
        )
    ) | set(
        Cap.objects.filter(plan_default__isnull=False).values_list(
            "plan_default__plan_id", flat=True
        )
    )
    if plan is not None:
        plan_ids = {plan.pk}
    subscribers = plan_subscribers(plan_ids, now=now)
    applied = PlanDefaultsApplied()
    _apply_caps(plan, subscribers, applied)
    _apply_rules(plan, subscribers, applied)
    return applied


__all__ = [
    "DEFAULTS",
    "KIND_FIELDS",
    "MAX_LEVELS",
    "RULE_FIELDS",
    "PlanDefaultsApplied",
    "meter_lookup",
    "plan_cap_default_remove",
    "plan_cap_default_set",
    "plan_defaults_apply",
    "plan_subscribers",
    "rule_create",
    "rule_delete",
    "rule_state",
    "rule_update",
]

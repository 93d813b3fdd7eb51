"""The operator's defaults per plan: default caps, and copying default rules and caps
onto the plan's subscribers.

``plan_defaults_apply`` copies each template (a rule with ``plan`` instead of a customer)
onto every current subscriber of its plan (the copy points back at it through
``plan_default``), keeps attached copies equal to their template, and removes them when
the template goes or the customer leaves the plan. A person's change to a copy detaches
it: from then on it is the customer's own rule, and the template is never copied onto
that customer again. Cap defaults (``PlanCapDefault``) work the same way through
``cap_set``, for subscribers without their own cap on the meter; one a person removed
stays removed.
"""

import dataclasses
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.errors import InvalidInput
from accounts.models import AuditLog, Customer
from accounts.services import Actor, audit_entry, audit_record
from invoicing.models import Plan, PriceComponent, Subscription
from metering.models import Meter

from ..models import AlertRule, Cap, PlanCapDefault
from .caps import cap_remove, cap_set, parse_quantity
from .rules import (
    RULE_FIELDS,
    _choice,
    _remove_rules,
    _shown,
    changed_fields,
    meter_lookup,
    rule_state,
)

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
    "PlanDefaultsApplied",
    "plan_cap_default_remove",
    "plan_cap_default_set",
    "plan_defaults_apply",
    "plan_subscribers",
]

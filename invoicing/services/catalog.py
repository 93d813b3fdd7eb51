"""Writes for the catalog: plans and their immutable versions.

A price change is ``plan_version_create``: the new version gets the next number, its
components are validated by the rating engine itself (so the catalog can never hold a
price the engine cannot rate), and nothing about an existing version ever changes.
"""

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Max

from accounts.errors import Conflict, InvalidInput
from accounts.services import (
    Actor,
    audit_record,
    exact_decimal,
    reject_unknown_fields,
    validate_model,
)
from metering.models import Meter

from ..models import Interval, Plan, PlanVersion, PriceComponent
from ..pricing import period_pricing

Kind = PriceComponent.Kind

COMPONENT_FIELDS = {
    Kind.FLAT_FEE: {"description", "amount"},
    Kind.USAGE: {
        "description",
        "meter",
        "pricing_model",
        "unit_price",
        "tiers",
        "package_size",
        "included_units",
    },
    Kind.MINIMUM_SPEND: {"description", "amount"},
    Kind.COMMITMENT: {"description", "amount", "commitment_months"},
    Kind.PERCENT_DISCOUNT: {"description", "percent"},
    Kind.FIXED_DISCOUNT: {"description", "amount"},
    Kind.MAXIMUM: {"description", "amount"},
}
DECIMAL_FIELDS = ("amount", "unit_price", "package_size", "included_units", "percent")


def _decimal(value, *, field: str) -> Decimal:
    result = exact_decimal(value, field=field)
    if not result.is_finite():
        raise InvalidInput(f"{field} must be a finite number.", field=field)
    return result


def _tiers(value, *, field: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("tiers must be a non-empty list.", field=field)
    tiers = []
    for i, tier in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(tier, dict):
            raise InvalidInput(f"{where} must be an object.", field=where)
        reject_unknown_fields(tier, {"up_to", "unit_price", "flat_fee"}, what="tier")
        up_to = tier.get("up_to")
        tiers.append(
            {
                "up_to": None if up_to is None else str(_decimal(up_to, field=f"{where}.up_to")),
                "unit_price": str(
                    _decimal(tier.get("unit_price", "0"), field=f"{where}.unit_price")
                ),
                "flat_fee": str(_decimal(tier.get("flat_fee", "0"), field=f"{where}.flat_fee")),
            }
        )
    return tiers


def _component(version: PlanVersion, position: int, data) -> PriceComponent:
    where = f"components[{position}]"
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} must be an object.", field=where)
    kind = data.get("kind")
    if kind not in COMPONENT_FIELDS:
        raise InvalidInput(
            f"{where}.kind must be one of: {', '.join(COMPONENT_FIELDS)}.", field=f"{where}.kind"
        )
    fields = {k: v for k, v in data.items() if k != "kind"}
    reject_unknown_fields(fields, COMPONENT_FIELDS[kind], what=f"{kind} component")
    component = PriceComponent(plan_version=version, position=position, kind=kind)
    description = fields.get("description", "")
    if not isinstance(description, str):
        raise InvalidInput(f"{where}.description must be text.", field=f"{where}.description")
    if "\x00" in description:
        raise InvalidInput(
            f"{where}.description cannot contain NUL characters.",
            field=f"{where}.description",
            code="null_characters_not_allowed",
        )
    component.description = description[:200]
    for name in DECIMAL_FIELDS:
        if fields.get(name) is not None:
            setattr(component, name, _decimal(fields[name], field=f"{where}.{name}"))
    if "tiers" in fields:
        component.tiers = _tiers(fields["tiers"], field=f"{where}.tiers")
    if kind == Kind.USAGE:
        code = fields.get("meter")
        # (PostgreSQL text never holds NUL: no meter has such a code.)
        component.meter = (
            Meter.objects.filter(code=code).first()
            if isinstance(code, str) and "\x00" not in code
            else None
        )
        if component.meter is None:
            raise InvalidInput(f"No meter has code {code!r}.", field=f"{where}.meter")
        component.pricing_model = fields.get("pricing_model", "")
        if component.pricing_model not in PriceComponent.Model.values:
            raise InvalidInput(
                f"{where}.pricing_model must be one of: {', '.join(PriceComponent.Model.values)}.",
                field=f"{where}.pricing_model",
            )
    if kind == Kind.COMMITMENT:
        months = fields.get("commitment_months", 12)
        if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
            raise InvalidInput(
                "commitment_months must be a whole number of months (1-120).",
                field=f"{where}.commitment_months",
            )
        component.commitment_months = months
    if "amount" in COMPONENT_FIELDS[kind] and component.amount is None:
        raise InvalidInput(f"{where}.amount is required.", field=f"{where}.amount")
    if kind == Kind.PERCENT_DISCOUNT and component.percent is None:
        raise InvalidInput(f"{where}.percent is required.", field=f"{where}.percent")
    validate_model(component, exclude=["plan_version"])
    return component


@transaction.atomic
def plan_create(
    *, actor: Actor, code: str, name: str, currency: str, description: str = ""
) -> Plan:
    plan = Plan(code=code, name=name, currency=currency, description=description)
    validate_model(plan)
    if Plan.objects.filter(code=code).exists():
        raise Conflict(f"A plan with code {code!r} exists.", code="plan_exists", field="code")
    plan.save()
    audit_record(
        actor=actor,
        action="plan.created",
        obj=plan,
        customer=None,
        after={"code": code, "name": name, "currency": currency},
    )
    return plan


@transaction.atomic
def plan_version_create(
    *, actor: Actor, plan: Plan, interval: str, components: list, notes: str = ""
) -> PlanVersion:
    """Publish the next version of ``plan`` with its complete set of prices."""
    if interval not in Interval.values:
        raise InvalidInput(
            f"interval must be one of: {', '.join(Interval.values)}.", field="interval"
        )
    if not isinstance(components, list) or not components:
        raise InvalidInput("A plan version needs at least one price component.", field="components")
    if not isinstance(notes, str):
        raise InvalidInput("notes must be text.", field="notes")
    if "\x00" in notes:
        raise InvalidInput(
            "notes cannot contain NUL characters.",
            field="notes",
            code="null_characters_not_allowed",
        )
    # Lock the plan row: concurrent publishers take turns for the next number.
    Plan.objects.select_for_update().get(pk=plan.pk)
    number = (plan.versions.aggregate(last=Max("version"))["last"] or 0) + 1
    version = PlanVersion.objects.create(plan=plan, version=number, interval=interval, notes=notes)
    parts = [_component(version, position, data) for position, data in enumerate(components)]
    try:
        PriceComponent.objects.bulk_create(parts)
    except IntegrityError as exc:
        raise InvalidInput(
            "A plan version prices each meter once.", field="components", code="duplicate_meter"
        ) from exc
    try:
        period_pricing(plan.currency, parts)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"These prices cannot be rated: {exc}.", field="components") from exc
    audit_record(
        actor=actor,
        action="plan.version_published",
        obj=version,
        customer=None,
        after={
            "plan": plan.code,
            "version": number,
            "interval": interval,
            "components": components,
        },
    )
    return version

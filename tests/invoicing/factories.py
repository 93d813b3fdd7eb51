"""Plans, subscriptions and usage for invoicing tests, built through the real services."""

from datetime import datetime

from invoicing import services
from metering.ingest import events_ingest
from tests.metering.factories import event


def plan_version(*, code="growth", currency="USD", interval="month", components, name=None):
    from invoicing.models import Plan

    plan = Plan.objects.filter(code=code).first() or services.plan_create(
        actor=None, code=code, name=name or code.title(), currency=currency
    )
    return services.plan_version_create(
        actor=None, plan=plan, interval=interval, components=components
    )


def flat(amount: str, description="Platform fee") -> dict:
    return {"kind": "flat_fee", "amount": amount, "description": description}


def per_unit(meter, unit_price: str, included: str = "0") -> dict:
    return {
        "kind": "usage",
        "meter": meter.code,
        "pricing_model": "per_unit",
        "unit_price": unit_price,
        "included_units": included,
    }


def subscribe(customer, version, *, at: datetime, anchor: datetime | None = None):
    return services.subscription_create(
        actor=None, customer=customer, plan_version=version, started_at=at, billing_anchor=anchor
    )


def ingest_usage(customer, meter, moments, *, now: datetime, prefix="e", **properties):
    """One event per moment (each counts 1 on a count meter)."""
    batch = [
        event(
            customer,
            f"{prefix}-{i}",
            name=meter.code,
            ts=moment.isoformat().replace("+00:00", "Z"),
            **properties,
        )
        for i, moment in enumerate(moments)
    ]
    result = events_ingest(events=batch, now=now)
    assert result.accepted == len(batch), [r.as_dict() for r in result.results]
    return result

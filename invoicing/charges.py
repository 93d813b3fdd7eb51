"""What a subscription's period charges: its phases, each rated with its plan version.

Shared by period close (usage from the batch track, with the reconciliation evidence)
and the upcoming-invoice preview (usage so far from the real-time track): the caller
says where usage comes from, this module does the rest the same way for both.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection

from .models import InvoiceLine, PlanVersion, PriceComponent, Subscription
from .periods import INTERVAL_MONTHS, period_containing, period_index_at, proration_fraction
from .pricing import period_pricing
from .rating import PeriodPricing, rate_period

Kind = PriceComponent.Kind


@dataclass(frozen=True)
class Span:
    """A stretch of the period on one plan version."""

    plan_version: PlanVersion
    start: datetime
    end: datetime
    phase_start: datetime


UsageOf = Callable[[PriceComponent, Span], Decimal]


class Catalog:
    """Plan versions' prices, read and checked once per run: versions never change (a
    database trigger sees to it), so a run rating thousands of subscriptions on a handful
    of versions reads each one once."""

    def __init__(self) -> None:
        self._components: dict[int, list[PriceComponent]] = {}
        self._pricing: dict[int, PeriodPricing] = {}

    def components(self, version: PlanVersion) -> list[PriceComponent]:
        if version.pk not in self._components:
            self._components[version.pk] = list(
                version.components.select_related("meter").order_by("position")
            )
        return self._components[version.pk]

    def pricing(self, version: PlanVersion) -> PeriodPricing:
        if version.pk not in self._pricing:
            self._pricing[version.pk] = period_pricing(
                version.plan.currency, self.components(version)
            )
        return self._pricing[version.pk]


def spans(subscription: Subscription, start: datetime, end: datetime) -> list[Span]:
    """The period's stretches per plan version. Reads ``subscription.phases.all()``, so a
    caller closing many subscriptions prefetches their phases once."""
    found = []
    phases = sorted(subscription.phases.all(), key=lambda phase: phase.starts_at)
    for phase in phases:
        if phase.starts_at >= end:
            continue
        span_start = max(start, phase.starts_at)
        span_end = min(end, phase.ends_at or end)
        if span_start < span_end:
            found.append(Span(phase.plan_version, span_start, span_end, phase.starts_at))
    return found


def starts_commitment_term(subscription: Subscription, span: Span, months: int) -> bool:
    """A commitment term starts with the phase, then every ``months`` months after it."""
    if span.start == span.phase_start:
        return True
    anchor, interval = subscription.billing_anchor, subscription.interval
    elapsed = (
        period_index_at(anchor, interval, span.start)
        - period_index_at(anchor, interval, span.phase_start)
    ) * INTERVAL_MONTHS[interval]
    return elapsed % months == 0


@dataclass(frozen=True)
class Carried:
    """What a period takes over from the invoice before it (void ones aside)."""

    commitment_balance_minor: int = 0
    late_usage_through: datetime | None = None  # late events received before it are carried


def carried_from_previous(
    periods: list[tuple[int, datetime]],
) -> dict[tuple[int, datetime], Carried]:
    """For each (subscription id, period start): what the latest invoice before that
    period (void ones aside) hands on. One query for any number of periods."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT p.subscription_id, p.period_start,
                   previous.commitment_balance_after_minor, previous.late_usage_through
            FROM unnest(%s::bigint[], %s::timestamptz[]) AS p(subscription_id, period_start)
            LEFT JOIN LATERAL (
                SELECT i.commitment_balance_after_minor, i.late_usage_through
                FROM invoicing_invoice i
                WHERE i.subscription_id = p.subscription_id
                  AND i.period_start < p.period_start AND i.status <> 'void'
                ORDER BY i.period_start DESC LIMIT 1
            ) AS previous ON true
            """,
            [[pk for pk, _ in periods], [start for _, start in periods]],
        )
        return {
            (pk, start): Carried(balance or 0, late_through)
            for pk, start, balance, late_through in cursor.fetchall()
        }


def _tiers_json(line) -> list[dict]:
    return [
        {
            "tier": s.tier,
            "first_unit": str(s.first_unit),
            "up_to": None if s.up_to is None else str(s.up_to),
            "quantity": str(s.quantity),
            "unit_price": str(s.unit_price),
            "flat_fee": str(s.flat_fee),
            "amount": str(s.amount),
        }
        for s in line.tiers
    ]


def rate_subscription_period(
    subscription: Subscription,
    start: datetime,
    end: datetime,
    *,
    usage_of: UsageOf,
    commitment_balance_minor: int,
    catalog: Catalog | None = None,
) -> tuple[list[InvoiceLine], int]:
    """Unsaved invoice lines for ``[start, end)`` and the commitment balance after it.

    Flat fees prorate against the full anniversary period the range lies in, so a period
    cut short (a cancel, a plan change) bills its share by the second.
    """
    _, full_start, full_end = period_containing(
        subscription.billing_anchor, subscription.interval, start
    )
    catalog = catalog or Catalog()
    balance = commitment_balance_minor
    lines: list[InvoiceLine] = []
    for span in spans(subscription, start, end):
        components = catalog.components(span.plan_version)
        by_ref = {str(c.pk): c for c in components}
        usage = {str(c.pk): usage_of(c, span) for c in components if c.kind == Kind.USAGE}
        months = next((c.commitment_months for c in components if c.kind == Kind.COMMITMENT), None)
        rated = rate_period(
            catalog.pricing(span.plan_version),
            usage,
            fraction=proration_fraction(full_start, full_end, span.start, span.end),
            commitment_balance_minor=balance,
            starts_commitment_term=bool(months)
            and starts_commitment_term(subscription, span, months),
        )
        balance = rated.commitment_balance_minor
        for line in rated.lines:
            component = by_ref.get(line.ref or "")
            description = line.description
            if component is not None:
                description = component.description or (
                    component.meter.name if component.meter else component.get_kind_display()
                )
            lines.append(
                InvoiceLine(
                    position=len(lines) + 1,
                    kind=line.kind,
                    description=description[:300],
                    meter=component.meter if component is not None else None,
                    price_component=component,
                    period_start=span.start,
                    period_end=span.end,
                    quantity=line.quantity,
                    included_units=line.included_units,
                    unit_price=line.unit_price,
                    amount_minor=line.amount_minor,
                    tiers=_tiers_json(line),
                )
            )
    return lines, balance

"""Reads for invoicing: plans, subscriptions, invoices, and the upcoming-invoice preview."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from accounts.models import Customer
from accounts.tenancy import principal_customer_id, scoped
from metering import selectors as metering

from .charges import Catalog, Span, carried_from_previous, rate_subscription_period
from .currency import round_half_up
from .models import (
    CreditNote,
    Dispute,
    Invoice,
    InvoiceLine,
    Plan,
    PlanVersion,
    PriceComponent,
    Subscription,
)
from .pricing import usage_price
from .rating import UsagePrice


def plan_list(*, include_inactive: bool = False) -> QuerySet[Plan]:
    plans = Plan.objects.prefetch_related(
        Prefetch("versions", queryset=PlanVersion.objects.prefetch_related("components__meter"))
    )
    return plans if include_inactive else plans.filter(is_active=True)


def subscription_current(*, customer: Customer) -> Subscription | None:
    """The customer's subscription still billing (active, or canceled with a period left)."""
    return (
        Subscription.objects.filter(customer=customer, current_period_end__isnull=False)
        .select_related("plan_version__plan")
        .order_by("-started_at")
        .first()
    )


def invoice_list(*, principal, customer: Customer | None = None) -> QuerySet[Invoice]:
    """Invoices visible to ``principal``; customers never see drafts or held ones."""
    invoices = scoped(Invoice.objects.select_related("customer"), principal)
    if principal_customer_id(principal) is not None:
        invoices = invoices.exclude(status__in=Invoice.EDITABLE)
    if customer is not None:
        invoices = invoices.filter(customer=customer)
    return invoices


def invoice_lines(*, invoice: Invoice) -> QuerySet[InvoiceLine]:
    return invoice.lines.select_related("meter").order_by("position")


def credit_note_list(*, principal, invoice: Invoice | None = None) -> QuerySet[CreditNote]:
    notes = scoped(CreditNote.objects.select_related("invoice"), principal)
    return notes.filter(invoice=invoice) if invoice is not None else notes


def dispute_list(*, principal) -> QuerySet[Dispute]:
    return scoped(Dispute.objects.select_related("invoice_line__invoice"), principal)


@dataclass(frozen=True)
class UpcomingInvoice:
    subscription: Subscription
    currency: str
    period_start: datetime
    period_end: datetime
    as_of: datetime
    lines: list[InvoiceLine]  # unsaved: usage so far, real-time track
    total_minor: int
    projected_total_minor: int  # the period's usage so far extended to its end


def upcoming_invoice(*, customer: Customer, now: datetime | None = None) -> UpcomingInvoice | None:
    """The current period rated as if it closed now, from the real-time track, plus a
    straight-line projection to the period's end (forecasting does better, later)."""
    now = now or timezone.now()
    subscription = subscription_current(customer=customer)
    if subscription is None:
        return None
    start, end = subscription.billed_through, subscription.current_period_end
    as_of = min(max(now, start), end)
    elapsed = Fraction(int((as_of - start).total_seconds() * 1_000_000))
    length = Fraction(int((end - start).total_seconds() * 1_000_000))

    def usage_so_far(component: PriceComponent, span: Span) -> Decimal:
        return (
            metering.usage_total(
                customer=customer, meter=component.meter, start=span.start, end=min(span.end, as_of)
            )
            if span.start < as_of
            else Decimal(0)
        )

    def projected(component: PriceComponent, span: Span) -> Decimal:
        so_far = usage_so_far(component, span)
        # Gauges and maxima do not grow with time; counts and sums do.
        if not elapsed or component.meter.aggregation not in ("count", "sum"):
            return so_far
        return Decimal(round_half_up(Fraction(so_far) * length / elapsed))

    balance = carried_from_previous([(subscription.pk, start)])[
        (subscription.pk, start)
    ].commitment_balance_minor
    catalog = Catalog()  # both ratings read the plan's prices once
    lines, _ = rate_subscription_period(
        subscription,
        start,
        end,
        usage_of=usage_so_far,
        commitment_balance_minor=balance,
        catalog=catalog,
    )
    projected_lines, _ = rate_subscription_period(
        subscription,
        start,
        end,
        usage_of=projected,
        commitment_balance_minor=balance,
        catalog=catalog,
    )
    return UpcomingInvoice(
        subscription=subscription,
        currency=subscription.plan_version.plan.currency,
        period_start=start,
        period_end=end,
        as_of=as_of,
        lines=lines,
        total_minor=sum(line.amount_minor for line in lines),
        projected_total_minor=sum(line.amount_minor for line in projected_lines),
    )


def line_disputable(invoice: Invoice, line: InvoiceLine) -> bool:
    """A customer can dispute a line of a billed (finalized, not void) invoice that
    charges an amount: a discount, drawdown or cap line has nothing to credit."""
    return invoice.status in Invoice.BILLED and line.amount_minor > 0


@dataclass(frozen=True)
class MeterPrice:
    price: UsagePrice
    currency: str


def meter_price(*, customer: Customer, meter) -> MeterPrice | None:
    """How the customer's current plan version prices ``meter``, or ``None`` when it has no
    subscription or the plan does not price the meter (money caps and spend alerts read it)."""
    subscription = subscription_current(customer=customer)
    if subscription is None:
        return None
    component = PriceComponent.objects.filter(
        plan_version_id=subscription.plan_version_id, kind=PriceComponent.Kind.USAGE, meter=meter
    ).first()
    if component is None:
        return None
    return MeterPrice(usage_price(component), subscription.plan_version.plan.currency)

"""Reads for invoicing: plans, subscriptions, invoices, and the upcoming-invoice preview."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from django.db.models import Prefetch, QuerySet, prefetch_related_objects
from django.utils import timezone

from accounts.models import Customer
from accounts.tenancy import principal_customer_id, scoped
from metering import selectors as metering

from .charges import (
    Catalog,
    Span,
    UsageOf,
    carried_from_previous,
    rate_subscription_period,
    spans,
)
from .currency import format_money, round_half_up, to_minor
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
from .periods import INTERVAL_MONTHS
from .pricing import period_pricing, usage_price
from .rating import RatedLine, UsagePrice, rate_period


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

    measured: dict[tuple[int, datetime], Decimal] = {}

    def usage_so_far(component: PriceComponent, span: Span) -> Decimal:
        # Both ratings below ask for each component's span: measure it once.
        key = (component.pk, span.start)
        if key not in measured:
            measured[key] = (
                metering.usage_total(
                    customer=customer,
                    meter=component.meter,
                    start=span.start,
                    end=min(span.end, as_of),
                )
                if span.start < as_of
                else Decimal(0)
            )
        return measured[key]

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


# --- Rating usage that has not happened yet (forecasts, plan comparisons) ---------------


@dataclass(frozen=True)
class RatedScenario:
    lines: list[InvoiceLine]  # unsaved
    total_minor: int
    commitment_balance_after_minor: int


@dataclass(frozen=True)
class PeriodScenarios:
    """One billing period rated under several usages, the same way period close rates it."""

    subscription: Subscription
    currency: str
    period_start: datetime
    period_end: datetime
    carried_balance_minor: int  # prepaid commitment balance the period takes over
    # The prepaid commitment per term of the period's last plan version, if it has one.
    commitment_minor: int | None
    commitment_months: int | None
    rated: dict[str, RatedScenario]


def subscription_period_scenarios(
    *,
    subscription: Subscription,
    start: datetime,
    end: datetime,
    scenarios: Mapping[str, UsageOf],
) -> PeriodScenarios:
    """``[start, end)`` of ``subscription`` rated once per named usage (``usage_of`` as
    ``rate_subscription_period`` takes it), with the commitment balance carried from the
    invoice before. Queries: the phases with their versions, the balance, and each
    version's prices, however many scenarios (plus what ``usage_of`` reads). The rating
    engine is the one period close uses."""
    # Every rating walks the phases and their versions: read them once.
    prefetch_related_objects([subscription], "phases__plan_version__plan")
    balance = carried_from_previous([(subscription.pk, start)])[
        (subscription.pk, start)
    ].commitment_balance_minor
    catalog = Catalog()
    rated = {}
    for name, usage_of in scenarios.items():
        lines, after = rate_subscription_period(
            subscription,
            start,
            end,
            usage_of=usage_of,
            commitment_balance_minor=balance,
            catalog=catalog,
        )
        rated[name] = RatedScenario(lines, sum(line.amount_minor for line in lines), after)
    currency = subscription.plan_version.plan.currency
    commitment = None
    period_spans = spans(subscription, start, end)
    if period_spans:
        commitment = next(
            (
                c
                for c in catalog.components(period_spans[-1].plan_version)
                if c.kind == PriceComponent.Kind.COMMITMENT
            ),
            None,
        )
    return PeriodScenarios(
        subscription=subscription,
        currency=currency,
        period_start=start,
        period_end=end,
        carried_balance_minor=balance,
        commitment_minor=None if commitment is None else to_minor(commitment.amount, currency),
        commitment_months=None if commitment is None else commitment.commitment_months,
        rated=rated,
    )


def plan_offers(*, currency: str) -> list[PlanVersion]:
    """The latest version of every active plan billed in ``currency``, with its prices
    (one query each for plans, versions, components and their meters)."""
    offers = []
    for plan in plan_list().filter(currency=currency).order_by("name", "pk"):
        versions = list(plan.versions.all())
        if versions:
            latest = max(versions, key=lambda version: version.version)
            latest.plan = plan  # already read: spare the lookup
            offers.append(latest)
    return offers


SIX_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class PlanCost:
    """A plan version rated over its own periods at a steady usage per period."""

    version: PlanVersion
    periods: int  # a commitment term's worth of the version's periods, else one
    total_minor: int  # over all ``periods``
    first_period: tuple[RatedLine, ...]
    per_usage_period_minor: int  # the average cost per period of the usage's interval


def plan_version_cost(
    *, version: PlanVersion, usage: Mapping[int, Decimal], usage_interval: str | None = None
) -> PlanCost:
    """What ``version`` would charge a new subscriber whose usage (meter id -> quantity) is
    ``usage`` every ``usage_interval`` (the version's own interval by default), rated by
    the engine: flat fees for whole periods, and with a prepaid commitment its whole term
    (the fee up front, drawn down period by period), so a commitment is compared by what
    it costs per period over its term. For a version billed at another interval, count
    and sum usage scales with the period's length (gauges, maxima and distinct counts do
    not), and the cost comes back per ``usage_interval`` as well, so plans of different
    intervals compare over the same time. Reads the version's components once unless
    prefetched (``plan_offers`` does)."""
    prefetch_related_objects(
        [version], Prefetch("components", queryset=PriceComponent.objects.select_related("meter"))
    )
    components = sorted(version.components.all(), key=lambda c: c.position)
    pricing = period_pricing(version.plan.currency, components)
    interval_months = INTERVAL_MONTHS[version.interval]
    usage_months = INTERVAL_MONTHS[usage_interval or version.interval]
    scale = Fraction(interval_months, usage_months)
    quantities = {}
    for c in components:
        if c.kind != PriceComponent.Kind.USAGE:
            continue
        quantity = usage.get(c.meter_id, Decimal(0))
        if scale != 1 and c.meter.is_additive:
            # (Six places: finer than any meter counts, and exact to rate.)
            quantity = (quantity * scale.numerator / scale.denominator).quantize(SIX_PLACES)
        quantities[str(c.pk)] = quantity
    months = next(
        (c.commitment_months for c in components if c.kind == PriceComponent.Kind.COMMITMENT),
        None,
    )
    periods = max(1, -(-months // interval_months)) if months else 1
    balance, total, first = 0, 0, ()
    for index in range(periods):
        rated = rate_period(
            pricing,
            quantities,
            commitment_balance_minor=balance,
            # As invoicing does: a term starts with the subscription, then every N months.
            starts_commitment_term=bool(months) and (index * interval_months) % months == 0,
        )
        balance, total = rated.commitment_balance_minor, total + rated.total_minor
        first = first or rated.lines
    return PlanCost(
        version=version,
        periods=periods,
        total_minor=total,
        first_period=first,
        per_usage_period_minor=round_half_up(
            Fraction(total * usage_months, periods * interval_months)
        ),
    )


@dataclass(frozen=True)
class VersionTerms:
    prices: dict[int, UsagePrice]  # meter id -> its usage price
    commitment: Decimal | None  # the prepaid commitment per period, if the plan has one


def plan_version_terms(version: PlanVersion) -> VersionTerms:
    """What a plan version charges per meter and commits the customer to (alert levels
    in money or percent of included units or commitment are measured against it)."""
    components = list(version.components.all())
    commitment = next(
        (c.amount for c in components if c.kind == PriceComponent.Kind.COMMITMENT), None
    )
    return VersionTerms(
        prices={
            c.meter_id: usage_price(c)
            for c in components
            if c.kind == PriceComponent.Kind.USAGE and c.meter_id is not None
        },
        commitment=commitment,
    )


@dataclass(frozen=True)
class ProjectedInvoice:
    """The current period's invoice so far and where it is heading, for display."""

    upcoming: UpcomingInvoice
    projected_minor: int
    low_minor: int | None  # the likely range, when a forecast gives one
    high_minor: int | None
    by_forecast: bool  # else a straight line through the period so far

    @property
    def currency(self) -> str:
        return self.upcoming.currency

    @property
    def range_text(self) -> str | None:
        """The likely range as text ('1,200.00 to 1,450.00 USD'), when there is one."""
        low, high, currency = self.low_minor, self.high_minor, self.currency
        if low is None or high is None or low == high:
            return None
        low_text = format_money(low, currency).removesuffix(currency)
        return f"{low_text}\u2013 {format_money(high, currency)}"


def projected_invoice(*, customer: Customer, now: datetime) -> ProjectedInvoice | None:
    """The upcoming invoice with its projection: the projected-cost hook's range (alerts:
    the period rated at the forecast usage) when a provider answers for this period, else
    the straight-line projection. One reading for the billing page and the dashboard."""
    from . import hooks

    upcoming = upcoming_invoice(customer=customer, now=now)
    if upcoming is None:
        return None
    forecast = hooks.projected_cost(
        customer, now, period=(upcoming.period_start, upcoming.period_end)
    )
    if forecast is None or forecast.currency != upcoming.currency:
        return ProjectedInvoice(upcoming, upcoming.projected_total_minor, None, None, False)
    return ProjectedInvoice(
        upcoming, forecast.p50_minor, forecast.p10_minor, forecast.p90_minor, True
    )

"""Reads for the spend outlook: the current period's invoice at the forecast usage, with
its range, and what the vendor's other plans would charge for the same usage.

Prices are never computed here: every amount comes from invoicing's rating engine (the
one period close uses), fed with usage quantities from the forecast. Count and sum meters
take their forecast period-end usage at p10, p50 and p90; gauges, maxima and distinct
counts keep their usage so far (they do not add up over time). Rating is monotone in each
quantity, so the totals keep the order p10 <= p50 <= p90; each meter is taken at its own
quantile, which makes the outer figures a little wider than the total's own quantiles
(a conservative range).

Queries are bounded by the plan's priced meters: one forecast read per metered component
(see ``meter_forecast``), never one per day.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from accounts.models import Customer
from invoicing import hooks as invoicing_hooks
from invoicing import selectors as invoicing
from invoicing.currency import format_money
from invoicing.models import InvoiceLine, Plan, PlanVersion, PriceComponent, Subscription
from metering import hooks as metering_hooks
from metering import selectors as metering
from metering.models import Meter

from ..outlook import describe_option, growth_share, projected_quantity, worth_offering
from .forecasts import MeterForecast, meter_forecast

QUANTILES = ("p10", "p50", "p90")
Kind = InvoiceLine.Kind


@dataclass(frozen=True)
class MinorRange:
    """An amount at p10, p50 and p90, in minor units."""

    p10: int
    p50: int
    p90: int


@dataclass(frozen=True)
class QuantityRange:
    p10: Decimal
    p50: Decimal
    p90: Decimal


@dataclass(frozen=True)
class MeterSpend:
    meter: Meter
    forecast: bool  # projected by the forecast; else its usage so far stands
    usage_to_date: Decimal
    quantity: QuantityRange  # the period's usage at its end
    amount_to_date_minor: int
    amount: MinorRange  # what its usage lines charge at the period's end


@dataclass(frozen=True)
class CommitmentPosition:
    """The prepaid commitment against the period's projected spend."""

    commitment_minor: int  # the prepaid amount per term
    term_months: int | None
    available_minor: int  # prepaid balance this period can draw on (a new term's full fee)
    charges: MinorRange  # usage charges (and any minimum true-up) that draw on it
    balance_after: MinorRange  # what is left for later periods of the term
    overage: MinorRange  # charges beyond the balance, invoiced on top


@dataclass(frozen=True)
class SpendForecast:
    customer: Customer
    subscription: Subscription
    currency: str
    period_start: datetime
    period_end: datetime
    as_of: datetime
    ended: bool  # the period is over (the close job has not run yet): nothing to forecast
    so_far_minor: int  # the invoice as it stands, usage so far
    total: MinorRange  # the invoice at the period's end
    meters: tuple[MeterSpend, ...]
    commitment: CommitmentPosition | None

    @property
    def summary(self) -> str:
        """One line for a message: the projected total, its range and the invoice so far."""
        money = self.currency
        text = f"Projected {format_money(self.total.p50, money)} this period"
        if self.total.p10 != self.total.p90:
            low = format_money(self.total.p10, money).removesuffix(f" {money}")
            text += f" ({low}–{format_money(self.total.p90, money)})"  # noqa: RUF001
        return f"{text}, {format_money(self.so_far_minor, money)} so far"


def _whole_units(meter: Meter) -> bool:
    return meter.aggregation == Meter.Aggregation.COUNT


def _rounded(meter: Meter, quantity: Decimal) -> Decimal:
    """A forecast quantity as the meter counts: counts in whole units."""
    if _whole_units(meter):
        return quantity.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return quantity


class _Forecasts:
    """One forecast per meter for the period ``[start, end)``, read when first needed;
    ``None`` for a meter whose forecast covers another period (never expected: both come
    from the same billing-period hook) or that does not add up."""

    def __init__(self, customer: Customer, now: datetime, start: datetime, end: datetime):
        self.customer, self.now, self.start, self.end = customer, now, start, end
        self._found: dict[int, MeterForecast | None] = {}

    def get(self, meter: Meter) -> MeterForecast | None:
        if meter.pk not in self._found:
            found = None
            if meter.is_additive:
                found = meter_forecast(customer=self.customer, meter=meter, now=self.now)
                if (found.period.start, found.period.end) != (self.start, self.end):
                    found = None
            self._found[meter.pk] = found
        return self._found[meter.pk]


def spend_forecast(*, customer: Customer, now: datetime) -> SpendForecast | None:
    """The customer's current billing period rated at its forecast end: the invoice total
    at p10/p50/p90 in minor units, per-meter quantities and amounts, and the commitment
    position when the plan has a prepaid commitment. ``None`` without a subscription.

    Once the period is over (before the close job runs) the range collapses to the
    invoice as it stands; a meter whose usage does not grow keeps its usage so far."""
    subscription = invoicing.subscription_current(customer=customer)
    if subscription is None:
        return None
    start, end = subscription.billed_through, subscription.current_period_end
    as_of = min(max(now, start), end)
    ended = as_of >= end
    forecasts = _Forecasts(customer, now, start, end)
    so_far_cache: dict[tuple[int, datetime, datetime], Decimal] = {}

    def so_far(component, span) -> Decimal:
        meter = component.meter
        key = (meter.pk, span.start, span.end)
        if key not in so_far_cache:
            forecast = None if ended else forecasts.get(meter)
            if forecast is not None and span.start <= start and span.end >= end:
                # The whole period on one phase: the forecast already measured it.
                so_far_cache[key] = forecast.usage_to_date
            elif span.start < as_of:
                so_far_cache[key] = metering.usage_total(
                    customer=customer, meter=meter, start=span.start, end=min(span.end, as_of)
                )
            else:
                so_far_cache[key] = Decimal(0)
        return so_far_cache[key]

    def at(quantile: str) -> Callable:
        def usage_of(component, span) -> Decimal:
            used = so_far(component, span)
            forecast = None if ended else forecasts.get(component.meter)
            if forecast is None or span.end <= as_of:
                return used
            end_usage = getattr(forecast.period_end_usage, quantile)
            growth = max(end_usage - forecast.usage_to_date, Decimal(0))
            share = growth_share(
                span_start=span.start, span_end=span.end, as_of=as_of, period_end=end
            )
            return projected_quantity(
                so_far=used,
                growth=growth,
                share=share,
                whole_units=_whole_units(component.meter),
            )

        return usage_of

    scenarios = {"so_far": so_far}
    if not ended:
        scenarios.update({q: at(q) for q in QUANTILES})
    period = invoicing.subscription_period_scenarios(
        subscription=subscription, start=start, end=end, scenarios=scenarios
    )
    rated = {q: period.rated.get(q, period.rated["so_far"]) for q in ("so_far", *QUANTILES)}

    def minor_range(measure: Callable[[invoicing.RatedScenario], int]) -> MinorRange:
        return MinorRange(*(measure(rated[q]) for q in QUANTILES))

    return SpendForecast(
        customer=customer,
        subscription=subscription,
        currency=period.currency,
        period_start=start,
        period_end=end,
        as_of=as_of,
        ended=ended,
        so_far_minor=rated["so_far"].total_minor,
        total=minor_range(lambda r: r.total_minor),
        meters=_meter_spends(rated, forecasts, ended),
        commitment=_commitment(period, minor_range),
    )


def _lines_of(rated: "invoicing.RatedScenario", kinds: tuple[str, ...]) -> list[InvoiceLine]:
    return [line for line in rated.lines if line.kind in kinds]


def _meter_spends(rated: dict, forecasts: _Forecasts, ended: bool) -> tuple[MeterSpend, ...]:
    """Per priced meter, its usage lines summed over the period's phases."""
    meters: dict[int, Meter] = {}
    quantity: dict[tuple[str, int], Decimal] = {}
    amount: dict[tuple[str, int], int] = {}
    for name, scenario in rated.items():
        for line in _lines_of(scenario, (Kind.USAGE,)):
            meters.setdefault(line.meter.pk, line.meter)
            key = (name, line.meter.pk)
            quantity[key] = quantity.get(key, Decimal(0)) + line.quantity
            amount[key] = amount.get(key, 0) + line.amount_minor
    return tuple(
        MeterSpend(
            meter=meter,
            forecast=not ended and forecasts.get(meter) is not None,
            usage_to_date=quantity[("so_far", pk)],
            quantity=QuantityRange(*(quantity[(q, pk)] for q in QUANTILES)),
            amount_to_date_minor=amount[("so_far", pk)],
            amount=MinorRange(*(amount[(q, pk)] for q in QUANTILES)),
        )
        for pk, meter in meters.items()
    )


def _commitment(period, minor_range) -> CommitmentPosition | None:
    if period.commitment_minor is None:
        return None

    def drawn(rated) -> int:
        return -sum(line.amount_minor for line in _lines_of(rated, (Kind.COMMITMENT_DRAWDOWN,)))

    def charges(rated) -> int:
        kinds = (Kind.USAGE, Kind.MINIMUM_TRUE_UP)
        return sum(line.amount_minor for line in _lines_of(rated, kinds))

    p50 = period.rated.get("p50", period.rated["so_far"])
    return CommitmentPosition(
        commitment_minor=period.commitment_minor,
        term_months=period.commitment_months,
        # Whatever the usage, what was there to draw on is the same.
        available_minor=p50.commitment_balance_after_minor + drawn(p50),
        charges=minor_range(charges),
        balance_after=minor_range(lambda r: r.commitment_balance_after_minor),
        overage=minor_range(lambda r: charges(r) - drawn(r)),
    )


# --- Other plans at the forecast usage -----------------------------------------------


@dataclass(frozen=True)
class PlanOption:
    """Another plan, priced at the forecast p50 usage, against the current one."""

    plan: Plan
    version: PlanVersion
    currency: str
    interval: str  # the option's billing interval
    cost_minor: int  # per current billing period (averaged over a commitment term)
    current_cost_minor: int  # the current plan at the same usage, the same way
    saving_minor: int  # negative: it costs more
    commitment_minor: int | None = None  # its prepaid commitment per term, if any
    commitment_months: int | None = None
    description: str = field(default="", compare=False)


def plan_options(
    *, customer: Customer, now: datetime, spend: SpendForecast | None = None
) -> list[PlanOption]:
    """For each other active plan in the customer's currency (its latest version): what
    the forecast p50 usage of this period would cost on it, against the current plan
    priced the same way, and the saving; only plans that save money or cost at most a few
    percent more (``alerts.outlook.NEAR_PERCENT``), best saving first.

    Both sides are priced by ``invoicing.selectors.plan_version_cost`` as a new period at
    that usage (a commitment averaged over its term, another interval normalized to the
    current one), so a saving compares like with like. Pass ``spend`` when already read."""
    spend = spend if spend is not None else spend_forecast(customer=customer, now=now)
    if spend is None:
        return []
    current = spend.subscription.plan_version
    interval = current.interval
    offers = [
        v for v in invoicing.plan_offers(currency=spend.currency) if v.plan_id != current.plan_id
    ]
    if not offers:
        return []
    usage = _p50_usage(spend, offers, now)
    current_cost = invoicing.plan_version_cost(
        version=current, usage=usage, usage_interval=interval
    ).per_usage_period_minor
    options = []
    for version in offers:
        cost = invoicing.plan_version_cost(version=version, usage=usage, usage_interval=interval)
        if not worth_offering(cost_minor=cost.per_usage_period_minor, current_minor=current_cost):
            continue
        # The fee a new term starts with, as the engine charged it (none without a term).
        commitment_minor = next(
            (line.amount_minor for line in cost.first_period if line.kind == Kind.COMMITMENT_FEE),
            None,
        )
        months = next(
            (
                c.commitment_months
                for c in version.components.all()
                if c.kind == PriceComponent.Kind.COMMITMENT
            ),
            None,
        )
        options.append(
            PlanOption(
                plan=version.plan,
                version=version,
                currency=spend.currency,
                interval=version.interval,
                cost_minor=cost.per_usage_period_minor,
                current_cost_minor=current_cost,
                saving_minor=current_cost - cost.per_usage_period_minor,
                commitment_minor=commitment_minor,
                commitment_months=months if commitment_minor is not None else None,
                description=describe_option(
                    plan_name=version.plan.name,
                    currency=spend.currency,
                    cost_minor=cost.per_usage_period_minor,
                    current_minor=current_cost,
                    usage_interval=interval,
                    plan_interval=version.interval,
                    commitment_minor=commitment_minor,
                    commitment_months=months,
                ),
            )
        )
    options.sort(key=lambda o: (-o.saving_minor, o.plan.name, o.plan.pk))
    return options


def _p50_usage(spend: SpendForecast, offers: list[PlanVersion], now: datetime) -> dict:
    """Meter id -> the period's p50 usage: from the spend forecast for the meters the
    current plan prices, else read once per meter another plan prices."""
    usage = {m.meter.pk: m.quantity.p50 for m in spend.meters}
    forecasts = _Forecasts(spend.customer, now, spend.period_start, spend.period_end)
    for version in offers:
        for component in version.components.all():
            meter = component.meter
            if meter is None or meter.pk in usage:
                continue
            forecast = None if spend.ended else forecasts.get(meter)
            if forecast is not None:
                usage[meter.pk] = _rounded(meter, forecast.period_end_usage.p50)
            else:
                usage[meter.pk] = metering.usage_total(
                    customer=spend.customer,
                    meter=meter,
                    start=spend.period_start,
                    end=spend.as_of,
                )
    return usage


# --- What alerts tell the lower layers (registered in AlertsConfig.ready) ----------------


def usage_outlook(
    customer: Customer, meter: Meter, now: datetime, period: tuple[datetime, datetime]
) -> metering_hooks.UsageOutlook | None:
    """metering's forecast provider: the meter's running-total band over the period the
    dashboard shows, starting from the last complete day's running total so the band
    joins the drawn line; ``None`` for meters that do not add up or another period."""
    if not meter.is_additive:
        return None
    found = meter_forecast(customer=customer, meter=meter, now=now)
    if (found.period.start, found.period.end) != period:
        return None
    forecast = found.forecast
    points = [
        metering_hooks.BandPoint(p.day, p.p10, p.p50, p.p90)
        for p in forecast.band()
        if p.day <= forecast.period_end
    ]
    if forecast.last_day >= found.period.start.date():
        base = float(forecast.usage_to_date)
        points.insert(0, metering_hooks.BandPoint(forecast.last_day, base, base, base))
    end = found.period_end_usage
    return metering_hooks.UsageOutlook(
        tuple(points), _rounded(meter, end.p10), _rounded(meter, end.p50), _rounded(meter, end.p90)
    )


def projected_cost(customer: Customer, now: datetime) -> invoicing_hooks.ProjectedCost | None:
    """invoicing's projected-cost provider: ``spend_forecast``'s range."""
    spend = spend_forecast(customer=customer, now=now)
    if spend is None:
        return None
    return invoicing_hooks.ProjectedCost(
        spend.currency,
        spend.period_start,
        spend.period_end,
        spend.total.p10,
        spend.total.p50,
        spend.total.p90,
    )

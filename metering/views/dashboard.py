"""The usage dashboard: the first page a customer sees.

For each active meter: usage this period (the customer's billing period when a layer above
knows one through ``hooks.billing_period``, else the calendar month in the customer's time
zone) as a big number, a daily chart with the running total, the breakdown by each of the
meter's dimensions, and twelve months of history. For count and sum meters, when a layer
above forecasts usage (``hooks.usage_forecast``), the running total gains the forecast
band to the period's end and the panel says where the period is heading. Every figure
comes from ``metering.selectors`` for the signed-in member's own customer; the page
re-renders its live part through htmx every 30 seconds.

Queries are bounded: per meter one total, one daily series, one monthly series and one
breakdown per dimension (at most three), whatever the data; plus what the billing-period
provider needs once per page, and per count or sum meter what the forecast provider needs
(alerts: its billing period, a daily series and two totals).
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils import timezone

from accounts.views.mixins import PortalView

from .. import charts, hooks, selectors
from ..models import Meter
from . import wants_fragment

PAGE = "metering/dashboard.html"
LIVE = "metering/_dashboard_live.html"
SPEND = "metering/_spend.html"
REFRESH_SECONDS = 30
HISTORY_MONTHS = 12
BREAKDOWN_ROWS = 8

AGGREGATION_NOTES = {
    Meter.Aggregation.COUNT: "Events counted {period}",
    Meter.Aggregation.SUM: "Total {period}",
    Meter.Aggregation.MAX: "Highest value {period}",
    Meter.Aggregation.UNIQUE_COUNT: "Distinct {period}",
    Meter.Aggregation.LATEST: "Latest reading {period}",
}


@dataclass
class BreakdownRow:
    label: str
    value: str
    width: float  # bar length, percent of the largest row
    share: str | None  # percent of the whole, for meters whose parts add up


@dataclass
class Breakdown:
    dimension: str
    rows: list[BreakdownRow]
    hidden: int = 0  # values beyond the rows shown


@dataclass
class Projection:
    """Where the period is heading, as the page prints it."""

    p50: str
    low: str
    high: str

    @property
    def is_range(self) -> bool:
        return self.low != self.high


@dataclass
class MeterPanel:
    meter: Meter
    total: Decimal
    total_display: str
    note: str
    last_month_display: str | None
    has_usage: bool
    has_history: bool
    additive: bool
    daily_chart: str = ""
    projection: Projection | None = None
    history_chart: str = ""
    breakdowns: list[Breakdown] = field(default_factory=list)


def _outlook(customer, meter: Meter, now: datetime, period: selectors.Period):
    """The forecast for an additive meter, unless it has nothing to say (never used)."""
    if not meter.is_additive:
        return None
    outlook = hooks.usage_forecast(customer, meter, now, (period.start, period.end))
    if outlook is None or not outlook.p90:
        return None
    return outlook


def _breakdown(meter: Meter, points: list[selectors.UsagePoint], dimension: str) -> Breakdown:
    points = [p for p in points if p.value]
    additive = meter.is_additive
    whole = sum((p.value for p in points), Decimal(0)) if additive else None
    largest = max((p.value for p in points), default=Decimal(0))
    rows = [
        BreakdownRow(
            label=p.group or "(not set)",
            value=charts.format_quantity(p.value),
            width=float(p.value * 100 / largest) if largest else 0.0,
            share=f"{p.value * 100 / whole:.0f}%" if whole else None,
        )
        for p in points[:BREAKDOWN_ROWS]
    ]
    return Breakdown(dimension=dimension, rows=rows, hidden=max(0, len(points) - BREAKDOWN_ROWS))


def meter_panel(
    *, customer, meter: Meter, now: datetime, period: selectors.Period | None = None
) -> MeterPanel:
    zone = ZoneInfo(customer.timezone)
    period = period or selectors.current_period(customer, now)
    period_start, period_end = period.start, period.end
    history_start = selectors.month_start(now, zone, months_back=HISTORY_MONTHS - 1)

    total = selectors.usage_total(customer=customer, meter=meter, start=period_start, end=now)
    daily = selectors.usage_series(
        customer=customer, meter=meter, start=period_start, end=now, granularity="day"
    )
    monthly = selectors.usage_series(
        customer=customer, meter=meter, start=history_start, end=now, granularity="month"
    )
    last_month = monthly[-2].value if len(monthly) > 1 else None
    has_usage = any(p.value for p in daily)
    outlook = _outlook(customer, meter, now, period)
    panel = MeterPanel(
        meter=meter,
        total=total,
        total_display=charts.format_quantity(total),
        note=AGGREGATION_NOTES[meter.aggregation].format(period=period.phrase),
        last_month_display=charts.format_quantity(last_month) if last_month else None,
        has_usage=has_usage,
        has_history=any(p.value for p in monthly),
        additive=meter.is_additive,
    )
    if outlook is not None:
        panel.projection = Projection(
            p50=charts.format_quantity(outlook.p50),
            low=charts.format_quantity(outlook.p10),
            high=charts.format_quantity(outlook.p90),
        )
    if has_usage or outlook is not None:
        panel.daily_chart = charts.daily_chart(
            meter=meter,
            series=daily,
            period_start=period_start,
            period_end=period_end,
            band=outlook.points if outlook is not None else None,
        )
    if has_usage:
        panel.breakdowns = [
            _breakdown(
                meter,
                selectors.usage_breakdown(
                    customer=customer,
                    meter=meter,
                    start=period_start,
                    end=now,
                    dimension=dimension,
                ),
                dimension,
            )
            for dimension in meter.group_by
        ]
    if panel.has_history:
        panel.history_chart = charts.history_chart(
            meter=meter, series=monthly, current_month=selectors.month_start(now, zone)
        )
    return panel


class UsageDashboardView(PortalView):
    """Every member may see usage (viewers included): no ability required, GET only."""

    def get(self, request):
        now = timezone.now()
        customer = self.customer
        period = selectors.current_period(customer, now)
        meters = list(selectors.meter_list())
        context = {
            "panels": [
                meter_panel(customer=customer, meter=m, now=now, period=period) for m in meters
            ],
            "period": period,
            "period_start": period.start,
            "now": now,
            "customer_tz": customer.timezone,
            "refresh_seconds": REFRESH_SECONDS,
        }
        if wants_fragment(request):
            return self.render(LIVE, context)
        return self.render(PAGE, context)


class UsageSpendView(PortalView):
    """The invoice so far and its projection, as the dashboard loads it (after the page):
    from the spend provider (invoicing), nothing when there is none or it has no answer."""

    def get(self, request):
        spend = hooks.spend_outlook(self.customer, timezone.now())
        return self.render(SPEND, {"spend": spend})

"""Reads for forecasts: a meter's band to the period's end and the odds of crossing a level."""

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from accounts.errors import InvalidInput
from accounts.models import Customer
from metering import selectors as metering
from metering.models import Meter

from ..forecast import BandPoint, Quantiles, UsageForecast, forecast_usage

# Days of history a forecast learns from: enough for weekday patterns and a trend.
FORECAST_HISTORY_DAYS = 56


@dataclass(frozen=True)
class Crossing:
    level: Decimal
    within_days: int
    probability: float
    expected_date: date | None


@dataclass(frozen=True)
class MeterForecast:
    customer: Customer
    meter: Meter
    period: metering.Period
    usage_to_date: Decimal  # the period's usage so far, today included
    forecast: UsageForecast
    crossing: Crossing | None = None

    @property
    def period_end_usage(self) -> Quantiles:
        return self.forecast.period_end_quantiles()

    @property
    def band(self) -> tuple[BandPoint, ...]:
        return self.forecast.band()


def meter_forecast(
    *,
    customer: Customer,
    meter: Meter,
    now: datetime,
    level: Decimal | None = None,
    within_days: int = 14,
) -> MeterForecast:
    """The forecast of ``meter`` for the customer's current usage period, from its daily
    usage in the customer's time zone (complete days only; today's usage so far is a floor
    for today); with ``level``, the chance of reaching it within ``within_days`` (the
    forecast reaches that far even past the period's end). Deterministic for a given day,
    so repeated reads agree."""
    days_ahead = within_days if level is not None else 0
    if not meter.is_additive:
        raise InvalidInput(
            f"Meter {meter.code} is not additive: only count and sum meters are forecast.",
            field="meter",
            code="meter_not_forecastable",
        )
    period = metering.current_period(customer, now)
    zone = ZoneInfo(customer.timezone)
    today = now.astimezone(zone).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=zone)
    # Days before the account's first usage are trimmed below, so usage recorded before
    # the account was opened here (history brought along) still counts.
    first_day = today - timedelta(days=FORECAST_HISTORY_DAYS)
    history = metering.usage_series(
        customer=customer,
        meter=meter,
        start=datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone),
        end=midnight,
        granularity="day",
    )
    # Days before the account's first usage say nothing about its pace.
    values = [p.value or Decimal(0) for p in history]
    while len(values) > 1 and not values[0]:
        values.pop(0)
    through_yesterday = (
        metering.usage_total(customer=customer, meter=meter, start=period.start, end=midnight)
        if midnight > period.start
        else Decimal(0)
    )
    today_start = max(midnight, period.start)
    usage_today = metering.usage_total(customer=customer, meter=meter, start=today_start, end=now)
    last_period_day = (period.end - timedelta(microseconds=1)).astimezone(zone).date()
    seed = int.from_bytes(
        hashlib.sha256(f"{customer.pk}:{meter.pk}:{today.isoformat()}".encode()).digest()[:8]
    )
    forecast = forecast_usage(
        values or [0],
        last_day=today - timedelta(days=1),
        period_end=max(last_period_day, today),
        rng=np.random.default_rng(seed),
        usage_to_date=through_yesterday,
        usage_today=usage_today,
        horizon_days=max((max(last_period_day, today) - today).days + 1, days_ahead),
    )
    crossing = None
    if level is not None:
        crossing = Crossing(
            level,
            within_days,
            forecast.probability_of_crossing(level, within_days=within_days),
            forecast.expected_crossing_date(level),
        )
    return MeterForecast(
        customer, meter, period, through_yesterday + usage_today, forecast, crossing
    )

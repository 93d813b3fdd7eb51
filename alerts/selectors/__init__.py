"""Reads of the alerts app, one module per subject; import from here."""

from .caps import cap_list
from .forecasts import FORECAST_HISTORY_DAYS, Crossing, MeterForecast, meter_forecast

__all__ = ["FORECAST_HISTORY_DAYS", "Crossing", "MeterForecast", "cap_list", "meter_forecast"]

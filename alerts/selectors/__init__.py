"""Reads of the alerts app, one module per subject; import from here."""

from .caps import cap_list
from .endpoints import (
    endpoint_current_secret,
    endpoint_list,
    endpoint_previous_secret,
    endpoint_signing_secrets,
)
from .forecasts import FORECAST_HISTORY_DAYS, Crossing, MeterForecast, meter_forecast
from .history import (
    alert_list,
    banner_alert,
    unread_alert_count,
    with_deliveries,
    with_unread,
)

__all__ = [
    "FORECAST_HISTORY_DAYS",
    "Crossing",
    "MeterForecast",
    "alert_list",
    "banner_alert",
    "cap_list",
    "endpoint_current_secret",
    "endpoint_list",
    "endpoint_previous_secret",
    "endpoint_signing_secrets",
    "meter_forecast",
    "unread_alert_count",
    "with_deliveries",
    "with_unread",
]

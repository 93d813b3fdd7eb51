"""Plotly figures for the customer's usage dashboard, rendered on the server.

Each chart is an HTML fragment (a div and the script that draws it) without plotly.js
itself: the page loads ``plotly/plotly.min.js`` once from our own static files
(``metering.staticfinders``), never from a CDN. Figures are plain dicts rendered without
plotly's per-property validation (three quarters of the page's time otherwise); the
tests validate every figure shape through ``plotly.graph_objects.Figure`` instead.
Values arrive as ``Decimal`` and become floats only here, for drawing; the numbers
printed on the page are formatted from the Decimals themselves.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from decimal import Decimal

import plotly.io as pio

from .hooks import BandPoint
from .models import Meter
from .selectors import UsagePoint

# The portal's palette (static/css/portal.css).
ACCENT = "#4f46e5"
ACCENT_SOFT = "#c7d2fe"
CUMULATIVE = "#f59e0b"
FORECAST_FILL = "rgba(245, 158, 11, 0.16)"  # the running total's colour, faint
GRID = "#eef0f4"
TEXT = "#475467"
FONT = 'ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif'

CONFIG = {"displayModeBar": False, "responsive": True}


def format_quantity(value: Decimal | None) -> str:
    """``1234567`` -> ``1,234,567``; ``1234.5678`` -> ``1,234.57``; ``None`` -> a dash."""
    if value is None:
        return "-"
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _hover_format(meter: Meter) -> str:
    return ",.0f" if meter.aggregation != Meter.Aggregation.SUM else ",.2f"


def _base_layout(height: int, **overrides) -> dict:
    layout = {
        "height": height,
        "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"family": FONT, "size": 12, "color": TEXT},
        "hovermode": "x unified",
        "hoverlabel": {
            "bgcolor": "#ffffff",
            "bordercolor": "#d0d5dd",
            "font": {"color": "#101828"},
        },
        "showlegend": False,
        "bargap": 0.28,
        "xaxis": {"showgrid": False, "linecolor": "#d0d5dd", "ticks": "", "automargin": True},
        "yaxis": {
            "gridcolor": GRID,
            "zeroline": False,
            "rangemode": "tozero",
            "tickformat": "~s",
            "automargin": True,
        },
    }
    layout.update(overrides)
    return layout


def render(figure: dict, name: str) -> str:
    # A fresh id on every render: htmx "settles" elements whose id survives a swap by
    # restoring their server-rendered class, which would strip plotly's js-plotly-plot.
    div_id = f"{name}-{uuid.uuid4().hex[:8]}"
    return pio.to_html(
        figure,
        config=CONFIG,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        default_width="100%",
        validate=False,
    )


def daily_figure(
    *,
    meter: Meter,
    series: list[UsagePoint],
    period_start: datetime,
    period_end: datetime,
    band: Sequence[BandPoint] | None = None,
) -> dict:
    """Daily bars for the period so far; for additive meters, the running total as a
    line on a second axis and, with a ``band`` (the forecast), where it is heading: the
    p10-p90 range shaded and the p50 dashed, to the period's end. The x axis spans the
    whole period, so the month's shape shows."""
    days = [p.bucket.date().isoformat() for p in series]
    values = [_number(p.value) for p in series]
    unit = meter.unit_label
    value_format = _hover_format(meter)
    # The last day is today, still running: drawn lighter, like the month in the history.
    colors = [ACCENT] * len(days)
    labels = ["Day"] * len(days)
    if days:
        colors[-1], labels[-1] = ACCENT_SOFT, "Today so far"
    data = [
        {
            "type": "bar",
            "x": days,
            "y": values,
            "customdata": labels,
            "name": f"Per day ({unit})",
            "marker": {"color": colors, "cornerradius": 3},
            "hovertemplate": f"%{{y:{value_format}}} {unit}<extra>%{{customdata}}</extra>",
        }
    ]
    # Half a day of margin each side, so the first and last bars are drawn whole.
    first_day = datetime.combine(period_start.date(), time()) - timedelta(hours=14)
    last_day = datetime.combine((period_end - timedelta(days=1)).date(), time()) + timedelta(
        hours=14
    )
    layout = _base_layout(
        260,
        xaxis={
            "showgrid": False,
            "linecolor": "#d0d5dd",
            "type": "date",
            "range": [first_day.isoformat(), last_day.isoformat()],
            "tickformat": "%b %-d",
            "automargin": True,
        },
    )
    if meter.is_additive:
        running, cumulative = Decimal(0), []
        for point in series:
            running += point.value or 0
            cumulative.append(float(running))
        data.append(
            {
                "type": "scatter",
                "x": days,
                "y": cumulative,
                "name": f"Month to date ({unit})",
                "yaxis": "y2",
                "mode": "lines",
                "line": {"color": CUMULATIVE, "width": 2.5, "shape": "spline", "smoothing": 0.4},
                "hovertemplate": f"%{{y:{value_format}}} {unit}<extra>Month to date</extra>",
            }
        )
        if band:
            data.extend(_band_traces(band, unit, value_format))
        layout["yaxis2"] = {
            "overlaying": "y",
            "side": "right",
            # Its own round ticks (plotly would otherwise sync them to the bars' grid).
            "tickmode": "auto",
            "rangemode": "tozero",
            "showgrid": False,
            "zeroline": False,
            "tickformat": "~s",
            "tickfont": {"color": CUMULATIVE},
            "automargin": True,
        }
        layout["showlegend"] = True
        layout["legend"] = {
            "orientation": "h",
            "x": 0,
            "y": 1.12,
            "xanchor": "left",
            "font": {"size": 12},
        }
        layout["margin"] = {"l": 8, "r": 8, "t": 30, "b": 8}
    return {"data": data, "layout": layout}


def _band_traces(band: Sequence[BandPoint], unit: str, value_format: str) -> list[dict]:
    """The forecast on the running total's axis: p10 (an invisible edge), p90 filled down
    to it, then p50 dashed on top."""
    days = [p.day.isoformat() for p in band]
    edge = {"width": 0, "color": CUMULATIVE, "shape": "spline", "smoothing": 0.4}
    return [
        {
            "type": "scatter",
            "x": days,
            "y": [p.p10 for p in band],
            "name": "Forecast low (p10)",
            "yaxis": "y2",
            "mode": "lines",
            "line": edge,
            "showlegend": False,
            "hoverinfo": "skip",
        },
        {
            "type": "scatter",
            "x": days,
            "y": [p.p90 for p in band],
            "customdata": [p.p10 for p in band],
            "name": "Forecast range",
            "yaxis": "y2",
            "mode": "lines",
            "line": edge,
            "fill": "tonexty",
            "fillcolor": FORECAST_FILL,
            "hovertemplate": (
                f"%{{customdata:{value_format}}} to %{{y:{value_format}}} {unit}"
                "<extra>Forecast range</extra>"
            ),
        },
        {
            "type": "scatter",
            "x": days,
            "y": [p.p50 for p in band],
            "name": "Forecast",
            "yaxis": "y2",
            "mode": "lines",
            "line": {"color": CUMULATIVE, "width": 2, "dash": "dash"},
            "hovertemplate": f"%{{y:{value_format}}} {unit}<extra>Forecast</extra>",
        },
    ]


def history_figure(*, meter: Meter, series: list[UsagePoint], current_month: datetime) -> dict:
    """Monthly bars for the last twelve months; the current month (so far) drawn lighter."""
    months = [p.bucket.date() for p in series]
    current = current_month.date()
    bar = {
        "type": "bar",
        "x": [m.isoformat() for m in months],
        "y": [_number(p.value) for p in series],
        "customdata": ["so far" if m == current else "" for m in months],
        "marker": {
            "color": [ACCENT_SOFT if m == current else ACCENT for m in months],
            "cornerradius": 3,
        },
        "hovertemplate": (
            f"%{{x|%B %Y}} %{{customdata}}<br>%{{y:{_hover_format(meter)}}} "
            f"{meter.unit_label}<extra></extra>"
        ),
    }
    layout = _base_layout(
        260,
        hovermode="closest",
        xaxis={
            "showgrid": False,
            "linecolor": "#d0d5dd",
            "type": "date",
            "tickformat": "%b<br>%Y",
            "automargin": True,
        },
    )
    return {"data": [bar], "layout": layout}


def daily_chart(**kwargs) -> str:
    return render(daily_figure(**kwargs), f"usage-daily-{kwargs['meter'].pk}")


def history_chart(**kwargs) -> str:
    return render(history_figure(**kwargs), f"usage-history-{kwargs['meter'].pk}")

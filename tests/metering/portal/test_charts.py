"""The dashboard's figures: valid plotly (checked here, since rendering skips validation),
running totals only where days add up, today's bar and this month's drawn lighter."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
import pytest

from metering import charts
from metering.models import Meter
from metering.selectors import UsagePoint

ZONE = ZoneInfo("Europe/Berlin")
START = datetime(2026, 3, 1, tzinfo=ZONE)
END = datetime(2026, 4, 1, tzinfo=ZONE)


def meter(aggregation: str) -> Meter:
    return Meter(pk=7, code="m", name="M", unit_label="things", aggregation=aggregation)


def days(*values) -> list[UsagePoint]:
    return [
        UsagePoint(bucket=START + timedelta(days=i), group=None, value=v)
        for i, v in enumerate(values)
    ]


@pytest.mark.parametrize("aggregation", Meter.Aggregation.values)
def test_every_figure_is_valid_plotly(aggregation):
    series = days(Decimal(3), None, Decimal("1.5"))
    months = [
        UsagePoint(bucket=datetime(2026, m, 1, tzinfo=ZONE), group=None, value=Decimal(m))
        for m in (1, 2, 3)
    ]

    daily = charts.daily_figure(
        meter=meter(aggregation), series=series, period_start=START, period_end=END
    )
    history = charts.history_figure(meter=meter(aggregation), series=months, current_month=START)

    go.Figure(daily)  # raises ValueError on any property plotly does not know
    go.Figure(history)


def test_additive_meters_get_a_running_total_on_a_second_axis():
    figure = charts.daily_figure(
        meter=meter("sum"),
        series=days(Decimal(2), Decimal("0.5"), Decimal(1)),
        period_start=START,
        period_end=END,
    )

    bars, line = figure["data"]
    assert bars["y"] == [2.0, 0.5, 1.0]
    assert line["y"] == [2.0, 2.5, 3.5] and line["yaxis"] == "y2"
    assert figure["layout"]["yaxis2"]["overlaying"] == "y"
    # The x axis spans the whole month, not just the days so far.
    assert figure["layout"]["xaxis"]["range"][0].startswith("2026-02-28")
    assert figure["layout"]["xaxis"]["range"][1].startswith("2026-03-31")


@pytest.mark.parametrize("aggregation", ["latest", "unique_count", "max"])
def test_non_additive_meters_have_no_running_total(aggregation):
    figure = charts.daily_figure(
        meter=meter(aggregation),
        series=days(Decimal(5), Decimal(6)),
        period_start=START,
        period_end=END,
    )

    assert len(figure["data"]) == 1
    assert "yaxis2" not in figure["layout"]


def test_today_and_this_month_are_drawn_lighter():
    daily = charts.daily_figure(
        meter=meter("count"),
        series=days(Decimal(1), Decimal(2)),
        period_start=START,
        period_end=END,
    )
    history = charts.history_figure(
        meter=meter("count"),
        series=[
            UsagePoint(bucket=datetime(2026, 2, 1, tzinfo=ZONE), group=None, value=Decimal(4)),
            UsagePoint(bucket=START, group=None, value=Decimal(1)),
        ],
        current_month=START,
    )

    assert daily["data"][0]["marker"]["color"] == [charts.ACCENT, charts.ACCENT_SOFT]
    assert history["data"][0]["marker"]["color"] == [charts.ACCENT, charts.ACCENT_SOFT]
    assert history["data"][0]["customdata"] == ["", "so far"]


def test_rendered_chart_has_no_plotly_js_and_a_fresh_div_id_each_time():
    figure = charts.daily_figure(
        meter=meter("count"), series=days(Decimal(1)), period_start=START, period_end=END
    )

    first, second = charts.render(figure, "usage-daily-7"), charts.render(figure, "usage-daily-7")

    assert 'id="usage-daily-7-' in first
    assert first != second  # htmx must not match old and new charts by id
    assert "Plotly.newPlot" in first
    assert "<script src" not in first and "cdn" not in first.lower()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal(0), "0"),
        (Decimal(1234567), "1,234,567"),
        (Decimal("1234.5"), "1,234.50"),
        (Decimal("0.125"), "0.12"),
        (Decimal("3.000"), "3"),
        (None, "-"),
    ],
)
def test_quantities_are_formatted_for_reading(value, text):
    assert charts.format_quantity(value) == text

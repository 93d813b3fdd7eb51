"""The usage dashboard's forecast: alerts registers metering's forecast provider, and each
count or sum meter's running total gains the band (p10-p90 shaded, p50 dashed) to the
period's end and a projected range; without a provider the page is as before."""

import json
import logging
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from alerts.selectors.outlook import usage_outlook
from metering import hooks, selectors
from metering.charts import format_quantity
from tests.accounts.portal.helpers import HTMX, signed_in
from tests.metering.factories import api_calls_meter, event, seats_meter
from tests.metering.portal.helpers import at, send

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("usage:dashboard")


@pytest.fixture
def busy_a(customer_a):
    """Four weeks of customer A's API calls (30 to 57 a day) and a seats reading."""
    type(customer_a).objects.filter(pk=customer_a.pk).update(
        created_at=timezone.now() - timedelta(days=60)
    )
    customer_a.refresh_from_db()
    meter, seats = api_calls_meter(), seats_meter()
    now = timezone.now()
    send(
        *(
            event(customer_a, f"d{day}-{i}", ts=(now - timedelta(days=day, seconds=i)).isoformat())
            for day in range(1, 29)
            for i in range(30 + 28 - day)
        ),
        at(customer_a, "s1", "active_seats", now - timedelta(hours=1), seats=7),
    )
    return customer_a, meter, seats


@pytest.fixture
def without_forecasts():
    hooks.unregister(usage_outlook)
    yield
    hooks.register_forecast_provider(usage_outlook)


def figure_data(page: str, meter) -> list[dict]:
    """The traces of ``meter``'s daily chart, as plotly receives them."""
    match = re.search(rf'Plotly\.newPlot\(\s*"usage-daily-{meter.pk}-[0-9a-f]+",\s*', page)
    assert match, "no daily chart"
    data, _ = json.JSONDecoder().raw_decode(page, match.end())
    return data


def test_alerts_registers_the_forecast_provider():
    assert usage_outlook in hooks._forecast_providers


def test_count_and_sum_meters_draw_the_band_to_the_periods_end(client, owner_a, busy_a):
    customer, meter, _ = busy_a
    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    now = timezone.now()
    period = selectors.current_period(customer, now)
    outlook = usage_outlook(customer, meter, now, (period.start, period.end))
    traces = {trace["name"]: trace for trace in figure_data(page, meter)}
    low, band, middle = (
        traces["Forecast low (p10)"],
        traces["Forecast range"],
        traces["Forecast"],
    )
    # p90 shaded down to p10, p50 dashed, all on the running total's axis.
    assert band["fill"] == "tonexty" and band["fillcolor"].startswith("rgba(")
    assert middle["line"]["dash"] == "dash"
    assert {low["yaxis"], band["yaxis"], middle["yaxis"]} == {"y2"}
    last_day = (period.end - timedelta(microseconds=1)).date()
    assert middle["x"][-1] == last_day.isoformat()
    assert middle["x"] == [p.day.isoformat() for p in outlook.points]
    assert middle["y"] == [p.p50 for p in outlook.points]
    assert low["y"] == [p.p10 for p in outlook.points]
    assert band["y"] == [p.p90 for p in outlook.points]
    assert all(p.p10 <= p.p50 <= p.p90 for p in outlook.points)
    # The band starts from yesterday's running total, where the drawn line is.
    running = traces[next(name for name in traces if name.startswith("Month to date"))]
    yesterday = (now.astimezone(period.start.tzinfo) - timedelta(days=1)).date().isoformat()
    if yesterday in running["x"]:
        assert middle["y"][0] == running["y"][running["x"].index(yesterday)]


def test_the_panel_and_its_card_say_where_the_period_is_heading(client, owner_a, busy_a):
    customer, meter, _ = busy_a
    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    now = timezone.now()
    period = selectors.current_period(customer, now)
    outlook = usage_outlook(customer, meter, now, (period.start, period.end))
    p50, low, high = (format_quantity(v) for v in (outlook.p50, outlook.p10, outlook.p90))
    assert low != high
    assert (
        f"Projected this month: <strong>{p50} calls</strong> (range {low}–{high})"  # noqa: RUF001
        in page
    )
    card = re.search(r'data-testid="kpi-projection-api_call">([^<]+)<', page).group(1)
    assert card == f"Projected {p50} ({low}–{high})"  # noqa: RUF001
    assert "with the running total and its forecast" in page


def test_gauges_get_no_forecast(client, owner_a, busy_a):
    _, _, seats = busy_a
    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    assert [t["name"] for t in figure_data(page, seats)] == ["Per day (seats)"]
    assert 'data-testid="projection-active_seats"' not in page


def test_a_meter_never_used_has_nothing_to_project(client, owner_a):
    api_calls_meter()
    page = signed_in(client, owner_a).get(DASHBOARD).content.decode()

    assert "Projected" not in page and "Forecast" not in page
    assert "No api calls recorded this month yet." in page


def test_the_htmx_refresh_keeps_the_band(client, owner_a, busy_a):
    _, meter, _ = busy_a
    fragment = signed_in(client, owner_a).get(DASHBOARD, headers=HTMX).content.decode()

    assert "Forecast range" in {t["name"] for t in figure_data(fragment, meter)}
    assert 'data-testid="projection-api_call"' in fragment


def test_without_a_provider_the_page_shows_usage_as_before(
    client, owner_a, busy_a, without_forecasts
):
    _, meter, _ = busy_a
    response = signed_in(client, owner_a).get(DASHBOARD)

    page = response.content.decode()
    assert response.status_code == 200
    assert [t["name"] for t in figure_data(page, meter)] == [
        "Per day (calls)",
        "Month to date (calls)",
    ]
    assert "Projected" not in page and "its forecast" not in page


def test_a_failing_provider_is_logged_and_the_page_still_works(
    client, owner_a, busy_a, without_forecasts, caplog
):
    customer, meter, _ = busy_a

    def broken(customer, meter, now, period):
        raise RuntimeError("forecast store unavailable")

    hooks.register_forecast_provider(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="metering.hooks"):
            response = signed_in(client, owner_a).get(DASHBOARD)
            assert hooks.usage_forecast(customer, meter, timezone.now(), (None, None)) is None
    finally:
        hooks.unregister(broken)

    assert response.status_code == 200
    assert "Projected" not in response.content.decode()
    assert "forecast provider" in caplog.text and "forecast store unavailable" in caplog.text


def test_an_answer_for_another_period_is_not_drawn(customer_a, busy_a):
    customer, meter, _ = busy_a
    now = timezone.now()
    period = selectors.current_period(customer, now)

    elsewhere = (period.start - timedelta(days=30), period.start)
    assert usage_outlook(customer, meter, now, elsewhere) is None
    assert usage_outlook(customer, meter, now, (period.start, period.end)) is not None


def test_the_band_is_valid_plotly_and_only_for_meters_that_add_up():
    """Rendering skips plotly's validation (tests/metering/portal/test_charts.py): check
    the band's traces here."""
    import plotly.graph_objects as go

    from metering import charts
    from metering.models import Meter
    from tests.metering.portal.test_charts import END, START, days

    band = [
        hooks.BandPoint((START + timedelta(days=d)).date(), 3.0 + d, 4.0 + 2 * d, 5.0 + 3 * d)
        for d in range(2, 31)
    ]
    for aggregation in Meter.Aggregation.values:
        meter = Meter(pk=7, code="m", name="M", unit_label="things", aggregation=aggregation)
        figure = charts.daily_figure(
            meter=meter, series=days(1, 2, 3), period_start=START, period_end=END, band=band
        )
        go.Figure(figure)  # raises ValueError on any property plotly does not know
        names = [trace.get("name") for trace in figure["data"]]
        has_band = "Forecast" in names
        assert has_band is (aggregation in Meter.ADDITIVE)

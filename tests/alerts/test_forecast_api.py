"""GET /api/v1/forecast: the customer's period forecast for a meter, from its real usage."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from metering.ingest import events_ingest
from tests.accounts.api.support import api, assert_error
from tests.metering.factories import api_calls_meter, event, users_meter

pytestmark = pytest.mark.django_db

FORECAST = "/api/v1/forecast"


@pytest.fixture
def busy_a(customer_a):
    """Four weeks of customer A's API calls, growing from 20 to about 47 a day."""
    meter = api_calls_meter()
    type(customer_a).objects.filter(pk=customer_a.pk).update(
        created_at=timezone.now() - timedelta(days=60)
    )
    customer_a.refresh_from_db()
    now = datetime.now(UTC)
    batch = []
    for day in range(28, 0, -1):
        moment = now - timedelta(days=day)
        batch += [
            event(customer_a, f"d{day}-{i}", ts=(moment + timedelta(seconds=i)).isoformat())
            for i in range(20 + (28 - day))
        ]
    assert events_ingest(events=batch).accepted == len(batch)
    return meter


def test_the_forecast_bands_the_running_total_and_assesses_a_level(customer_a_token, busy_a):
    response = api(customer_a_token).get(FORECAST, {"meter": "api_call", "level": "100"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["customer"], body["meter"]) == ("alpha", "api_call")
    end = body["period_end_usage"]
    assert Decimal(end["p10"]) <= Decimal(end["p50"]) <= Decimal(end["p90"])
    band = body["band"]
    spreads = [p["p90"] - p["p10"] for p in band]
    assert spreads == sorted(spreads)  # the band widens with the horizon
    assert band[0]["p50"] >= float(body["usage_to_date"]) - 1e-9
    crossing = body["crossing"]
    assert (crossing["level"], crossing["within_days"]) == ("100", 14)
    assert crossing["probability"] > 0.9  # ~50 a day: 100 more within two weeks is near sure
    assert crossing["expected_date"] is not None
    # The same day's reads agree.
    again = api(customer_a_token).get(FORECAST, {"meter": "api_call", "level": "100"})
    assert again.json() == body


def test_a_far_level_is_unlikely(customer_a_token, busy_a):
    body = (
        api(customer_a_token)
        .get(FORECAST, {"meter": "api_call", "level": "1000000", "within_days": 7})
        .json()
    )
    assert body["crossing"]["probability"] < 0.01
    assert body["crossing"]["expected_date"] is None


def test_an_operator_names_the_customer_and_a_customer_key_sees_only_its_own(
    operator_token, customer_a_token, customer_b, busy_a
):
    assert_error(api(operator_token).get(FORECAST, {"meter": "api_call"}), 400, "required",
                 field="customer")  # fmt: skip
    theirs = api(customer_a_token).get(FORECAST, {"meter": "api_call", "customer": "beta"})
    assert_error(theirs, 400, "does_not_exist", field="customer")
    ours = api(operator_token).get(FORECAST, {"meter": "api_call", "customer": "alpha"})
    assert ours.json()["customer"] == "alpha"


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ({"meter": "nope"}, "does_not_exist", "meter"),
        ({"meter": "user_active"}, "meter_not_forecastable", "meter"),
        ({"meter": "api_call", "level": "-5"}, "invalid", "level"),
        ({"meter": "api_call", "level": "10", "within_days": 0}, "min_value", "within_days"),
        ({"meter": "api_call", "days": 3}, "unknown_field", "days"),
    ],
)
def test_bad_queries_are_refused_by_name(customer_a_token, busy_a, query, code, field):
    users_meter()
    assert_error(api(customer_a_token).get(FORECAST, query), 400, code, field=field)

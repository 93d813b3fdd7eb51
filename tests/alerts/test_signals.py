"""Expansion signals: the alerts that mean a customer is outgrowing what it buys."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from alerts import services
from alerts.models import Alert, AlertRule, ExpansionSignal
from alerts.services import evaluation
from metering.ingest import events_ingest
from tests.invoicing.factories import flat, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, event

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def calls(db):
    return api_calls_meter()


@pytest.fixture
def priced(customer_a, calls):
    # 100 calls included, then 0.01 USD a call.
    version = plan_version(components=[flat("50"), per_unit(calls, "0.01", included="100")])
    subscribe(customer_a, version, at=datetime(2026, 1, 1, tzinfo=UTC))
    return customer_a


def ingest(customer, count, *, at, prefix):
    batch = [
        event(customer, f"{prefix}-{i}", ts=(at - timedelta(minutes=1)).isoformat()[:19] + "Z")
        for i in range(count)
    ]
    assert events_ingest(events=batch, now=at).accepted == count


def threshold(customer, meter, basis, levels):
    return AlertRule.objects.create(
        customer=customer, kind="threshold", meter=meter, basis=basis, levels=levels
    )


@pytest.mark.django_db
def test_using_all_included_units_is_a_tier_signal_with_its_revenue_at_current_prices(
    priced, calls
):
    threshold(priced, calls, "percent_included", [Decimal(80), Decimal(100)])
    ingest(priced, 80, at=NOW, prefix="a")
    evaluation.thresholds_evaluate(now=NOW)
    assert not ExpansionSignal.objects.exists()  # 80% is a warning, not growth

    ingest(priced, 20, at=NOW, prefix="b")
    evaluation.thresholds_evaluate(now=NOW)

    signal = ExpansionSignal.objects.get()
    assert (signal.kind, signal.customer, signal.meter) == ("tier_trending", priced, calls)
    assert signal.alert.level == "100"
    # No forecast band on a threshold: a fifth more usage (20 calls at 0.01) is the estimate.
    assert (signal.currency, signal.estimated_revenue_impact_minor) == ("USD", 20)


@pytest.mark.django_db
def test_reaching_the_cap_twice_in_a_row_is_cap_pressure(priced, calls):
    services.cap_set(actor=None, customer=priced, meter=calls, limit="150")
    rule = threshold(priced, calls, "percent_cap", [Decimal(100)])
    october = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)
    ingest(priced, 150, at=october, prefix="oct")
    evaluation.thresholds_evaluate(now=october)
    assert Alert.objects.filter(rule=rule).count() == 1
    assert not ExpansionSignal.objects.exists()  # once may be a one-off

    ingest(priced, 150, at=NOW, prefix="nov")
    evaluation.thresholds_evaluate(now=NOW)

    signal = ExpansionSignal.objects.get()
    assert signal.kind == "cap_pressure"
    # Half the cap again: 75 more calls beyond the 100 included, at 0.01 USD.
    assert (signal.currency, signal.estimated_revenue_impact_minor) == ("USD", 75)


@pytest.mark.django_db
def test_a_falling_velocity_or_a_units_threshold_is_no_signal(priced, calls):
    threshold(priced, calls, "units", [Decimal(10)])
    ingest(priced, 10, at=NOW, prefix="a")
    evaluation.thresholds_evaluate(now=NOW)
    assert Alert.objects.exists()
    assert not ExpansionSignal.objects.exists()

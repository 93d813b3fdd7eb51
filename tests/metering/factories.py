import factory
from factory.django import DjangoModelFactory

from metering.models import Meter


class MeterFactory(DjangoModelFactory):
    class Meta:
        model = Meter
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"meter_{n}")
    name = factory.LazyAttribute(lambda o: o.code.replace("_", " ").title())
    unit_label = "units"
    aggregation = Meter.Aggregation.COUNT
    value_property = ""
    filters = factory.LazyFunction(list)
    group_by = factory.LazyFunction(list)


def api_calls_meter():
    return MeterFactory(
        code="api_call", name="API calls", unit_label="calls", group_by=["endpoint", "region"]
    )


def data_meter():
    return MeterFactory(
        code="data_processed",
        name="Data processed",
        unit_label="GB",
        aggregation=Meter.Aggregation.SUM,
        value_property="gb",
    )


def seats_meter():
    return MeterFactory(
        code="active_seats",
        name="Active seats",
        unit_label="seats",
        aggregation=Meter.Aggregation.LATEST,
        value_property="seats",
    )


def users_meter():
    return MeterFactory(
        code="user_active",
        name="Unique users",
        unit_label="users",
        aggregation=Meter.Aggregation.UNIQUE_COUNT,
        value_property="user_id",
    )


def event(customer, key, name="api_call", ts="2026-11-02T10:15:00Z", **properties) -> dict:
    return {
        "idempotency_key": key,
        "customer": customer.external_id,
        "event_name": name,
        "timestamp": ts,
        "properties": properties,
    }

"""Shapes the metering API reads and writes.

Ingested events are not here on purpose: ``metering.ingest`` validates each event itself
(a DRF serializer per event would cost about a third of the ingest rate). Quantities leave
as strings (``"12.5"``), never floats, so no digit is lost on the way to a bill.
"""

import re
from datetime import UTC, datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.serializers import CustomerReferenceField, StrictInputSerializer
from metering.models import Meter

from .pagination import EventCursorPagination

# In a query string an unencoded "+02:00" arrives as " 02:00"; read it as the offset meant.
_LOST_PLUS = re.compile(r" (\d{2}:?\d{2})$")


@extend_schema_field(OpenApiTypes.DATETIME)
class Rfc3339Field(serializers.Field):
    """An RFC 3339 time with its UTC offset (``2026-11-01T00:00:00Z``, ``…+01:00``).

    A time without an offset is refused rather than guessed. Written back with the offset
    it carries (``Z`` for UTC), so a bucket of a Berlin customer reads ``…+01:00``.
    """

    default_error_messages = {
        "invalid": "Give an RFC 3339 time with a UTC offset, e.g. 2026-11-01T00:00:00Z.",
    }

    def to_internal_value(self, data) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        text = _LOST_PLUS.sub(r"+\1", data.strip())
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            self.fail("invalid")
        if value.tzinfo is None or "T" not in text.upper():
            self.fail("invalid")
        return value.astimezone(UTC)

    def to_representation(self, value: datetime) -> str:
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text


def _quantity(**kwargs) -> serializers.DecimalField:
    # No fixed places: 3.75 stays "3.75" and 100 stays "100".
    return serializers.DecimalField(
        max_digits=None, decimal_places=None, coerce_to_string=True, **kwargs
    )


# --- Query strings ----------------------------------------------------------------------


class StrictQuerySerializer(serializers.Serializer):
    """Query parameters where a misspelt one is an error, not silently ignored (an
    ignored ``custmer=`` would widen an operator's list to every customer).

    ``prefixed`` names families of parameters the view reads itself (``property.<name>``).
    """

    prefixed: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def to_internal_value(self, data):
        known = {*self.fields, *self.extra}
        for name in data:
            if name in known or (self.prefixed and name.startswith(self.prefixed)):
                continue
            key = str(name)[:100]
            allowed = ", ".join([*self.fields, *self.extra, *(f"{p}<name>" for p in self.prefixed)])
            raise serializers.ValidationError(
                {key: [f"{key} is not a parameter here; use {allowed}."]}, code="unknown_field"
            )
        return super().to_internal_value(data)


def prefixed_params(query_params, prefix: str, field_pattern: str) -> dict[str, list[str]]:
    """``prefix<name>=value`` parameters as {name: [values]}; a bad name is a 400."""
    found: dict[str, list[str]] = {}
    for key in query_params:
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if not re.fullmatch(field_pattern, name):
            raise serializers.ValidationError(
                {key: [f"{key} does not name a property (letters, digits, _ . : -)."]},
                code="invalid",
            )
        found[name] = query_params.getlist(key)
    return found


# --- Events -----------------------------------------------------------------------------


class EventListQuerySerializer(StrictQuerySerializer):
    prefixed = ("property.",)
    extra = (EventCursorPagination.cursor_query_param, EventCursorPagination.page_size_query_param)

    customer = serializers.CharField(
        required=False,
        max_length=128,
        help_text="external_id of the customer (operator keys; a customer key sees its own).",
    )
    meter = serializers.CharField(
        required=False,
        max_length=128,
        help_text="Only the events this meter counts (its event name and filters).",
    )
    event_name = serializers.CharField(required=False, max_length=128)
    start = Rfc3339Field(required=False, help_text="Events at or after this time.")
    end = Rfc3339Field(required=False, help_text="Events before this time.")

    def validate(self, attrs):
        if "meter" in attrs and "event_name" in attrs:
            raise serializers.ValidationError(
                {"event_name": ["Filter by meter or by event_name, not both."]}, code="invalid"
            )
        if "start" in attrs and "end" in attrs and attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError(
                {"end": ["end must be after start."]}, code="invalid_range"
            )
        return attrs


class EventOutputSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField()
    customer = serializers.CharField(source="customer.external_id")
    event_name = serializers.CharField()
    timestamp = Rfc3339Field(help_text="When the usage happened (event time).")
    received_at = Rfc3339Field(help_text="When Meterbook stored it.")
    properties = serializers.DictField()
    late = serializers.BooleanField(
        help_text="Arrived for a period already invoiced; billed as an adjustment."
    )
    voided_at = Rfc3339Field(allow_null=True)
    void_reason = serializers.CharField()


# Named in SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]: other "status" fields exist.
EVENT_STATUSES = ("accepted", "duplicate", "rejected")
VOID_STATUSES = ("voided", "already_void", "not_found", "period_closed")


class EventBatchResultSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the event in the batch.")
    idempotency_key = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=EVENT_STATUSES)
    code = serializers.CharField(
        required=False, help_text="Why it was rejected, e.g. unknown_customer."
    )
    message = serializers.CharField(required=False)


class EventBatchOutputSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = EventBatchResultSerializer(many=True, help_text="One per event, in batch order.")


class EventInputSerializer(serializers.Serializer):
    """One event (documentation only: ``metering.ingest`` validates the batch)."""

    idempotency_key = serializers.CharField(max_length=255)
    customer = serializers.CharField(help_text="The customer's external_id.")
    event_name = serializers.CharField(max_length=128, help_text="A meter's code.")
    timestamp = Rfc3339Field()
    properties = serializers.DictField(required=False, help_text="At most 8 KiB as JSON.")


class EventBatchInputSerializer(serializers.Serializer):
    """Documentation only: a bare JSON array of events is accepted too."""

    events = EventInputSerializer(many=True)


class EventVoidInputSerializer(StrictInputSerializer):
    customer = CustomerReferenceField(help_text="external_id of the events' customer.")
    idempotency_keys = serializers.ListField(
        child=serializers.CharField(max_length=255), help_text="Up to 1,000 keys."
    )
    reason = serializers.CharField(max_length=500, help_text="Kept in the audit log.")


class EventVoidResultSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField()
    status = serializers.ChoiceField(choices=VOID_STATUSES)


class EventVoidOutputSerializer(serializers.Serializer):
    voided = serializers.IntegerField()
    results = EventVoidResultSerializer(many=True, help_text="One per key, in request order.")


# --- Meters -----------------------------------------------------------------------------


class MeterInputSerializer(StrictInputSerializer):
    """Shapes only; ``metering.services`` checks the definition as a whole."""

    code = serializers.CharField(max_length=128, help_text="The event name this meter counts.")
    name = serializers.CharField(max_length=200)
    unit_label = serializers.CharField(max_length=40, help_text="e.g. calls, GB, seats")
    aggregation = serializers.ChoiceField(choices=Meter.Aggregation.choices)
    value_property = serializers.CharField(
        max_length=64, required=False, allow_blank=True, help_text="Not used by count."
    )
    filters = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text='Each {"property": p, "equals": v} or {"property": p, "in": [v, ...]}.',
    )
    group_by = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        help_text="Up to three properties that break usage down.",
    )
    is_active = serializers.BooleanField(required=False)


class MeterOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    unit_label = serializers.CharField()
    aggregation = serializers.ChoiceField(choices=Meter.Aggregation.choices)
    value_property = serializers.CharField()
    filters = serializers.ListField(
        child=serializers.DictField(), help_text='Normalized: [{"property", "values": [...]}].'
    )
    group_by = serializers.ListField(child=serializers.CharField())
    is_active = serializers.BooleanField()
    definition_version = serializers.IntegerField()
    rebuild_status = serializers.ChoiceField(
        choices=Meter.RebuildStatus.choices,
        help_text="queued/running after a definition change; numbers are final once idle.",
    )
    rebuild_progress = serializers.IntegerField(help_text="Percent of the rebuild done.")
    created_at = Rfc3339Field()
    updated_at = Rfc3339Field()


class MeterListQuerySerializer(StrictQuerySerializer):
    extra = ("cursor", "limit")

    include_inactive = serializers.BooleanField(
        required=False, default=False, help_text="Operator keys: list retired meters too."
    )


# --- Usage ------------------------------------------------------------------------------

GRANULARITY_CHOICES = ("none", "hour", "day", "month")


class UsageQuerySerializer(StrictQuerySerializer):
    prefixed = ("dimension.",)

    customer = serializers.CharField(
        required=False,
        max_length=128,
        help_text="external_id; required for operator keys, implied for customer keys.",
    )
    meter = serializers.CharField(max_length=128, help_text="The meter's code.")
    start = Rfc3339Field(help_text="Inclusive.")
    end = Rfc3339Field(help_text="Exclusive.")
    granularity = serializers.CharField(
        required=False,
        default="none",
        help_text="none (a total), hour, day or month (buckets in the customer's time zone).",
    )
    group_by = serializers.CharField(
        required=False, max_length=64, help_text="One of the meter's dimensions."
    )

    def validate_granularity(self, value: str) -> str:
        if value not in GRANULARITY_CHOICES:
            raise serializers.ValidationError(
                f"granularity must be one of {', '.join(GRANULARITY_CHOICES)}.",
                code="invalid_granularity",
            )
        return value


class UsagePointSerializer(serializers.Serializer):
    bucket = Rfc3339Field(help_text="Start of the bucket, in the customer's time zone.")
    group = serializers.CharField(
        required=False, help_text="The group_by dimension's value (grouped series only)."
    )
    value = _quantity(allow_null=True, help_text="null: a gauge with no reading in the bucket.")


class UsageGroupSerializer(serializers.Serializer):
    group = serializers.CharField(help_text='The dimension\'s value ("" when events lack it).')
    value = _quantity(allow_null=True)


class UsageOutputSerializer(serializers.Serializer):
    customer = serializers.CharField(help_text="external_id")
    meter = serializers.CharField()
    aggregation = serializers.ChoiceField(choices=Meter.Aggregation.choices)
    unit_label = serializers.CharField()
    timezone = serializers.CharField(help_text="The customer's time zone (bucket boundaries).")
    start = Rfc3339Field()
    end = Rfc3339Field()
    granularity = serializers.ChoiceField(choices=GRANULARITY_CHOICES)
    group_by = serializers.CharField(allow_null=True)
    where = serializers.DictField(child=serializers.CharField())
    total = _quantity(required=False, help_text="Without granularity and group_by.")
    series = UsagePointSerializer(many=True, required=False, help_text="With a granularity.")
    breakdown = UsageGroupSerializer(
        many=True, required=False, help_text="With group_by and no granularity; largest first."
    )

"""Caps and authorization over the API. Quantities pass through as sent: the services
check them exactly (a float is refused, never rounded)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.serializers import (
    CustomerReferenceField,
    KeyCustomerDefault,
    StrictInputSerializer,
)
from invoicing.api.serializers import DecimalStringField
from metering.api.serializers import StrictQuerySerializer
from metering.models import Meter

from ..models import Cap


@extend_schema_field(OpenApiTypes.STR)
class MeterReferenceField(serializers.SlugRelatedField):
    default_error_messages = {"does_not_exist": "No meter has code {value}."}

    def __init__(self, **kwargs):
        super().__init__(slug_field="code", queryset=Meter.objects.filter(is_active=True), **kwargs)


@extend_schema_field(OpenApiTypes.STR)
class QuantityField(serializers.Field):
    """A quantity as a string (``"12.5"``) or an integer, checked by the service."""

    def to_internal_value(self, data):
        return data


class AuthorizeInputSerializer(StrictInputSerializer):
    customer = CustomerReferenceField(help_text="external_id of the customer.")
    meter = MeterReferenceField(help_text="code of the meter.")
    quantity = QuantityField(help_text="Units to reserve, more than zero.")


class ReservationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    quantity = DecimalStringField()
    expires_at = serializers.DateTimeField()


class AuthorizationOutputSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    remaining = DecimalStringField(
        allow_null=True,
        help_text="Units left under the cap after this request; null when the meter is "
        "not capped for this customer.",
    )
    reservation = ReservationSerializer(allow_null=True)
    spend_remaining = DecimalStringField(
        allow_null=True,
        help_text="Usage spend left under the customer's total spend cap after this "
        "request, in the plan's currency; null when it has none.",
    )
    spend_reservation = ReservationSerializer(
        allow_null=True,
        help_text="The request's cost reserved in the total spend cap (quantity in money); "
        "null when there is no total cap or the usage costs nothing.",
    )


class CapInputSerializer(StrictInputSerializer):
    limit = QuantityField(help_text="Units of the meter per billing period (0 or more).")
    on_exceed = serializers.ChoiceField(choices=Cap.OnExceed.choices, required=False)


class CapCreateInputSerializer(CapInputSerializer):
    customer = CustomerReferenceField(
        default=KeyCustomerDefault(),
        help_text="external_id of the customer. Required for operator keys; a customer key "
        "may leave it out (its own customer).",
    )
    meter = MeterReferenceField(
        required=False,
        allow_null=True,
        default=None,
        help_text="code of the meter to cap; null or left out caps the customer's total "
        "spend on usage (every usage price of its plan; flat fees and discounts are not "
        "usage), in money.",
    )
    measure = serializers.ChoiceField(
        choices=Cap.Measure.choices,
        required=False,
        help_text="units (default for a meter) or money (the plan's currency; always for "
        "a total spend cap).",
    )

    def validate(self, attrs):
        if attrs.get("meter") is None:
            attrs.setdefault("measure", Cap.Measure.MONEY)
        return attrs


class CapOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.CharField(source="customer.external_id")
    meter = serializers.CharField(
        source="meter.code", allow_null=True, help_text="null: the total spend cap."
    )
    measure = serializers.ChoiceField(choices=Cap.Measure.choices)
    limit = DecimalStringField()
    on_exceed = serializers.ChoiceField(choices=Cap.OnExceed.choices)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ForecastQuerySerializer(StrictQuerySerializer):
    meter = MeterReferenceField(help_text="code of a count or sum meter.")
    customer = CustomerReferenceField(
        default=KeyCustomerDefault(),
        help_text="external_id of the customer. Required for operator keys.",
    )
    level = QuantityField(
        required=False, help_text="Units whose crossing to assess, e.g. a tier edge or a cap."
    )
    within_days = serializers.IntegerField(
        required=False, min_value=1, max_value=366, help_text="Days ahead (default 14)."
    )


class QuantilesSerializer(serializers.Serializer):
    p10 = DecimalStringField()
    p50 = DecimalStringField()
    p90 = DecimalStringField()


class BandPointSerializer(serializers.Serializer):
    day = serializers.DateField()
    p10 = serializers.FloatField()
    p50 = serializers.FloatField()
    p90 = serializers.FloatField()


class CrossingSerializer(serializers.Serializer):
    level = DecimalStringField()
    within_days = serializers.IntegerField()
    probability = serializers.FloatField(help_text="0 to 1, calibrated.")
    expected_date = serializers.DateField(
        allow_null=True, help_text="The day crossing becomes more likely than not, if any."
    )


class ForecastOutputSerializer(serializers.Serializer):
    customer = serializers.CharField(source="customer.external_id")
    meter = serializers.CharField(source="meter.code")
    period_start = serializers.DateTimeField(source="period.start")
    period_end = serializers.DateTimeField(source="period.end")
    usage_to_date = DecimalStringField()
    period_end_usage = QuantilesSerializer(help_text="Usage at the period's end: p10/p50/p90.")
    band = BandPointSerializer(many=True, help_text="The running total, day by day.")
    crossing = CrossingSerializer(allow_null=True)

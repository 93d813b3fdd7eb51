"""The alert history over the API: filters, and alerts with their deliveries."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.pagination import CursorPagination

from accounts.api.pagination import CreatedCursorPagination
from accounts.api.serializers import CustomerReferenceField
from metering.api.serializers import Rfc3339Field, StrictQuerySerializer
from metering.models import Meter

from ..models import Alert, AlertRule, Delivery


def _values(choices) -> str:
    return "One of: " + ", ".join(choices.values) + "."


class AlertCursorPagination(CreatedCursorPagination):
    """Newest first by when they fired; the id breaks ties (alerts of one batch share it)."""

    ordering = ("-triggered_at", "-id")


@extend_schema_field(OpenApiTypes.STR)
class HistoryMeterField(serializers.SlugRelatedField):
    """A meter by code, retired ones included: history outlives a meter's retirement."""

    default_error_messages = {"does_not_exist": "No meter has code {value}."}

    def __init__(self, **kwargs):
        super().__init__(slug_field="code", queryset=Meter.objects.all(), **kwargs)


class AlertListQuerySerializer(StrictQuerySerializer):
    extra = (CursorPagination.cursor_query_param, CreatedCursorPagination.page_size_query_param)

    customer = CustomerReferenceField(
        required=False,
        help_text="external_id of the customer (operator keys; a customer key sees its own).",
    )
    status = serializers.ChoiceField(choices=Alert.Status.choices, required=False)
    kind = serializers.ChoiceField(choices=AlertRule.Kind.choices, required=False)
    meter = HistoryMeterField(required=False, help_text="code of the meter.")
    since = Rfc3339Field(required=False, help_text="Alerts triggered at or after this time.")
    until = Rfc3339Field(required=False, help_text="Alerts triggered before this time.")

    def validate(self, attrs):
        if "since" in attrs and "until" in attrs and attrs["until"] <= attrs["since"]:
            raise serializers.ValidationError(
                {"until": ["until must be after since."]}, code="invalid_range"
            )
        return attrs


class AlertDeliveryAttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    attempted_at = Rfc3339Field()
    status = serializers.CharField(
        help_text="delivered, failed (retried), failed_permanent, endpoint_gone or refused."
    )
    status_code = serializers.IntegerField(allow_null=True, help_text="The receiver's HTTP status.")
    duration_ms = serializers.IntegerField()
    error_code = serializers.CharField()
    error_message = serializers.CharField()
    response_excerpt = serializers.CharField(help_text="The start of the receiver's answer.")


class AlertDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    # Plain strings (values in the help text): enums named "status" or "kind" would clash
    # with the other apps' in the schema.
    event = serializers.CharField(help_text=_values(Delivery.Event))
    channel = serializers.CharField(help_text=_values(Delivery.Channel))
    persona = serializers.CharField()
    target = serializers.CharField(help_text="The URL or email address.")
    endpoint = serializers.IntegerField(
        source="endpoint_id", allow_null=True, help_text="The webhook endpoint's id, if any."
    )
    status = serializers.CharField(help_text=_values(Delivery.Status))
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    next_attempt_at = Rfc3339Field(allow_null=True, help_text="When it is tried again, if so.")
    created_at = Rfc3339Field()
    delivered_at = Rfc3339Field(allow_null=True)


class AlertDeliveryDetailSerializer(AlertDeliverySerializer):
    attempt_log = AlertDeliveryAttemptSerializer(many=True, source="attempt_list")


class AlertOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.CharField(source="customer.external_id")
    rule = serializers.IntegerField(
        source="rule_id", allow_null=True, help_text="null once the rule is deleted."
    )
    kind = serializers.CharField(help_text=_values(AlertRule.Kind))
    meter = serializers.CharField(
        source="meter.code", allow_null=True, help_text="null for total spend."
    )
    level = serializers.CharField(
        help_text='What fired: a threshold level ("50000", "80%"), a direction ("rising"), a day.'
    )
    severity = serializers.CharField(help_text=_values(Alert.Severity))
    status = serializers.CharField(help_text=_values(Alert.Status))
    title = serializers.CharField()
    summary = serializers.CharField()
    evidence = serializers.JSONField(help_text="The figures behind the alert.")
    audience = serializers.ListField(child=serializers.CharField(), help_text="Personas.")
    period_start = Rfc3339Field()
    period_end = Rfc3339Field()
    triggered_at = Rfc3339Field()
    resolved_at = Rfc3339Field(allow_null=True)
    resolution = serializers.CharField()
    deliveries = AlertDeliverySerializer(
        many=True, source="delivery_list", help_text="Who was told, on which channel, and how."
    )


class AlertDetailOutputSerializer(AlertOutputSerializer):
    deliveries = AlertDeliveryDetailSerializer(
        many=True, source="delivery_list", help_text="With every attempt."
    )

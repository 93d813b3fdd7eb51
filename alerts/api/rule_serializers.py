"""Alert rules and plan cap defaults over the API. Numbers pass through as sent: the
services check them exactly (a float is refused, never rounded)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.serializers import CustomerReferenceField, StrictInputSerializer
from accounts.models import Persona
from invoicing.api.serializers import DecimalStringField
from invoicing.models import Plan
from metering.api.serializers import StrictQuerySerializer

from ..models import AlertRule, Cap
from .serializers import MeterReferenceField, QuantityField


def _enum(component: str, choices) -> type[serializers.ChoiceField]:
    """A choice field documented once, as its own schema component (several resources
    have a ``kind``; inline, the schema generator would guess names and warn)."""

    def __init__(self, **kwargs):
        serializers.ChoiceField.__init__(self, choices=choices, **kwargs)

    field = type(f"{component}Field", (serializers.ChoiceField,), {"__init__": __init__})
    schema = serializers.ChoiceField(choices=choices)
    return extend_schema_field(schema, component_name=component)(field)


RuleKindField = _enum("AlertRuleKind", AlertRule.Kind.choices)
RuleBasisField = _enum("AlertRuleBasis", AlertRule.Basis.choices)
AudiencePersonaField = _enum("AudiencePersona", Persona.choices)
CapMeasureField = _enum("CapMeasure", Cap.Measure.choices)
CapOnExceedField = _enum("CapOnExceed", Cap.OnExceed.choices)


@extend_schema_field(OpenApiTypes.STR)
class PlanReferenceField(serializers.SlugRelatedField):
    default_error_messages = {"does_not_exist": "No plan has code {value}."}

    def __init__(self, **kwargs):
        super().__init__(slug_field="code", queryset=Plan.objects.all(), **kwargs)


class RuleInputSerializer(StrictInputSerializer):
    """What a rule says; which customer (or plan) it belongs to is fixed at creation."""

    name = serializers.CharField(max_length=120, required=False, allow_blank=True)
    kind = RuleKindField(required=False, help_text="threshold (the default) on creation.")
    meter = MeterReferenceField(
        required=False,
        allow_null=True,
        help_text="code of the meter; null watches total spend (basis money or "
        "percent_commitment).",
    )
    basis = RuleBasisField(required=False, help_text="What the levels measure (units by default).")
    levels = serializers.ListField(
        child=QuantityField(),
        required=False,
        help_text="Threshold: up to 10 levels (any order; kept ascending). Predictive: the "
        "one level to forecast against. Percent bases take percentages (80 is 80%).",
    )
    confidence = QuantityField(
        required=False, allow_null=True, help_text="Predictive: between 0 and 1 (0.8)."
    )
    within_days = serializers.IntegerField(
        required=False, allow_null=True, help_text="Predictive: 1 to 90 days (14)."
    )
    factor = QuantityField(
        required=False,
        allow_null=True,
        help_text="Velocity: fires when the recent daily rate rises by this factor or falls "
        "to its inverse (2).",
    )
    recent_days = serializers.IntegerField(
        required=False, allow_null=True, help_text="Velocity: the recent window (7)."
    )
    baseline_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Velocity: the baseline window, longer than recent_days, up to 90 (28).",
    )
    sensitivity = QuantityField(
        required=False,
        allow_null=True,
        help_text="Anomaly: robust standard deviations from the weekday baseline (6).",
    )
    min_volume = QuantityField(
        required=False,
        allow_null=True,
        help_text="Velocity and anomaly: daily volumes below this are noise (0).",
    )
    audience = serializers.ListField(
        child=AudiencePersonaField(),
        required=False,
        help_text="The personas who hear about it (every persona by default).",
    )
    enabled = serializers.BooleanField(required=False)


class RuleCreateInputSerializer(RuleInputSerializer):
    customer = CustomerReferenceField(
        required=False,
        help_text="external_id of the customer. Operator keys name a customer or a plan; a "
        "customer key leaves both out (its own customer).",
    )
    plan = PlanReferenceField(
        required=False,
        help_text="Operator keys: code of the plan this rule is a default for; every current "
        "subscriber gets a copy.",
    )


class RuleOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.CharField(
        source="customer.external_id", allow_null=True, help_text="null for a plan default."
    )
    plan = serializers.CharField(
        source="plan.code", allow_null=True, help_text="Set for a plan default."
    )
    plan_default = serializers.IntegerField(
        source="plan_default_id",
        allow_null=True,
        help_text="The plan default this rule is a copy of; null once the customer changes it.",
    )
    name = serializers.CharField()
    kind = RuleKindField()
    meter = serializers.CharField(
        source="meter.code", allow_null=True, help_text="null: total spend."
    )
    basis = RuleBasisField()
    levels = serializers.ListField(child=DecimalStringField())
    confidence = DecimalStringField(allow_null=True)
    within_days = serializers.IntegerField(allow_null=True)
    factor = DecimalStringField(allow_null=True)
    recent_days = serializers.IntegerField(allow_null=True)
    baseline_days = serializers.IntegerField(allow_null=True)
    sensitivity = DecimalStringField(allow_null=True)
    min_volume = DecimalStringField(allow_null=True)
    audience = serializers.ListField(child=AudiencePersonaField())
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class RuleListQuerySerializer(StrictQuerySerializer):
    extra = ("cursor", "limit")

    customer = serializers.CharField(
        required=False, max_length=128, help_text="external_id (a customer key sees its own)."
    )
    plan = serializers.CharField(
        required=False, max_length=64, help_text="Operator keys: a plan's defaults, by code."
    )
    kind = RuleKindField(required=False)


class PlanCapDefaultInputSerializer(StrictInputSerializer):
    plan = PlanReferenceField(help_text="code of the plan.")
    meter = MeterReferenceField(help_text="code of the count or sum meter to cap.")
    limit = QuantityField(help_text="Units of the meter, or spend on it, per billing period.")
    measure = CapMeasureField(required=False, help_text="units (the default) or money.")
    on_exceed = CapOnExceedField(
        required=False, help_text="What happens past the cap: reject (the default) or flag."
    )


class PlanCapDefaultOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    plan = serializers.CharField(source="plan.code")
    meter = serializers.CharField(source="meter.code")
    measure = CapMeasureField()
    limit = DecimalStringField()
    on_exceed = CapOnExceedField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class PlanCapDefaultListQuerySerializer(StrictQuerySerializer):
    extra = ("cursor", "limit")

    plan = serializers.CharField(required=False, max_length=64, help_text="code of a plan.")

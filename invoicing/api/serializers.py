"""Shapes the invoicing API reads and writes.

Money leaves as whole numbers in the currency's minor unit (``*_minor``, beside
``currency``); quantities and prices leave as decimal strings (``"0.002"``), never floats.
Input serializers check shapes only: ``invoicing.services`` checks prices (a float price is
refused there, not rounded here) and every rule of the domain.
"""

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.serializers import CustomerReferenceField, StrictInputSerializer
from accounts.currencies import CURRENCY_CHOICES
from invoicing.models import (
    CreditNote,
    Interval,
    Invoice,
    InvoiceLine,
    PriceComponent,
    Subscription,
)
from metering.api.serializers import Rfc3339Field, StrictQuerySerializer

# --- Fields -----------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.DECIMAL)
class DecimalStringField(serializers.Field):
    """A decimal written as a string without trailing zeros: ``"0.002"``, ``"100"``."""

    def to_representation(self, value: Decimal) -> str:
        return format(Decimal(value).normalize(), "f")


class MinorUnitsField(serializers.IntegerField):
    """A whole number of minor units, as a JSON integer: ``"100"`` or ``100.0`` is refused
    rather than read as something the caller may not have meant."""

    default_error_messages = {"invalid": "Give a whole number of minor units (a JSON integer)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def _enum(component: str, choices) -> type[serializers.ChoiceField]:
    """A choice field documented once, as its own schema component.

    Several resources have a ``status`` or a ``kind`` with different choices; inline, the
    schema generator would have to guess names for them (and warn).
    """
    field = type(f"{component}Field", (serializers.ChoiceField,), {})
    schema = serializers.ChoiceField(choices=choices)
    return extend_schema_field(schema, component_name=component)(field)


InvoiceStatusField = _enum("InvoiceStatus", Invoice.Status.choices)
InvoiceLineKindField = _enum("InvoiceLineKind", InvoiceLine.Kind.choices)
PriceComponentKindField = _enum("PriceComponentKind", PriceComponent.Kind.choices)
SubscriptionStatusField = _enum("SubscriptionStatus", Subscription.Status.choices)
CreditNoteReasonField = _enum("CreditNoteReason", CreditNote.Reason.choices)

# Credit notes for a voided invoice or an accepted dispute come from those flows only.
ISSUABLE_REASONS = [
    (value, label)
    for value, label in CreditNote.Reason.choices
    if value not in (CreditNote.Reason.INVOICE_VOIDED, CreditNote.Reason.DISPUTE_ACCEPTED)
]


def _price(**kwargs) -> serializers.CharField:
    # Documentation of an input decimal: the service reads the JSON value itself.
    return serializers.CharField(required=False, **kwargs)


# --- Plans ------------------------------------------------------------------------------


class PlanInputSerializer(StrictInputSerializer):
    code = serializers.SlugField(max_length=64, help_text="Subscriptions name the plan by it.")
    name = serializers.CharField(max_length=200)
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class TierInputSerializer(serializers.Serializer):
    """Documentation only (``invoicing.services`` reads the tiers)."""

    up_to = _price(allow_null=True, help_text='Last unit of the tier, e.g. "1000"; null: no end.')
    unit_price = _price(help_text='Decimal string, e.g. "0.002". Default "0".')
    flat_fee = _price(help_text='Decimal string charged once the tier is reached. Default "0".')


class PriceComponentInputSerializer(serializers.Serializer):
    """Documentation only: ``invoicing.services`` reads and checks each component, so a
    price given as a JSON number with a fraction (a float) is refused, never rounded."""

    kind = PriceComponentKindField(choices=PriceComponent.Kind.choices)
    description = serializers.CharField(required=False, max_length=200)
    meter = serializers.CharField(required=False, help_text="usage: the meter's code.")
    pricing_model = serializers.ChoiceField(
        choices=PriceComponent.Model.choices, required=False, help_text="usage only."
    )
    unit_price = _price(help_text='usage (per_unit, package): decimal string, e.g. "0.002".')
    tiers = TierInputSerializer(
        many=True, required=False, help_text="usage (graduated, volume): ascending."
    )
    package_size = _price(help_text="usage (package): units per package.")
    included_units = _price(help_text="usage: free allowance per period.")
    amount = _price(
        help_text="flat_fee, minimum_spend, commitment, fixed_discount, maximum: decimal "
        "string in the plan's currency (major units)."
    )
    percent = _price(help_text='percent_discount: e.g. "10" for 10%.')
    commitment_months = serializers.IntegerField(
        required=False, help_text="commitment: length of a term (1-120, default 12)."
    )


@extend_schema_field(PriceComponentInputSerializer(many=True))
class PriceComponentsField(serializers.ListField):
    """The components as sent: JSON objects handed to the service untouched."""

    child = serializers.DictField()


class PlanVersionInputSerializer(StrictInputSerializer):
    interval = serializers.ChoiceField(choices=Interval.choices)
    components = PriceComponentsField(help_text="Every price of the version, in order.")
    notes = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=5000,
        help_text="What changed from the previous version.",
    )


class TierOutputSerializer(serializers.Serializer):
    up_to = serializers.CharField(allow_null=True)
    unit_price = serializers.CharField()
    flat_fee = serializers.CharField()


class PriceComponentOutputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    kind = PriceComponentKindField(choices=PriceComponent.Kind.choices)
    description = serializers.CharField()
    meter = serializers.CharField(source="meter.code", allow_null=True)
    pricing_model = serializers.ChoiceField(
        choices=PriceComponent.Model.choices, allow_null=True, help_text="Usage components."
    )
    unit_price = DecimalStringField(allow_null=True)
    tiers = TierOutputSerializer(many=True)
    package_size = DecimalStringField(allow_null=True)
    included_units = DecimalStringField()
    amount = DecimalStringField(allow_null=True, help_text="Major units of the plan's currency.")
    percent = DecimalStringField(allow_null=True)
    commitment_months = serializers.IntegerField(allow_null=True)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["pricing_model"] = data["pricing_model"] or None
        return data


class PlanVersionOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    interval = serializers.ChoiceField(choices=Interval.choices)
    notes = serializers.CharField()
    created_at = Rfc3339Field()
    components = PriceComponentOutputSerializer(many=True, source="components.all")


class PlanOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    currency = serializers.CharField()
    is_active = serializers.BooleanField(help_text="Offered to new subscriptions.")
    created_at = Rfc3339Field()
    versions = PlanVersionOutputSerializer(
        many=True, source="versions.all", help_text="Newest first."
    )


class PlanListQuerySerializer(StrictQuerySerializer):
    extra = ("cursor", "limit")

    include_inactive = serializers.BooleanField(
        required=False, default=False, help_text="Operator keys: list retired plans too."
    )


# --- Subscriptions ----------------------------------------------------------------------


class _PlanChoiceSerializer(StrictInputSerializer):
    plan = serializers.CharField(max_length=64, help_text="The plan's code.")
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="Default: the plan's latest version."
    )


class SubscriptionInputSerializer(_PlanChoiceSerializer):
    customer = CustomerReferenceField(help_text="external_id of the customer.")
    started_at = Rfc3339Field(required=False, help_text="Default: now.")
    billing_anchor = Rfc3339Field(
        required=False,
        help_text="Periods start at its anniversaries; at or before started_at "
        "(default: started_at).",
    )


class SubscriptionChangePlanInputSerializer(_PlanChoiceSerializer):
    at = Rfc3339Field(
        required=False,
        help_text="When the new prices start (default: now); the period it falls in is "
        "prorated by the second.",
    )


class SubscriptionCancelInputSerializer(StrictInputSerializer):
    at_period_end = serializers.BooleanField(
        help_text="true: bill to the end of the current period, then stop; false: stop now "
        "(the current period is billed up to now)."
    )


class SubscriptionPhaseOutputSerializer(serializers.Serializer):
    plan = serializers.CharField(source="plan_version.plan.code")
    version = serializers.IntegerField(source="plan_version.version")
    starts_at = Rfc3339Field()
    ends_at = Rfc3339Field(allow_null=True)


class SubscriptionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.CharField(source="customer.external_id")
    plan = serializers.CharField(source="plan_version.plan.code")
    version = serializers.IntegerField(source="plan_version.version")
    interval = serializers.ChoiceField(choices=Interval.choices)
    currency = serializers.CharField(source="plan_version.plan.currency")
    status = SubscriptionStatusField(choices=Subscription.Status.choices)
    started_at = Rfc3339Field()
    billing_anchor = Rfc3339Field()
    ends_at = Rfc3339Field(allow_null=True, help_text="Set once canceled.")
    canceled_at = Rfc3339Field(allow_null=True)
    billed_through = Rfc3339Field(help_text="End of the last period invoiced.")
    current_period_start = serializers.SerializerMethodField()
    current_period_end = Rfc3339Field(
        allow_null=True, help_text="null once the last period is invoiced."
    )
    phases = SubscriptionPhaseOutputSerializer(
        many=True, source="phases.all", help_text="One per plan version it was on, oldest first."
    )
    created_at = Rfc3339Field()

    @extend_schema_field(Rfc3339Field(allow_null=True))
    def get_current_period_start(self, subscription: Subscription) -> str | None:
        if subscription.current_period_end is None:
            return None
        return Rfc3339Field().to_representation(subscription.billed_through)


class SubscriptionListQuerySerializer(StrictQuerySerializer):
    extra = ("cursor", "limit")

    customer = serializers.CharField(
        required=False,
        max_length=128,
        help_text="external_id (operator keys; a customer key sees its own).",
    )
    status = serializers.ChoiceField(choices=Subscription.Status.choices, required=False)


# --- Invoices ---------------------------------------------------------------------------


class TierBreakdownSerializer(serializers.Serializer):
    tier = serializers.IntegerField()
    first_unit = serializers.CharField()
    up_to = serializers.CharField(allow_null=True)
    quantity = serializers.CharField()
    unit_price = serializers.CharField()
    flat_fee = serializers.CharField()
    amount = serializers.CharField(help_text="Major units, before the line is rounded.")


class LineOutputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    kind = InvoiceLineKindField(choices=InvoiceLine.Kind.choices)
    description = serializers.CharField()
    meter = serializers.CharField(source="meter.code", allow_null=True)
    period_start = Rfc3339Field(help_text="The span this line charges for.")
    period_end = Rfc3339Field()
    quantity = DecimalStringField()
    included_units = DecimalStringField()
    unit_price = DecimalStringField(allow_null=True)
    amount_minor = serializers.IntegerField(help_text="Negative for discounts and drawdowns.")
    tiers = TierBreakdownSerializer(many=True, help_text="Tiered usage: tier by tier.")


class InvoiceLineOutputSerializer(LineOutputSerializer):
    id = serializers.IntegerField(help_text="Credit notes name lines by it.")
    credited_minor = serializers.IntegerField(help_text="Credited by credit notes so far.")


class InvoiceUsageCheckOutputSerializer(serializers.Serializer):
    meter = serializers.CharField(source="meter.code")
    period_start = Rfc3339Field()
    period_end = Rfc3339Field()
    batch_quantity = DecimalStringField(help_text="From the raw events: what is billed.")
    realtime_quantity = DecimalStringField()
    portal_quantity = DecimalStringField(help_text="As the customer portal shows it.")
    matches = serializers.BooleanField()
    checked_at = Rfc3339Field()


class InvoiceOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField(allow_null=True, help_text="Given when finalized.")
    customer = serializers.CharField(source="customer.external_id")
    subscription = serializers.IntegerField(source="subscription_id", allow_null=True)
    status = InvoiceStatusField(choices=Invoice.Status.choices)
    currency = serializers.CharField()
    period_start = Rfc3339Field()
    period_end = Rfc3339Field()
    subtotal_minor = serializers.IntegerField(help_text="The charges, before discounts.")
    total_minor = serializers.IntegerField()
    finalized_at = Rfc3339Field(allow_null=True)
    due_at = Rfc3339Field(allow_null=True)
    paid_at = Rfc3339Field(allow_null=True)
    voided_at = Rfc3339Field(allow_null=True)
    void_reason = serializers.CharField()
    created_at = Rfc3339Field()


class InvoiceDetailOutputSerializer(InvoiceOutputSerializer):
    credited_minor = serializers.IntegerField(help_text="Total of its credit notes.")
    commitment_balance_after_minor = serializers.IntegerField(allow_null=True)
    lines = InvoiceLineOutputSerializer(many=True, source="detail_lines")
    usage_checks = InvoiceUsageCheckOutputSerializer(
        many=True,
        required=False,
        help_text="Operator keys only: the reconciliation gate's evidence per meter; a "
        "disagreement holds the invoice.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The views say who asks; the schema (no context) documents the field.
        if self.context.get("operator") is False:
            self.fields.pop("usage_checks")


class InvoiceListQuerySerializer(StrictQuerySerializer):
    extra = ("cursor", "limit")

    customer = serializers.CharField(
        required=False,
        max_length=128,
        help_text="external_id (operator keys; a customer key sees its own).",
    )
    status = serializers.ChoiceField(choices=Invoice.Status.choices, required=False)
    start = Rfc3339Field(required=False, help_text="Invoices whose period starts at or after.")
    end = Rfc3339Field(required=False, help_text="Invoices whose period starts before.")

    def validate(self, attrs):
        if "start" in attrs and "end" in attrs and attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError(
                {"end": ["end must be after start."]}, code="invalid_range"
            )
        return attrs


class InvoiceFinalizeInputSerializer(StrictInputSerializer):
    """No fields: an empty body (or ``{}``)."""


class InvoiceVoidInputSerializer(StrictInputSerializer):
    reason = serializers.CharField(max_length=500, help_text="Kept with the invoice.")


# --- Credit notes -----------------------------------------------------------------------


class CreditLineInputSerializer(StrictInputSerializer):
    line = serializers.IntegerField(help_text="The invoice line's id.")
    amount_minor = MinorUnitsField(help_text="At most what is left to credit on the line.")


class CreditNoteInputSerializer(StrictInputSerializer):
    reason = serializers.ChoiceField(choices=ISSUABLE_REASONS)
    memo = serializers.CharField(max_length=5000, help_text="Shown to the customer.")
    lines = CreditLineInputSerializer(
        many=True,
        required=False,
        help_text="Leave out to credit everything still creditable on the invoice.",
    )

    def validate_lines(self, lines: list[dict]) -> list[dict]:
        if not lines:
            raise serializers.ValidationError(
                "Name at least one line, or leave lines out to credit the whole invoice.",
                code="empty",
            )
        return lines


class CreditNoteLineOutputSerializer(serializers.Serializer):
    invoice_line = serializers.IntegerField(source="invoice_line_id")
    description = serializers.CharField()
    amount_minor = serializers.IntegerField()


class CreditNoteOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField()
    invoice = serializers.IntegerField(source="invoice_id")
    invoice_number = serializers.CharField(source="invoice.number")
    customer = serializers.CharField(source="customer.external_id")
    currency = serializers.CharField(source="invoice.currency")
    reason = CreditNoteReasonField(choices=CreditNote.Reason.choices)
    memo = serializers.CharField()
    total_minor = serializers.IntegerField()
    issued_at = Rfc3339Field()
    lines = CreditNoteLineOutputSerializer(many=True, source="lines.all")


class CreditNoteListQuerySerializer(StrictQuerySerializer):
    extra = ("cursor", "limit")

    customer = serializers.CharField(
        required=False,
        max_length=128,
        help_text="external_id (operator keys; a customer key sees its own).",
    )


# --- Upcoming invoice -------------------------------------------------------------------


class UpcomingInvoiceOutputSerializer(serializers.Serializer):
    customer = serializers.CharField(source="subscription.customer.external_id")
    subscription = serializers.IntegerField(source="subscription.pk")
    plan = serializers.CharField(source="subscription.plan_version.plan.code")
    version = serializers.IntegerField(source="subscription.plan_version.version")
    currency = serializers.CharField()
    period_start = Rfc3339Field()
    period_end = Rfc3339Field()
    as_of = Rfc3339Field(help_text="Usage counted up to this time (real-time track).")
    lines = LineOutputSerializer(many=True)
    total_minor = serializers.IntegerField(help_text="The period rated as if it closed now.")
    projected_total_minor = serializers.IntegerField(
        help_text="Usage so far extended in a straight line to the period's end."
    )

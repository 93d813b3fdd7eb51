"""Shapes the API reads and writes.

Input serializers only parse and validate; the writes themselves happen in
``accounts.services``. Every input serializer derives from ``StrictInputSerializer`` so an
unknown key is an error instead of being dropped on the floor.
"""

from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts import selectors
from accounts.currencies import CURRENCY_CHOICES
from accounts.models import EXTERNAL_ID_VALIDATOR, ApiKey, Customer, Persona, validate_time_zone

# An unknown key is echoed back in the error; cap it so a huge key cannot bloat the answer.
_ECHO_LIMIT = 100


class StrictInputSerializer(serializers.Serializer):
    """Input that refuses keys it does not know.

    DRF silently ignores unknown keys, so a typo (``billing_emial``) or a read-only field
    would look like success while nothing is stored. Here the first such key is a 400
    ``unknown_field`` naming it.
    """

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            writable = [name for name, field in self.fields.items() if not field.read_only]
            unknown = [key for key in data if key not in writable]
            if unknown:
                key = str(unknown[0])[:_ECHO_LIMIT]
                raise serializers.ValidationError(
                    {key: [f"{key} is not a field you can write here; use {', '.join(writable)}."]},
                    code="unknown_field",
                )
        return super().to_internal_value(data)


class KeyCustomerDefault:
    """The customer a customer key belongs to; an operator key has none and must name one."""

    requires_context = True

    def __call__(self, field):
        customer = field.context["principal"].customer
        if customer is None:
            raise serializers.ValidationError(
                "Name the customer by its external_id: an operator key is not bound to one.",
                code="required",
            )
        return customer

    def __repr__(self):
        return "the API key's own customer"


@extend_schema_field(OpenApiTypes.STR)
class CustomerReferenceField(serializers.SlugRelatedField):
    """A customer named by ``external_id``, among the customers the calling key may see.

    Another tenant's customer is reported exactly like one that does not exist.
    """

    default_error_messages = {"does_not_exist": "Customer {value} does not exist."}

    def __init__(self, **kwargs):
        super().__init__(slug_field="external_id", **kwargs)

    def get_queryset(self):
        return selectors.customer_list(principal=self.context["principal"])


# --- Customers --------------------------------------------------------------------------


class CustomerInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    external_id = serializers.CharField(
        max_length=128,
        validators=[EXTERNAL_ID_VALIDATOR],
        help_text="Your own id for this customer; usage events name the customer by it.",
    )
    billing_email = serializers.EmailField()
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES, required=False)
    timezone = serializers.CharField(
        max_length=64,
        validators=[validate_time_zone],
        required=False,
        help_text="IANA time zone, e.g. Europe/Berlin.",
    )
    status = serializers.ChoiceField(choices=Customer.Status.choices, required=False)


class CustomerOutputSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    name = serializers.CharField()
    billing_email = serializers.EmailField()
    currency = serializers.CharField()
    timezone = serializers.CharField()
    status = serializers.ChoiceField(choices=Customer.Status.choices)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class CustomerSummarySerializer(serializers.Serializer):
    external_id = serializers.CharField()
    name = serializers.CharField()


# --- Contacts ---------------------------------------------------------------------------


class ContactInputSerializer(StrictInputSerializer):
    """What may change on a contact; which customer it belongs to is fixed at creation."""

    name = serializers.CharField(max_length=200)
    persona = serializers.ChoiceField(choices=Persona.choices)
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    slack_webhook_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    teams_webhook_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    webhook_url = serializers.URLField(
        required=False, allow_blank=True, max_length=500, help_text="Generic webhook endpoint."
    )


class ContactCreateInputSerializer(ContactInputSerializer):
    """A new contact: at least one channel (email or a webhook URL) is needed."""

    customer = CustomerReferenceField(
        default=KeyCustomerDefault(),
        help_text="external_id of the contact's customer. Required for operator keys; "
        "a customer key may leave it out (its own customer).",
    )


class ContactOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.CharField(source="customer.external_id")
    name = serializers.CharField()
    persona = serializers.ChoiceField(choices=Persona.choices)
    email = serializers.EmailField()
    slack_webhook_url = serializers.URLField()
    teams_webhook_url = serializers.URLField()
    webhook_url = serializers.URLField()
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=["email", "slack", "teams", "webhook"]),
        help_text="The channels this contact can be reached on.",
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


# --- The calling key --------------------------------------------------------------------

_KIND_NAMES = {ApiKey.Kind.OPERATOR: "operator", ApiKey.Kind.CUSTOMER: "customer"}


class ApiKeyOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    prefix = serializers.CharField(
        help_text="The visible start of the key; the secret is never shown."
    )
    kind = serializers.SerializerMethodField()
    environment = serializers.ChoiceField(choices=ApiKey.Environment.choices)
    scopes = serializers.ListField(child=serializers.CharField())
    customer = CustomerSummarySerializer(allow_null=True, help_text="null for an operator key.")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(serializers.ChoiceField(choices=sorted(_KIND_NAMES.values())))
    def get_kind(self, key: ApiKey) -> str:
        return _KIND_NAMES[key.kind]


# --- Errors (for the schema; accounts.api.errors builds them) ---------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. insufficient_scope.")
    message = serializers.CharField(help_text="A sentence for humans.")
    field = serializers.CharField(required=False, help_text="The input field concerned, if any.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()

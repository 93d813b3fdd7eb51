"""The customer's webhook endpoints and their signing secrets over the API.

Where the signing secret shows: like Stripe, in the answer to the request that made it
(create and rotate-secret); like Svix, it can be read again later (the receiver needs it
to verify), but only by a key that could rotate it anyway (``webhooks:write``) — a
read-only key (``alerts:read``) sees the endpoint with ``secret_hint`` only, and lists
never carry secrets.
"""

from datetime import timedelta

from django.urls import path
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts.api.schema import responses
from accounts.api.serializers import (
    CustomerReferenceField,
    KeyCustomerDefault,
    StrictInputSerializer,
)
from accounts.api.views import BaseApi
from accounts.models import Persona
from accounts.tenancy import get_scoped_or_404
from metering.api.serializers import Rfc3339Field, StrictQuerySerializer

from .. import selectors, services
from ..models import WebhookEndpoint
from ..services.endpoints import DEFAULT_OVERLAP, MAX_OVERLAP

SECRET_SCOPE = "webhooks:write"  # noqa: S105 (a scope name, not a secret)
SECRET_HINT_CHARS = 10  # "whsec_" and 4 characters: enough to tell two secrets apart


def secret_hint(secret: str | None) -> str | None:
    return None if secret is None else f"{secret[:SECRET_HINT_CHARS]}…"


# --- Shapes ---------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.STR)
class UrlTextField(serializers.CharField):
    """The URL as sent: the service checks it and names what is wrong with it by code."""


class WebhookEndpointInputSerializer(StrictInputSerializer):
    url = UrlTextField(
        max_length=2000,
        help_text="http(s) URL on the public internet (internal addresses are refused).",
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=200)
    # Checked by the service (code invalid_choice); a ChoiceField here would name a second
    # enum for the personas in the schema.
    personas = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=f"Alerts for these personas' rules ({', '.join(Persona.values)}); empty "
        "or left out: every alert.",
    )
    enabled = serializers.BooleanField(
        required=False, help_text="false pauses deliveries; true clears a disabled_reason."
    )


class WebhookEndpointCreateInputSerializer(WebhookEndpointInputSerializer):
    customer = CustomerReferenceField(
        default=KeyCustomerDefault(),
        help_text="external_id of the customer. Required for operator keys; a customer key "
        "may leave it out (its own customer).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.pop("enabled")  # a new endpoint is on


class WebhookEndpointRotateInputSerializer(StrictInputSerializer):
    overlap_hours = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=int(MAX_OVERLAP / timedelta(hours=1)),
        help_text="How long the previous secret keeps signing too (default "
        f"{int(DEFAULT_OVERLAP / timedelta(hours=1))}); 0 ends it at once, e.g. after a leak.",
    )


class WebhookEndpointListQuerySerializer(StrictQuerySerializer):
    extra = ("cursor", "limit")

    customer = CustomerReferenceField(
        required=False,
        help_text="external_id of the customer (operator keys; a customer key sees its own).",
    )


class WebhookEndpointOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    customer = serializers.CharField(source="customer.external_id")
    url = serializers.CharField()
    description = serializers.CharField()
    personas = serializers.ListField(
        child=serializers.CharField(),
        help_text=f"Alerts for these personas' rules ({', '.join(Persona.values)}); empty: "
        "every alert.",
    )
    contact = serializers.IntegerField(
        source="contact_id",
        allow_null=True,
        help_text="The contact whose webhook URL this is, when made for one.",
    )
    enabled = serializers.BooleanField()
    disabled_reason = serializers.CharField(
        help_text="Why deliveries stopped, e.g. the receiver answered 410 Gone."
    )
    disabled_at = Rfc3339Field(allow_null=True)
    created_at = Rfc3339Field()
    secret_hint = serializers.SerializerMethodField(
        help_text="The start of the current signing secret."
    )
    previous_secret_expires_at = serializers.SerializerMethodField(
        help_text="During a rotation: until when the previous secret signs too (messages "
        "carry both signatures); else null."
    )
    secret = serializers.SerializerMethodField(
        help_text="The current signing secret (whsec_…), for verifying messages per the "
        "Standard Webhooks spec. In the answers to create and rotate-secret, and on the "
        "endpoint itself for keys with webhooks:write; never in lists."
    )

    def __init__(self, *args, reveal: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not reveal:
            self.fields.pop("secret")

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_secret_hint(self, endpoint) -> str | None:
        current = selectors.endpoint_current_secret(endpoint)
        return secret_hint(current.secret if current else None)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_previous_secret_expires_at(self, endpoint):
        previous = selectors.endpoint_previous_secret(endpoint)
        return None if previous is None else Rfc3339Field().to_representation(previous.expires_at)

    @extend_schema_field(serializers.CharField(required=False))
    def get_secret(self, endpoint) -> str | None:
        current = selectors.endpoint_current_secret(endpoint)
        return current.secret if current else None


# --- Views ----------------------------------------------------------------------------


class EndpointApi(BaseApi):
    def get_endpoint(self, endpoint_id: int) -> WebhookEndpoint:
        return get_scoped_or_404(
            selectors.endpoint_list(principal=self.request.auth), self.request.auth, pk=endpoint_id
        )

    def answer(self, endpoint: WebhookEndpoint, *, reveal: bool, status_code: int = 200):
        if reveal:
            # Fresh from the database: the answer shows the secrets as they now are.
            endpoint = self.get_endpoint(endpoint.pk)
        body = WebhookEndpointOutputSerializer(endpoint, reveal=reveal).data
        response = Response(body, status=status_code)
        if reveal:
            add_never_cache_headers(response)  # a secret must not sit in any cache
        return response


class EndpointListApi(EndpointApi):
    required_scopes = {"GET": "alerts:read", "POST": "webhooks:write"}

    @extend_schema(
        summary="List webhook endpoints",
        description="The URLs that receive every alert as a signed Standard Webhook, oldest "
        "first, without their secrets. Needs `alerts:read`. A customer key sees its own; "
        "operator keys every customer's, or one with `customer`.",
        parameters=[WebhookEndpointListQuerySerializer],
        responses=responses({200: WebhookEndpointOutputSerializer(many=True)}, 400),
    )
    def get(self, request):
        query = WebhookEndpointListQuerySerializer(
            data=request.query_params, context={"principal": request.auth}
        )
        query.is_valid(raise_exception=True)
        endpoints = selectors.endpoint_list(
            principal=request.auth, customer=query.validated_data.get("customer")
        )
        return self.paginated_response(endpoints, WebhookEndpointOutputSerializer)

    @extend_schema(
        summary="Add a webhook endpoint",
        description="The answer carries the signing `secret`. A URL that is malformed or "
        "points at an internal address is a 400 naming why (`invalid_url`, "
        "`scheme_not_allowed`, `credentials_in_url`, `blocked_loopback`, `blocked_private`, "
        "`blocked_metadata`...); a URL the customer already has is a 409 `duplicate_url`. "
        "Needs `webhooks:write`. Operator keys must name the `customer`.",
        request=WebhookEndpointCreateInputSerializer,
        responses=responses({201: WebhookEndpointOutputSerializer}, 400, 409, 415),
    )
    def post(self, request):
        payload = WebhookEndpointCreateInputSerializer(
            data=request.data, context={"principal": request.auth}
        )
        payload.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(actor=request.auth, **payload.validated_data)
        return self.answer(endpoint, reveal=True, status_code=status.HTTP_201_CREATED)


class EndpointDetailApi(EndpointApi):
    required_scopes = {"GET": "alerts:read", "PATCH": "webhooks:write", "DELETE": "webhooks:write"}

    @extend_schema(
        summary="Get a webhook endpoint",
        description="Needs `alerts:read`; the signing `secret` is included for keys that "
        "also hold `webhooks:write`.",
        responses=responses({200: WebhookEndpointOutputSerializer}, 404),
    )
    def get(self, request, endpoint_id: int):
        endpoint = self.get_endpoint(endpoint_id)
        reveal = SECRET_SCOPE in request.auth.scopes
        return self.answer(endpoint, reveal=reveal)

    @extend_schema(
        summary="Change a webhook endpoint",
        description="Send only the fields to change. `enabled: true` turns a disabled "
        "endpoint back on and clears `disabled_reason`. Needs `webhooks:write`.",
        request=WebhookEndpointInputSerializer,
        responses=responses({200: WebhookEndpointOutputSerializer}, 400, 404, 409, 415),
    )
    def patch(self, request, endpoint_id: int):
        endpoint = self.get_endpoint(endpoint_id)
        payload = WebhookEndpointInputSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(
            actor=request.auth, endpoint=endpoint, **payload.validated_data
        )
        return self.answer(self.get_endpoint(endpoint.pk), reveal=False)

    @extend_schema(
        summary="Remove a webhook endpoint",
        description="Its past deliveries stay in the alert history. Needs `webhooks:write`.",
        responses=responses({204: None}, 404),
    )
    def delete(self, request, endpoint_id: int):
        services.endpoint_delete(actor=request.auth, endpoint=self.get_endpoint(endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretApi(EndpointApi):
    required_scopes = {"POST": "webhooks:write"}

    @extend_schema(
        summary="Rotate a webhook endpoint's signing secret",
        description="A new `secret` signs from now on; the previous one keeps signing too "
        "until `previous_secret_expires_at` (`overlap_hours`, default 24), so each message "
        "carries both signatures and your receiver can switch over without missing one. "
        "Rotating again within the overlap ends the older secret's grace at once. Needs "
        "`webhooks:write`.",
        request=WebhookEndpointRotateInputSerializer,
        responses=responses({200: WebhookEndpointOutputSerializer}, 400, 404, 415),
    )
    def post(self, request, endpoint_id: int):
        endpoint = self.get_endpoint(endpoint_id)
        payload = WebhookEndpointRotateInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        hours = payload.validated_data.get("overlap_hours")
        overlap = DEFAULT_OVERLAP if hours is None else timedelta(hours=hours)
        services.endpoint_rotate_secret(
            actor=request.auth, endpoint=endpoint, overlap=overlap, now=timezone.now()
        )
        return self.answer(endpoint, reveal=True)


urlpatterns = [
    path("webhook-endpoints", EndpointListApi.as_view(), name="webhook_endpoints"),
    path(
        "webhook-endpoints/<int:endpoint_id>",
        EndpointDetailApi.as_view(),
        name="webhook_endpoint",
    ),
    path(
        "webhook-endpoints/<int:endpoint_id>/rotate-secret",
        EndpointRotateSecretApi.as_view(),
        name="webhook_endpoint_rotate_secret",
    ),
]

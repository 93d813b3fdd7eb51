"""Caps and authorization: thin views over ``alerts.services`` and ``alerts.selectors``."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts.api.schema import responses
from accounts.api.views import BaseApi
from accounts.tenancy import get_scoped_or_404

from .. import selectors, services
from ..models import Cap
from .serializers import (
    AuthorizationOutputSerializer,
    AuthorizeInputSerializer,
    CapCreateInputSerializer,
    CapInputSerializer,
    CapOutputSerializer,
    ForecastOutputSerializer,
    ForecastQuerySerializer,
)


class AuthorizeApi(BaseApi):
    required_scopes = {"POST": "events:write"}

    @extend_schema(
        summary="Authorize usage against a hard cap",
        description="Before serving a customer's request, ask whether its caps allow "
        "`quantity` more units of `meter` this billing period: the meter's cap and the "
        "total spend cap (the units' cost; both reserve or neither does). When they do, "
        "the units are reserved at once (one conditional update: concurrent requests never "
        "take more than the cap between them) until usage consumes them or the reservation "
        "expires. Needs `events:write` (operator keys). Always 200: `allowed` says the answer.",
        request=AuthorizeInputSerializer,
        responses=responses({200: AuthorizationOutputSerializer}, 400, 415),
    )
    def post(self, request):
        serializer = AuthorizeInputSerializer(
            data=request.data, context={"principal": request.auth}
        )
        serializer.is_valid(raise_exception=True)
        answer = services.authorize(**serializer.validated_data)
        return Response(AuthorizationOutputSerializer(answer).data)


class CapListApi(BaseApi):
    required_scopes = {"GET": "usage:read", "POST": "caps:write"}

    class FilterSerializer(serializers.Serializer):
        customer = serializers.CharField(required=False, max_length=128)

    @extend_schema(
        summary="List hard caps",
        description="Needs `usage:read`. A customer key sees its own customer's caps.",
        parameters=[OpenApiParameter("customer", str, description="external_id to filter by.")],
        responses=responses({200: CapOutputSerializer(many=True)}, 400),
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        caps = selectors.cap_list(principal=request.auth)
        if "customer" in filters.validated_data:
            caps = caps.filter(customer__external_id=filters.validated_data["customer"])
        return self.paginated_response(caps, CapOutputSerializer)

    @extend_schema(
        summary="Set a hard cap",
        description="Caps a count or sum meter per billing period, or with no `meter` the "
        "customer's total spend on usage (money, in the plan's currency: flat fees and "
        "discounts are not usage); setting it again changes it (one cap per meter, and one "
        "total cap, per customer). Needs `caps:write`. Operator keys must name the "
        "`customer`.",
        request=CapCreateInputSerializer,
        responses=responses({201: CapOutputSerializer}, 400, 415),
    )
    def post(self, request):
        serializer = CapCreateInputSerializer(
            data=request.data, context={"principal": request.auth}
        )
        serializer.is_valid(raise_exception=True)
        cap = services.cap_set(actor=request.auth, **serializer.validated_data)
        return Response(CapOutputSerializer(cap).data, status=status.HTTP_201_CREATED)


class CapDetailApi(BaseApi):
    required_scopes = {"GET": "usage:read", "PATCH": "caps:write", "DELETE": "caps:write"}

    def get_cap(self, cap_id: int) -> Cap:
        return get_scoped_or_404(
            Cap.objects.select_related("customer", "meter"), self.request.auth, pk=cap_id
        )

    @extend_schema(
        summary="Get a hard cap",
        description="Needs `usage:read`.",
        responses=responses({200: CapOutputSerializer}, 404),
    )
    def get(self, request, cap_id: int):
        return Response(CapOutputSerializer(self.get_cap(cap_id)).data)

    @extend_schema(
        summary="Change a hard cap",
        description="A lower limit applies to every authorization that commits after the "
        "change. Needs `caps:write`.",
        request=CapInputSerializer,
        responses=responses({200: CapOutputSerializer}, 400, 404, 415),
    )
    def patch(self, request, cap_id: int):
        cap = self.get_cap(cap_id)
        serializer = CapInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = {
            "limit": cap.limit,
            "on_exceed": cap.on_exceed,
            "measure": cap.measure,
            **serializer.validated_data,
        }
        cap = services.cap_set(
            actor=request.auth, customer=cap.customer, meter=cap.meter, **changes
        )
        return Response(CapOutputSerializer(cap).data)

    @extend_schema(
        summary="Remove a hard cap",
        description="Needs `caps:write`.",
        responses=responses({204: None}, 404),
    )
    def delete(self, request, cap_id: int):
        services.cap_remove(actor=request.auth, cap=self.get_cap(cap_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ForecastApi(BaseApi):
    required_scopes = {"GET": "alerts:read"}

    @extend_schema(
        summary="Forecast a meter's usage for the current period",
        description="From the customer's daily usage: the running total's band (p10/p50/p90) "
        "to the period's end, and with `level`, the probability of reaching it within "
        "`within_days` (default 14) and the day that becomes likely. Needs `alerts:read`; a "
        "customer key forecasts its own usage, operator keys name the `customer`.",
        parameters=[ForecastQuerySerializer],
        responses=responses({200: ForecastOutputSerializer}, 400),
    )
    def get(self, request):
        query = ForecastQuerySerializer(
            data=request.query_params, context={"principal": request.auth}
        )
        query.is_valid(raise_exception=True)
        level = query.validated_data.get("level")
        found = selectors.meter_forecast(
            customer=query.validated_data["customer"],
            meter=query.validated_data["meter"],
            now=timezone.now(),
            level=None if level is None else services.parse_quantity(level, field="level"),
            within_days=query.validated_data.get("within_days", 14),
        )
        return Response(ForecastOutputSerializer(found).data)

"""The alert history: ``GET /api/v1/alerts`` and ``GET /api/v1/alerts/{alert_id}``."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from accounts.api.schema import responses
from accounts.api.views import BaseApi
from accounts.tenancy import get_scoped_or_404

from .. import selectors
from .history_serializers import (
    AlertCursorPagination,
    AlertDetailOutputSerializer,
    AlertListQuerySerializer,
    AlertOutputSerializer,
)


class AlertListApi(BaseApi):
    required_scopes = {"GET": "alerts:read"}
    pagination_class = AlertCursorPagination

    @extend_schema(
        summary="List alerts",
        description="The alert history, newest first (by `triggered_at`), each alert with a "
        "summary of its deliveries. Filter by `status`, `kind`, `meter`, and a `since`/"
        "`until` range of `triggered_at`; a bad filter is a 400 whose `field` names it. "
        "Needs `alerts:read`. A customer key sees its own alerts; operator keys see every "
        "customer's, or one with `customer`.",
        parameters=[AlertListQuerySerializer],
        responses=responses({200: AlertOutputSerializer(many=True)}, 400),
    )
    def get(self, request):
        query = AlertListQuerySerializer(
            data=request.query_params, context={"principal": request.auth}
        )
        query.is_valid(raise_exception=True)
        alerts = selectors.alert_list(principal=request.auth, **query.validated_data)
        return self.paginated_response(selectors.with_deliveries(alerts), AlertOutputSerializer)


class AlertDetailApi(BaseApi):
    required_scopes = {"GET": "alerts:read"}

    @extend_schema(
        summary="Get an alert",
        description="With its evidence and every delivery, attempt by attempt (status, HTTP "
        "status code, duration, error). Needs `alerts:read`.",
        responses=responses({200: AlertDetailOutputSerializer}, 404),
    )
    def get(self, request, alert_id: int):
        alerts = selectors.with_deliveries(
            selectors.alert_list(principal=request.auth), attempts=True
        )
        alert = get_scoped_or_404(alerts, request.auth, pk=alert_id)
        return Response(AlertDetailOutputSerializer(alert).data)


urlpatterns = [
    path("alerts", AlertListApi.as_view(), name="alerts"),
    path("alerts/<int:alert_id>", AlertDetailApi.as_view(), name="alert"),
]

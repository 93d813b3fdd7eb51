"""Alert rules and the operator's cap defaults per plan: thin views over the services.

Customer keys see and change their own customer's rules only (another customer's rule, or
a plan default, is a 404). Operator keys name the customer by ``external_id``, or a
``plan`` for a default every current subscriber of the plan gets a copy of.
"""

from django.http import Http404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts.api.permissions import OperatorKeyRequired, OperatorOnlyMethods
from accounts.api.schema import responses
from accounts.api.views import BaseApi
from accounts.tenancy import get_scoped_or_404, scoped

from .. import services
from ..models import AlertRule, PlanCapDefault
from .rule_serializers import (
    PlanCapDefaultInputSerializer,
    PlanCapDefaultListQuerySerializer,
    PlanCapDefaultOutputSerializer,
    RuleCreateInputSerializer,
    RuleInputSerializer,
    RuleListQuerySerializer,
    RuleOutputSerializer,
)


def _rules(key):
    return scoped(AlertRule.objects.select_related("customer", "plan", "meter"), key)


class RuleListApi(BaseApi):
    required_scopes = {"GET": "usage:read", "POST": "caps:write"}

    @extend_schema(
        summary="List alert rules",
        description="Needs `usage:read`. A customer key sees its own customer's rules; "
        "operator keys see every customer's and the plan defaults.",
        parameters=[RuleListQuerySerializer],
        responses=responses({200: RuleOutputSerializer(many=True)}, 400),
    )
    def get(self, request):
        query = RuleListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rules = _rules(request.auth)
        if "customer" in query.validated_data:
            rules = rules.filter(customer__external_id=query.validated_data["customer"])
        if "plan" in query.validated_data:
            rules = rules.filter(plan__code=query.validated_data["plan"])
        if "kind" in query.validated_data:
            rules = rules.filter(kind=query.validated_data["kind"])
        return self.paginated_response(rules, RuleOutputSerializer)

    @extend_schema(
        summary="Create an alert rule",
        description="Threshold, velocity, anomaly or predictive, on a meter or (money only) "
        "on total spend; fields a kind does not read are stored empty and defaults fill the "
        "ones it does. A soft level above the hard cap, a percentage out of range or a "
        "meter that does not add up is a 400 naming the field. Needs `caps:write`. "
        "Operator keys name the `customer`, or a `plan` for a plan default.",
        request=RuleCreateInputSerializer,
        responses=responses({201: RuleOutputSerializer}, 400, 415),
    )
    def post(self, request):
        payload = RuleCreateInputSerializer(data=request.data, context={"principal": request.auth})
        payload.is_valid(raise_exception=True)
        fields = dict(payload.validated_data)
        owner = {"customer": fields.pop("customer", None), "plan": fields.pop("plan", None)}
        key = request.auth
        if owner["plan"] is not None and not key.is_operator:
            raise OperatorKeyRequired("Only an operator key sets plan defaults.")
        if not key.is_operator:
            owner["customer"] = key.customer
        elif owner["customer"] is None and owner["plan"] is None:
            raise serializers.ValidationError(
                {
                    "customer": [
                        "Name the customer by its external_id, or a plan by its code for a "
                        "plan default: an operator key is not bound to a customer."
                    ]
                },
                code="required",
            )
        rule = services.rule_create(actor=key, **owner, **fields)
        return Response(RuleOutputSerializer(rule).data, status=status.HTTP_201_CREATED)


class RuleDetailApi(BaseApi):
    required_scopes = {"GET": "usage:read", "PATCH": "caps:write", "DELETE": "caps:write"}

    def get_rule(self, rule_id: int) -> AlertRule:
        return get_scoped_or_404(
            AlertRule.objects.select_related("customer", "plan", "meter"),
            self.request.auth,
            pk=rule_id,
        )

    @extend_schema(
        summary="Get an alert rule",
        description="Needs `usage:read`.",
        responses=responses({200: RuleOutputSerializer}, 404),
    )
    def get(self, request, rule_id: int):
        return Response(RuleOutputSerializer(self.get_rule(rule_id)).data)

    @extend_schema(
        summary="Change an alert rule",
        description="Send only the fields to change; the rule is checked whole again. "
        "Changing a copy of a plan default makes it the customer's own (the plan's later "
        "changes no longer reach it). Needs `caps:write`.",
        request=RuleInputSerializer,
        responses=responses({200: RuleOutputSerializer}, 400, 404, 415),
    )
    def patch(self, request, rule_id: int):
        rule = self.get_rule(rule_id)
        payload = RuleInputSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        rule = services.rule_update(actor=request.auth, rule=rule, **payload.validated_data)
        return Response(RuleOutputSerializer(rule).data)

    @extend_schema(
        summary="Remove an alert rule",
        description="Its alerts stay as history. Removing a plan default removes the copies "
        "customers have not changed. Needs `caps:write`.",
        responses=responses({204: None}, 404),
    )
    def delete(self, request, rule_id: int):
        services.rule_delete(actor=request.auth, rule=self.get_rule(rule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Cap defaults per plan --------------------------------------------------------------


class PlanCapDefaultApi(BaseApi):
    permission_classes = [*BaseApi.permission_classes, OperatorOnlyMethods]
    operator_methods = frozenset({"POST", "DELETE"})


def _cap_defaults():
    return PlanCapDefault.objects.select_related("plan", "meter")


class PlanCapDefaultListApi(PlanCapDefaultApi):
    required_scopes = {"GET": "usage:read", "POST": "plans:write"}

    @extend_schema(
        summary="List plan cap defaults",
        description="The hard cap each plan gives its subscribers that have not set their "
        "own: part of the vendor's catalog, like the plans (the same for every key). Needs "
        "`usage:read`.",
        parameters=[PlanCapDefaultListQuerySerializer],
        responses=responses({200: PlanCapDefaultOutputSerializer(many=True)}, 400),
    )
    def get(self, request):
        query = PlanCapDefaultListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        defaults = _cap_defaults()
        if "plan" in query.validated_data:
            defaults = defaults.filter(plan__code=query.validated_data["plan"])
        return self.paginated_response(defaults, PlanCapDefaultOutputSerializer)

    @extend_schema(
        summary="Set a plan cap default",
        description="Caps a count or sum meter for every current subscriber of the plan "
        "without a cap of its own on it (setting it again changes it, and the caps copied "
        "from it). A customer's own change to its copy keeps its own. Needs `plans:write` "
        "(operator keys only).",
        request=PlanCapDefaultInputSerializer,
        responses=responses({201: PlanCapDefaultOutputSerializer}, 400, 415),
    )
    def post(self, request):
        payload = PlanCapDefaultInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        default = services.plan_cap_default_set(actor=request.auth, **payload.validated_data)
        return Response(
            PlanCapDefaultOutputSerializer(default).data, status=status.HTTP_201_CREATED
        )


class PlanCapDefaultDetailApi(PlanCapDefaultApi):
    required_scopes = {"DELETE": "plans:write"}

    @extend_schema(
        summary="Remove a plan cap default",
        description="Removes the caps still copied from it too. Needs `plans:write` "
        "(operator keys only).",
        responses=responses({204: None}, 404),
    )
    def delete(self, request, default_id: int):
        default = _cap_defaults().filter(pk=default_id).first()
        if default is None:
            raise Http404("No plan cap default has this id.")
        services.plan_cap_default_remove(actor=request.auth, default=default)
        return Response(status=status.HTTP_204_NO_CONTENT)


urlpatterns = [
    path("alert-rules", RuleListApi.as_view(), name="alert_rules"),
    path("alert-rules/<int:rule_id>", RuleDetailApi.as_view(), name="alert_rule"),
    path("plan-cap-defaults", PlanCapDefaultListApi.as_view(), name="plan_cap_defaults"),
    path(
        "plan-cap-defaults/<int:default_id>",
        PlanCapDefaultDetailApi.as_view(),
        name="plan_cap_default",
    ),
]

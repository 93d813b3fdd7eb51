"""The invoicing REST API: plans, subscriptions, invoices, credit notes, the upcoming invoice.

Thin like the rest of API v1: check the key (``required_scopes``; operator-only methods),
parse input, call ``invoicing.services`` / ``invoicing.selectors``, answer. Tenant data is
looked up through ``accounts.tenancy`` (the selectors scope by the key), so another tenant's
object is a 404 — looked up *before* an operator-only write is refused, so that a customer
key learns nothing about another tenant's objects whatever its scopes. Plans are the
vendor's catalog, the same for every customer.
"""

from django.db.models import IntegerField, OuterRef, Prefetch, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from accounts.api.permissions import OperatorOnlyMethods, OperatorOnlyObjectMethods
from accounts.api.schema import responses
from accounts.api.views import BaseApi
from accounts.errors import InvalidInput, NotFound
from accounts.models import Customer
from accounts.tenancy import get_scoped_or_404, scoped
from invoicing import selectors, services
from invoicing.models import (
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    Plan,
    PlanVersion,
    Subscription,
    SubscriptionPhase,
)

from .serializers import (
    CreditNoteInputSerializer,
    CreditNoteListQuerySerializer,
    CreditNoteOutputSerializer,
    InvoiceDetailOutputSerializer,
    InvoiceFinalizeInputSerializer,
    InvoiceListQuerySerializer,
    InvoiceOutputSerializer,
    InvoiceVoidInputSerializer,
    PlanInputSerializer,
    PlanListQuerySerializer,
    PlanOutputSerializer,
    PlanVersionInputSerializer,
    PlanVersionOutputSerializer,
    SubscriptionCancelInputSerializer,
    SubscriptionChangePlanInputSerializer,
    SubscriptionInputSerializer,
    SubscriptionListQuerySerializer,
    SubscriptionOutputSerializer,
    UpcomingInvoiceOutputSerializer,
)


class InvoicingApi(BaseApi):
    permission_classes = [
        *BaseApi.permission_classes,
        OperatorOnlyMethods,
        OperatorOnlyObjectMethods,
    ]
    # Refused before anything is looked up (collections, and the vendor-wide catalog).
    operator_methods: frozenset[str] = frozenset()
    # Refused once the tenant's object is found (see OperatorOnlyObjectMethods).
    operator_object_methods: frozenset[str] = frozenset()

    def customer_or_404(self, external_id: str) -> Customer:
        """The customer with ``external_id``, if the key may see it (else 404)."""
        return get_scoped_or_404(Customer.objects.all(), self.request.auth, external_id=external_id)

    def customer_for(self, external_id: str | None) -> Customer | None:
        """The customer a list is filtered to: named (and visible to the key, else 404),
        or none (a customer key's lists are its own anyway)."""
        return None if external_id is None else self.customer_or_404(external_id)

    def found(self, obj):
        """``obj`` after the object-level checks for this request's method."""
        self.check_object_permissions(self.request, obj)
        return obj

    # --- The catalog, as subscriptions name it --------------------------------------------

    def plan_version_for(self, code: str, version: int | None) -> PlanVersion:
        """A version of an offered plan, for a request body (unknown: 400)."""
        plan = selectors.plan_list().filter(code=code).first()
        if plan is None:
            raise InvalidInput(
                f"No plan on offer has code {code[:64]!r}.", code="unknown_plan", field="plan"
            )
        versions = PlanVersion.objects.filter(plan=plan).select_related("plan")
        if version is None:
            found = versions.order_by("-version").first()
            if found is None:
                raise InvalidInput(
                    f"Plan {plan.code} has no published version yet.",
                    code="no_plan_version",
                    field="plan",
                )
            return found
        found = versions.filter(version=version).first()
        if found is None:
            raise InvalidInput(
                f"Plan {plan.code} has no version {version}.",
                code="unknown_version",
                field="version",
            )
        return found


# --- Plans ------------------------------------------------------------------------------


def _visible_plans(key) -> QuerySet[Plan]:
    # Retired plans are the operator's business; customers see the plans on offer.
    return selectors.plan_list(include_inactive=key.is_operator)


class PlanListApi(InvoicingApi):
    required_scopes = {"GET": "invoices:read", "POST": "plans:write"}
    operator_methods = frozenset({"POST"})

    @extend_schema(
        summary="List plans",
        description="The vendor's plans with every version and its prices, newest version "
        "first (the same for every customer). Needs `invoices:read`.",
        parameters=[PlanListQuerySerializer],
        responses=responses({200: PlanOutputSerializer(many=True)}, 400),
    )
    def get(self, request):
        query = PlanListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        plans = _visible_plans(request.auth)
        if not query.validated_data["include_inactive"]:
            plans = plans.filter(is_active=True)
        return self.paginated_response(plans, PlanOutputSerializer)

    @extend_schema(
        summary="Create a plan",
        description="A plan without prices: publish its first version with "
        "`POST /plans/{code}/versions`. A `code` in use answers 409 `plan_exists`. Needs "
        "`plans:write` (operator keys only).",
        request=PlanInputSerializer,
        responses=responses({201: PlanOutputSerializer}, 400, 409, 415),
    )
    def post(self, request):
        payload = PlanInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        plan = services.plan_create(actor=request.auth, **payload.validated_data)
        plan = _visible_plans(request.auth).get(pk=plan.pk)
        return Response(PlanOutputSerializer(plan).data, status=status.HTTP_201_CREATED)


class PlanDetailApi(InvoicingApi):
    required_scopes = {"GET": "invoices:read"}

    @extend_schema(
        summary="Get a plan",
        description="With every version and its prices, newest first. Needs `invoices:read`.",
        responses=responses({200: PlanOutputSerializer}, 404),
    )
    def get(self, request, code: str):
        return Response(PlanOutputSerializer(_plan_or_404(request.auth, code)).data)


def _plan_or_404(key, code: str) -> Plan:
    plan = _visible_plans(key).filter(code=code).first()
    if plan is None:
        raise Http404(f"No plan has code {code!r}.")
    return plan


class PlanVersionListApi(InvoicingApi):
    required_scopes = {"GET": "invoices:read", "POST": "plans:write"}
    operator_methods = frozenset({"POST"})

    @extend_schema(
        summary="List a plan's versions",
        description="Newest first, each with its prices. Needs `invoices:read`.",
        responses=responses({200: PlanVersionOutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request, code: str):
        plan = _plan_or_404(request.auth, code)
        versions = plan.versions.prefetch_related("components__meter")
        return self.paginated_response(versions, PlanVersionOutputSerializer)

    @extend_schema(
        summary="Publish a plan version",
        description="A price change is a new version with the complete set of prices; "
        "versions never change once published (no PUT or PATCH), and subscriptions stay on "
        "theirs until moved (`POST /subscriptions/{id}/change-plan`). Prices are decimal "
        'strings (`"0.002"`); a JSON number with a fraction is refused. Needs `plans:write` '
        "(operator keys only).",
        request=PlanVersionInputSerializer,
        responses=responses({201: PlanVersionOutputSerializer}, 400, 404, 415),
    )
    def post(self, request, code: str):
        plan = _plan_or_404(request.auth, code)
        payload = PlanVersionInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        version = services.plan_version_create(
            actor=request.auth, plan=plan, **payload.validated_data
        )
        version = PlanVersion.objects.prefetch_related("components__meter").get(pk=version.pk)
        return Response(PlanVersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


# --- Subscriptions ----------------------------------------------------------------------


def _subscriptions(key) -> QuerySet[Subscription]:
    return scoped(
        Subscription.objects.select_related("customer", "plan_version__plan").prefetch_related(
            Prefetch(
                "phases",
                queryset=SubscriptionPhase.objects.select_related("plan_version__plan").order_by(
                    "starts_at"
                ),
            )
        ),
        key,
    )


class SubscriptionApi(InvoicingApi):
    def get_subscription(self, subscription_id: int) -> Subscription:
        key = self.request.auth
        return self.found(get_scoped_or_404(_subscriptions(key), key, pk=subscription_id))

    def answer(self, subscription: Subscription) -> Response:
        fresh = _subscriptions(self.request.auth).get(pk=subscription.pk)
        return Response(SubscriptionOutputSerializer(fresh).data)


class SubscriptionListApi(SubscriptionApi):
    required_scopes = {"GET": "invoices:read", "POST": "subscriptions:write"}
    operator_methods = frozenset({"POST"})

    @extend_schema(
        summary="List subscriptions",
        description="Newest first, ended ones too. Operator keys see every customer's (filter "
        "with `customer`); a customer key sees its own. Needs `invoices:read`.",
        parameters=[SubscriptionListQuerySerializer],
        responses=responses({200: SubscriptionOutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request):
        query = SubscriptionListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        subscriptions = _subscriptions(request.auth)
        customer = self.customer_for(filters.get("customer"))
        if customer is not None:
            subscriptions = subscriptions.filter(customer=customer)
        if "status" in filters:
            subscriptions = subscriptions.filter(status=filters["status"])
        return self.paginated_response(subscriptions, SubscriptionOutputSerializer)

    @extend_schema(
        summary="Subscribe a customer to a plan",
        description="On the plan's latest version unless `version` says otherwise. A "
        "customer has one active subscription at a time (409 `already_subscribed`); the "
        "plan must bill in the customer's currency (400 `currency_mismatch`). Needs "
        "`subscriptions:write` (operator keys only).",
        request=SubscriptionInputSerializer,
        responses=responses({201: SubscriptionOutputSerializer}, 400, 409, 415),
    )
    def post(self, request):
        payload = SubscriptionInputSerializer(
            data=request.data, context={"principal": request.auth}
        )
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        subscription = services.subscription_create(
            actor=request.auth,
            customer=data["customer"],
            plan_version=self.plan_version_for(data["plan"], data.get("version")),
            started_at=data.get("started_at"),
            billing_anchor=data.get("billing_anchor"),
        )
        response = self.answer(subscription)
        response.status_code = status.HTTP_201_CREATED
        return response


class SubscriptionDetailApi(SubscriptionApi):
    required_scopes = {"GET": "invoices:read"}

    @extend_schema(
        summary="Get a subscription",
        description="With its phases (one per plan version it was on). Needs `invoices:read`.",
        responses=responses({200: SubscriptionOutputSerializer}, 404),
    )
    def get(self, request, subscription_id: int):
        return Response(SubscriptionOutputSerializer(self.get_subscription(subscription_id)).data)


class SubscriptionChangePlanApi(SubscriptionApi):
    required_scopes = {"POST": "subscriptions:write"}
    operator_object_methods = frozenset({"POST"})

    @extend_schema(
        summary="Move a subscription to another plan or version",
        description="From `at` (default now): the period it falls in is prorated by the "
        "second and its usage split at the change. The billing interval and currency stay "
        "(400 `interval_mismatch` / `currency_mismatch`); the same version is 409 "
        "`same_plan`; an ended subscription 409 `subscription_ended`. Needs "
        "`subscriptions:write` (operator keys only).",
        request=SubscriptionChangePlanInputSerializer,
        responses=responses({200: SubscriptionOutputSerializer}, 400, 404, 409, 415),
    )
    def post(self, request, subscription_id: int):
        subscription = self.get_subscription(subscription_id)
        payload = SubscriptionChangePlanInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        subscription = services.subscription_change_plan(
            actor=request.auth,
            subscription=subscription,
            plan_version=self.plan_version_for(data["plan"], data.get("version")),
            at=data.get("at"),
        )
        return self.answer(subscription)


class SubscriptionCancelApi(SubscriptionApi):
    required_scopes = {"POST": "subscriptions:write"}
    operator_object_methods = frozenset({"POST"})

    @extend_schema(
        summary="Cancel a subscription",
        description="Now (the current period is billed up to now) or at the end of the "
        "current period. An ended subscription is 409 `subscription_ended`. Needs "
        "`subscriptions:write` (operator keys only).",
        request=SubscriptionCancelInputSerializer,
        responses=responses({200: SubscriptionOutputSerializer}, 400, 404, 409, 415),
    )
    def post(self, request, subscription_id: int):
        subscription = self.get_subscription(subscription_id)
        payload = SubscriptionCancelInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        subscription = services.subscription_cancel(
            actor=request.auth,
            subscription=subscription,
            at_period_end=payload.validated_data["at_period_end"],
        )
        return self.answer(subscription)


# --- Invoices ---------------------------------------------------------------------------


def _credited_minor(**match) -> Coalesce:
    """Total credited so far, as a subquery (no GROUP BY over the outer row)."""
    total = (
        CreditNoteLine.objects.filter(**match)
        .order_by()
        .values(*match)
        .annotate(total=Sum("amount_minor"))
        .values("total")
    )
    return Coalesce(Subquery(total, output_field=IntegerField()), Value(0))


def _with_detail(invoices: QuerySet[Invoice], *, checks: bool) -> QuerySet[Invoice]:
    lines = (
        InvoiceLine.objects.select_related("meter")
        .annotate(credited_minor=_credited_minor(invoice_line=OuterRef("pk")))
        .order_by("position")
    )
    invoices = invoices.annotate(
        credited_minor=_credited_minor(credit_note__invoice=OuterRef("pk"))
    ).prefetch_related(Prefetch("lines", queryset=lines, to_attr="detail_lines"))
    return invoices.prefetch_related("usage_checks__meter") if checks else invoices


class InvoiceApi(InvoicingApi):
    def get_invoice(self, invoice_id: int, *, detail: bool = False) -> Invoice:
        """An invoice the key may see (customer keys: never a draft or a held one)."""
        invoices = selectors.invoice_list(principal=self.request.auth)
        if detail:
            invoices = _with_detail(invoices, checks=self.request.auth.is_operator)
        return self.found(get_scoped_or_404(invoices, self.request.auth, pk=invoice_id))

    def answer(self, invoice_id: int) -> Response:
        """The invoice in full, as the key may see it."""
        invoice = self.get_invoice(invoice_id, detail=True)
        serializer = InvoiceDetailOutputSerializer(
            invoice, context={"operator": self.request.auth.is_operator}
        )
        return Response(serializer.data)


class InvoiceListApi(InvoiceApi):
    required_scopes = {"GET": "invoices:read"}

    @extend_schema(
        summary="List invoices",
        description="Newest first, without their lines (`GET /invoices/{id}` has them). "
        "Operator keys see every customer's, drafts and held ones too; a customer key sees "
        "its own finalized invoices. Needs `invoices:read`.",
        parameters=[InvoiceListQuerySerializer],
        responses=responses({200: InvoiceOutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request):
        query = InvoiceListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        invoices = selectors.invoice_list(
            principal=request.auth, customer=self.customer_for(filters.get("customer"))
        )
        if "status" in filters:
            invoices = invoices.filter(status=filters["status"])
        if "start" in filters:
            invoices = invoices.filter(period_start__gte=filters["start"])
        if "end" in filters:
            invoices = invoices.filter(period_start__lt=filters["end"])
        return self.paginated_response(invoices, InvoiceOutputSerializer)


class InvoiceDetailApi(InvoiceApi):
    required_scopes = {"GET": "invoices:read"}

    @extend_schema(
        summary="Get an invoice",
        description="With its lines (quantities and prices as decimal strings, amounts in "
        "minor units, tier by tier for tiered usage) and, for operator keys, the "
        "reconciliation checks. Drafts and held invoices are 404 for customer keys. Needs "
        "`invoices:read`.",
        responses=responses({200: InvoiceDetailOutputSerializer}, 404),
    )
    def get(self, request, invoice_id: int):
        return self.answer(invoice_id)


class InvoiceFinalizeApi(InvoiceApi):
    required_scopes = {"POST": "invoices:write"}
    operator_object_methods = frozenset({"POST"})

    @extend_schema(
        summary="Finalize a draft invoice",
        description="Re-rates it (events that arrived meanwhile count), numbers it and "
        "makes it immutable; usage of its period that arrives later is billed as an "
        "adjustment on a later invoice. 409: `invoice_held` (the reconciliation gate holds "
        "it), `invoice_finalized`, `earlier_invoice_open`. Needs `invoices:write` "
        "(operator keys only).",
        request=InvoiceFinalizeInputSerializer,
        responses=responses({200: InvoiceDetailOutputSerializer}, 400, 404, 409, 415),
    )
    def post(self, request, invoice_id: int):
        invoice = self.get_invoice(invoice_id)
        InvoiceFinalizeInputSerializer(data=request.data).is_valid(raise_exception=True)
        services.invoice_finalize(actor=request.auth, invoice=invoice)
        return self.answer(invoice_id)


class InvoiceVoidApi(InvoiceApi):
    required_scopes = {"POST": "invoices:write"}
    operator_object_methods = frozenset({"POST"})

    @extend_schema(
        summary="Void an unpaid invoice",
        description="What is left to credit on it is credited by a matching credit note. "
        "Only a finalized invoice never paid can be voided (409 `invoice_not_voidable`). "
        "Needs `invoices:write` (operator keys only).",
        request=InvoiceVoidInputSerializer,
        responses=responses({200: InvoiceDetailOutputSerializer}, 400, 404, 409, 415),
    )
    def post(self, request, invoice_id: int):
        invoice = self.get_invoice(invoice_id)
        payload = InvoiceVoidInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.invoice_void(
            actor=request.auth, invoice=invoice, reason=payload.validated_data["reason"]
        )
        return self.answer(invoice_id)


# --- Credit notes -----------------------------------------------------------------------


def _credit_notes(key, invoice: Invoice | None = None) -> QuerySet[CreditNote]:
    return (
        selectors.credit_note_list(principal=key, invoice=invoice)
        .select_related("customer")
        .prefetch_related(Prefetch("lines", queryset=CreditNoteLine.objects.order_by("id")))
    )


class InvoiceCreditNoteListApi(InvoiceApi):
    required_scopes = {"GET": "invoices:read", "POST": "invoices:write"}
    operator_object_methods = frozenset({"POST"})

    @extend_schema(
        summary="List an invoice's credit notes",
        description="Newest first. Needs `invoices:read`.",
        responses=responses({200: CreditNoteOutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request, invoice_id: int):
        invoice = self.get_invoice(invoice_id)
        return self.paginated_response(
            _credit_notes(request.auth, invoice), CreditNoteOutputSerializer
        )

    @extend_schema(
        summary="Credit an invoice",
        description="Given amounts of given lines, or (no `lines`) everything still "
        "creditable. A line is never credited beyond what it charged (400 "
        "`credit_exceeds_line`), nor the invoice beyond its total (400 "
        "`credit_exceeds_invoice`), counting earlier credit notes. Only a finalized invoice "
        "can be credited (409 `invoice_not_creditable`); 409 `nothing_to_credit` once all "
        "is credited. Needs `invoices:write` (operator keys only).",
        request=CreditNoteInputSerializer,
        responses=responses({201: CreditNoteOutputSerializer}, 400, 404, 409, 415),
    )
    def post(self, request, invoice_id: int):
        invoice = self.get_invoice(invoice_id)
        payload = CreditNoteInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        lines = data.get("lines")
        note = services.credit_note_issue(
            actor=request.auth,
            invoice=invoice,
            reason=data["reason"],
            memo=data["memo"],
            lines=None
            if lines is None
            else [services.CreditRequest(line["line"], line["amount_minor"]) for line in lines],
        )
        note = _credit_notes(request.auth).get(pk=note.pk)
        return Response(CreditNoteOutputSerializer(note).data, status=status.HTTP_201_CREATED)


class CreditNoteListApi(InvoicingApi):
    required_scopes = {"GET": "invoices:read"}

    @extend_schema(
        summary="List credit notes",
        description="Newest first. Operator keys see every customer's (filter with "
        "`customer`); a customer key sees its own. Needs `invoices:read`.",
        parameters=[CreditNoteListQuerySerializer],
        responses=responses({200: CreditNoteOutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request):
        query = CreditNoteListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        notes = _credit_notes(request.auth)
        customer = self.customer_for(query.validated_data.get("customer"))
        if customer is not None:
            notes = notes.filter(customer=customer)
        return self.paginated_response(notes, CreditNoteOutputSerializer)


# --- Upcoming invoice -------------------------------------------------------------------


class UpcomingInvoiceApi(InvoicingApi):
    required_scopes = {"GET": "invoices:read"}

    @extend_schema(
        summary="The customer's upcoming invoice",
        description="The current period rated as if it closed now, from the real-time "
        "usage, and `projected_total_minor`: usage so far extended in a straight line to "
        "the period's end. 404 `no_subscription` when nothing is billing. Needs "
        "`invoices:read`; a customer key sees its own customer only.",
        responses=responses({200: UpcomingInvoiceOutputSerializer}, 404),
    )
    def get(self, request, external_id: str):
        customer = self.customer_or_404(external_id)
        upcoming = selectors.upcoming_invoice(customer=customer)
        if upcoming is None:
            raise NotFound(
                f"Customer {customer.external_id} has no subscription billing now.",
                code="no_subscription",
            )
        return Response(UpcomingInvoiceOutputSerializer(upcoming).data)

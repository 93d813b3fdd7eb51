"""The metering REST API: events in, events and usage out, meter definitions.

Thin like the rest of API v1: check the key (``required_scopes``; operator-only methods;
the per-key rate limit), parse input, call ``metering.ingest`` / ``metering.services`` /
``metering.selectors``, answer. Customers are looked up through ``accounts.tenancy`` so
another tenant's customer is a 404; meters are vendor-wide definitions, not tenant data.
"""

from datetime import timedelta

from django.db.models import BooleanField, F, Func, JSONField, QuerySet, Value
from django.db.models.fields.json import KeyTextTransform
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts.api.permissions import OperatorOnlyMethods
from accounts.api.schema import responses
from accounts.api.views import BaseApi
from accounts.errors import InvalidInput
from accounts.models import Customer
from accounts.tenancy import get_scoped_or_404
from metering import selectors, services
from metering.ingest import events_ingest
from metering.models import Meter
from metering.models.meters import PROPERTY_PATTERN

from .pagination import EventCursorPagination
from .parsers import EventBatchParser, OrjsonRenderer
from .serializers import (
    EventBatchInputSerializer,
    EventBatchOutputSerializer,
    EventListQuerySerializer,
    EventOutputSerializer,
    EventVoidInputSerializer,
    EventVoidOutputSerializer,
    MeterInputSerializer,
    MeterListQuerySerializer,
    MeterOutputSerializer,
    UsageOutputSerializer,
    UsageQuerySerializer,
    prefixed_params,
)

MAX_USAGE_RANGE = timedelta(days=400)
MAX_HOURLY_RANGE = timedelta(days=31)


class MeteringApi(BaseApi):
    permission_classes = [*BaseApi.permission_classes, OperatorOnlyMethods]
    operator_methods: frozenset[str] = frozenset()

    def customer_for(self, external_id: str | None, *, required: bool) -> Customer | None:
        """The customer a request is about: named (and visible to the key, else 404), or
        a customer key's own."""
        key = self.request.auth
        if external_id is not None:
            return get_scoped_or_404(Customer.objects.all(), key, external_id=external_id)
        if not key.is_operator:
            return key.customer
        if required:
            message = "Name the customer by its external_id: an operator key is not bound to one."
            raise serializers.ValidationError({"customer": [message]}, code="required")
        return None

    def meter_for(self, code: str) -> Meter:
        """A meter the key may see, for a query parameter (unknown: 400 ``unknown_meter``)."""
        meter = self.visible_meters().filter(code=code).first()
        if meter is None:
            raise InvalidInput(
                f"No meter has code {code[:128]!r}.", code="unknown_meter", field="meter"
            )
        return meter

    def visible_meters(self) -> QuerySet[Meter]:
        # Retired meters are the operator's business; customers see the live definitions.
        return selectors.meter_list(include_inactive=self.request.auth.is_operator)


# --- Events -----------------------------------------------------------------------------


def _batch(data) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and set(data) == {"events"} and isinstance(data["events"], list):
        return data["events"]
    raise InvalidInput(
        'Send a JSON array of events, or an object {"events": [...]}.', code="invalid_batch"
    )


class EventsApi(MeteringApi):
    required_scopes = {"GET": "usage:read", "POST": "events:write"}
    operator_methods = frozenset({"POST"})
    throttle_scopes = {"POST": "events"}
    parser_classes = [EventBatchParser]
    renderer_classes = [OrjsonRenderer]
    pagination_class = EventCursorPagination

    @extend_schema(
        summary="Send usage events",
        description='A batch of up to 10,000 events: a JSON array, or `{"events": [...]}`. '
        "Each event is answered on its own, in order: `accepted`, `duplicate` (its "
        "idempotency key was seen before, ever) or `rejected` with a `code`; valid events "
        "are stored even when others in the batch are rejected. Needs `events:write` "
        "(operator keys only).",
        request=EventBatchInputSerializer,
        responses=responses({200: EventBatchOutputSerializer}, 400, 413, 415),
    )
    def post(self, request):
        result = events_ingest(events=_batch(request.data))
        return Response(
            {
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "rejected": result.rejected,
                "results": [r.as_dict() for r in result.results],
            }
        )

    @extend_schema(
        summary="List raw events",
        description="Newest first, paged by an opaque cursor. Filter by meter (its event "
        "name and property filters) or event_name, a time range, and properties: "
        "`property.<name>=value` (repeat a parameter for any of several values). Needs "
        "`usage:read`; a customer key sees its own events.",
        parameters=[EventListQuerySerializer],
        responses=responses({200: EventOutputSerializer(many=True)}, 400, 404),
    )
    def get(self, request):
        query = EventListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        properties = prefixed_params(request.query_params, "property.", PROPERTY_PATTERN[1:-1])
        customer = self.customer_for(filters.get("customer"), required=False)

        events = selectors.event_list(principal=request.auth, customer=customer)
        if "meter" in filters:
            meter = self.meter_for(filters["meter"])
            events = events.filter(event_name=meter.code)
            if meter.filters:
                # The database's own definition of "this meter counts the event".
                events = events.filter(
                    Func(
                        F("properties"),
                        Value(meter.filters, output_field=JSONField()),
                        function="metering_matches",
                        output_field=BooleanField(),
                    )
                )
        if "event_name" in filters:
            events = events.filter(event_name=filters["event_name"])
        if "start" in filters:
            events = events.filter(timestamp__gte=filters["start"])
        if "end" in filters:
            events = events.filter(timestamp__lt=filters["end"])
        for i, (name, values) in enumerate(sorted(properties.items())):
            events = events.alias(**{f"property_{i}": KeyTextTransform(name, "properties")})
            events = events.filter(**{f"property_{i}__in": values})
        return self.paginated_response(events.select_related("customer"), EventOutputSerializer)


class EventVoidApi(MeteringApi):
    required_scopes = {"POST": "events:write"}
    operator_methods = frozenset({"POST"})

    @extend_schema(
        summary="Void events",
        description="Takes the events out of usage at once; the raw rows stay, marked void, "
        "and the void is audited with its reason. Per key: `voided`, `already_void`, "
        "`not_found`, or `period_closed` (invoiced usage is corrected by a credit note). "
        "Needs `events:write` (operator keys only).",
        request=EventVoidInputSerializer,
        responses=responses({200: EventVoidOutputSerializer}, 400, 415),
    )
    def post(self, request):
        payload = EventVoidInputSerializer(data=request.data, context={"principal": request.auth})
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        outcome = services.events_void(
            actor=request.auth,
            customer=data["customer"],
            idempotency_keys=data["idempotency_keys"],
            reason=data["reason"],
        )
        keys = dict.fromkeys(data["idempotency_keys"])
        results = [{"idempotency_key": k, "status": outcome[k]} for k in keys]
        voided = sum(1 for r in results if r["status"] == services.VoidStatus.VOIDED)
        return Response(EventVoidOutputSerializer({"voided": voided, "results": results}).data)


# --- Meters -----------------------------------------------------------------------------


class MeterListApi(MeteringApi):
    required_scopes = {"GET": "usage:read", "POST": "meters:write"}
    operator_methods = frozenset({"POST"})

    @extend_schema(
        summary="List meters",
        description="The vendor's meter definitions (the same for every customer). Needs "
        "`usage:read`.",
        parameters=[MeterListQuerySerializer],
        responses=responses({200: MeterOutputSerializer(many=True)}, 400),
    )
    def get(self, request):
        query = MeterListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        meters = self.visible_meters()
        if not query.validated_data["include_inactive"]:
            meters = meters.filter(is_active=True)
        return self.paginated_response(meters, MeterOutputSerializer)

    @extend_schema(
        summary="Define a meter",
        description="Events that already arrived for its code are counted by a rebuild "
        "(`rebuild_status` queued → running → idle). Needs `meters:write` (operator keys).",
        request=MeterInputSerializer,
        responses=responses({201: MeterOutputSerializer}, 400, 409, 415),
    )
    def post(self, request):
        payload = MeterInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        meter = services.meter_create(actor=request.auth, **payload.validated_data)
        return Response(MeterOutputSerializer(meter).data, status=status.HTTP_201_CREATED)


class MeterDetailApi(MeteringApi):
    required_scopes = {"GET": "usage:read", "PATCH": "meters:write"}
    operator_methods = frozenset({"PATCH"})

    def get_meter(self, code: str) -> Meter:
        meter = self.visible_meters().filter(code=code).first()
        if meter is None:
            raise Http404(f"No meter has code {code!r}.")
        return meter

    @extend_schema(
        summary="Get a meter",
        description="Needs `usage:read`.",
        responses=responses({200: MeterOutputSerializer}, 404),
    )
    def get(self, request, code: str):
        return Response(MeterOutputSerializer(self.get_meter(code)).data)

    @extend_schema(
        summary="Change a meter",
        description="Send only the fields to change. A change to what the meter counts "
        "(code, aggregation, value_property, filters, group_by, is_active) bumps "
        "`definition_version` and rebuilds its usage from the raw events. Needs "
        "`meters:write` (operator keys).",
        request=MeterInputSerializer,
        responses=responses({200: MeterOutputSerializer}, 400, 404, 409, 415),
    )
    def patch(self, request, code: str):
        meter = self.get_meter(code)
        payload = MeterInputSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        meter = services.meter_update(actor=request.auth, meter=meter, **payload.validated_data)
        return Response(MeterOutputSerializer(meter).data)


# --- Usage ------------------------------------------------------------------------------


def _check_range(start, end, granularity: str) -> None:
    if end <= start:
        raise InvalidInput("end must be after start.", code="invalid_range", field="end")
    if end - start > MAX_USAGE_RANGE:
        raise InvalidInput(
            f"Ask for at most {MAX_USAGE_RANGE.days} days at a time.",
            code="invalid_range",
            field="end",
        )
    if granularity == "hour" and end - start > MAX_HOURLY_RANGE:
        raise InvalidInput(
            f"An hourly series covers at most {MAX_HOURLY_RANGE.days} days; ask for day "
            "granularity or a shorter range.",
            code="invalid_range",
            field="end",
        )


def _dimensions(meter: Meter, group_by: str | None, query_params) -> dict[str, str]:
    """Check group_by and the ``dimension.<name>=value`` filters against the meter."""
    known = list(meter.group_by)
    listed = ", ".join(known) or "none"
    if group_by is not None and group_by not in known:
        raise InvalidInput(
            f"{group_by!r} is not a dimension of meter {meter.code} (its dimensions: {listed}).",
            code="unknown_dimension",
            field="group_by",
        )
    where = {}
    for name, values in prefixed_params(query_params, "dimension.", PROPERTY_PATTERN[1:-1]).items():
        field = f"dimension.{name}"
        if name not in known:
            raise InvalidInput(
                f"{name!r} is not a dimension of meter {meter.code} (its dimensions: {listed}).",
                code="unknown_dimension",
                field=field,
            )
        if len(values) != 1:
            raise InvalidInput(f"Give {field} once.", code="invalid", field=field)
        where[name] = values[0]
    return where


class UsageApi(MeteringApi):
    required_scopes = {"GET": "usage:read"}

    @extend_schema(
        summary="Usage of a customer on a meter",
        description="Over `[start, end)` (at most 400 days; hourly series at most 31): a "
        "`total`; with `granularity` a `series` with every bucket (in the customer's time "
        "zone); with `group_by` a `breakdown` by that dimension, largest first (with both, "
        "a series of the buckets and groups that had usage). Filter by dimensions with "
        "`dimension.<name>=value`. Quantities are decimal strings. Needs `usage:read`; a "
        "customer key sees its own customer.",
        parameters=[UsageQuerySerializer],
        responses=responses({200: UsageOutputSerializer}, 400, 404),
    )
    def get(self, request):
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        customer = self.customer_for(params.get("customer"), required=True)
        meter = self.meter_for(params["meter"])
        start, end, granularity = params["start"], params["end"], params["granularity"]
        _check_range(start, end, granularity)
        group_by = params.get("group_by")
        where = _dimensions(meter, group_by, request.query_params)

        answer = {
            "customer": customer.external_id,
            "meter": meter.code,
            "aggregation": meter.aggregation,
            "unit_label": meter.unit_label,
            "timezone": customer.timezone,
            "start": start,
            "end": end,
            "granularity": granularity,
            "group_by": group_by,
            "where": where,
        }
        window = {"customer": customer, "meter": meter, "start": start, "end": end}
        if granularity == "none" and group_by is None:
            answer["total"] = selectors.usage_total(**window, where=where)
        elif granularity == "none":
            points = selectors.usage_breakdown(**window, dimension=group_by, where=where)
            answer["breakdown"] = [{"group": p.group, "value": p.value} for p in points]
        elif group_by is not None:
            points = selectors.usage_points(
                **window, granularity=granularity, group_by=group_by, where=where
            )
            answer["series"] = [
                {"bucket": p.bucket, "group": p.group, "value": p.value} for p in points
            ]
        else:
            points = selectors.usage_series(**window, granularity=granularity, where=where)
            answer["series"] = [{"bucket": p.bucket, "value": p.value} for p in points]
        return Response(UsageOutputSerializer(answer).data)

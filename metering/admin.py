"""Staff views of metering: meters (edited through services), raw events, discrepancies.

The events table holds millions of rows in monthly partitions, so its list never counts
it: the paginator counts exactly up to a bound and takes the planner's estimate beyond.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q
from django.utils.functional import cached_property

from accounts.errors import InvalidInput
from accounts.models import Customer

from . import reconciliation, services
from .models import (
    CustomerUsageState,
    EventKey,
    Meter,
    UsageDiscrepancy,
    UsageEvent,
    UsageReconciliationRun,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records that only the system writes: staff look, never touch."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Meters -------------------------------------------------------------------------------


class MeterForm(forms.ModelForm):
    class Meta:
        model = Meter
        fields = list(services.METER_FIELDS)
        help_texts = {
            "filters": 'JSON, e.g. [{"property": "region", "in": ["eu", "us"]}] '
            'or [{"property": "plan", "equals": "pro"}].',
        }

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        # The service's own rules, so the form and the API can never disagree.
        probe = Meter(**{name: cleaned.get(name) for name in services.METER_FIELDS})
        try:
            services._validate_meter(probe)
        except InvalidInput as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    form = MeterForm
    list_display = [
        "name",
        "code",
        "aggregation",
        "value_property",
        "dimensions",
        "unit_label",
        "is_active",
        "rebuild",
        "updated_at",
    ]
    list_filter = ["aggregation", "is_active", "rebuild_status"]
    search_fields = ["code", "name"]
    readonly_fields = [
        "definition_version",
        "rebuild_status",
        "rebuild_progress",
        "rebuilt_version",
        "rebuild_error",
        "rebuild_started_at",
        "rebuild_finished_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["code", "name", "unit_label", "is_active"]}),
        ("Aggregation", {"fields": ["aggregation", "value_property", "filters", "group_by"]}),
        ("Rebuild from raw events", {"fields": readonly_fields}),
    ]
    actions = ["rebuild_now"]

    @admin.display(description="Group by")
    def dimensions(self, meter):
        return ", ".join(meter.group_by) or "—"

    @admin.display(description="Aggregates", ordering="rebuild_status")
    def rebuild(self, meter):
        if meter.rebuild_status == Meter.RebuildStatus.RUNNING:
            return f"Rebuilding: {meter.rebuild_progress}%"
        if meter.rebuild_status == Meter.RebuildStatus.FAILED:
            return f"Rebuild failed at {meter.rebuild_progress}%"
        if meter.rebuild_status == Meter.RebuildStatus.QUEUED:
            return "Rebuild queued"
        return f"Up to date (v{meter.rebuilt_version})"

    def save_model(self, request, obj, form, change):
        # Through the services: they audit and queue the rebuild a new definition needs.
        fields = {name: form.cleaned_data[name] for name in services.METER_FIELDS}
        if change:
            changes = {name: fields[name] for name in form.changed_data if name in fields}
            saved = services.meter_update(actor=request.user, meter=obj, **changes)
        else:
            saved = services.meter_create(actor=request.user, **fields)
        obj.pk = saved.pk

    def has_delete_permission(self, request, obj=None):
        # Rollups, discrepancies and invoices hang off a meter: deactivate it instead.
        return False

    @admin.action(description="Rebuild now from the raw events", permissions=["change"])
    def rebuild_now(self, request, queryset):
        queued, busy = [], []
        for meter in queryset:
            requested = reconciliation.meter_rebuild_request(actor=request.user, meter=meter)
            (queued if requested else busy).append(meter.code)
        if queued:
            messages.success(request, f"Rebuild queued: {', '.join(queued)}.")
        if busy:
            messages.warning(request, f"Already rebuilding: {', '.join(busy)}.")


# --- Raw events ---------------------------------------------------------------------------


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``EXACT_UP_TO`` rows, and beyond that trusts the planner's
    estimate: a ``COUNT(*)`` over millions of partitioned rows would take seconds."""

    EXACT_UP_TO = 1000
    estimated = False  # the list then says "about N" (admin/metering/usageevent/pagination.html)

    @cached_property
    def count(self) -> int:
        rows = self.object_list.order_by()
        bounded = rows[: self.EXACT_UP_TO + 1].count()
        if bounded <= self.EXACT_UP_TO:
            return bounded
        self.estimated = True
        query, params = rows.query.sql_with_params()
        with connections[rows.db].cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + query, params)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return max(bounded, int(plan[0]["Plan"]["Plan Rows"]))


class EventNameFilter(admin.SimpleListFilter):
    """Offered names come from the meters: a DISTINCT over the events would scan them all."""

    title = "event name"
    parameter_name = "event_name"

    def lookups(self, request, model_admin):
        return [
            (code, code) for code in Meter.objects.order_by("code").values_list("code", flat=True)
        ]

    def queryset(self, request, queryset):
        return queryset.filter(event_name=self.value()) if self.value() else queryset


class VoidFilter(admin.SimpleListFilter):
    title = "void"
    parameter_name = "void"

    def lookups(self, request, model_admin):
        return [("yes", "Voided"), ("no", "Not voided")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(voided_at__isnull=self.value() == "no")
        return queryset


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = [
        "timestamp",
        "customer",
        "event_name",
        "idempotency_key",
        "properties_json",
        "received_at",
        "late",
        "is_void",
    ]
    # No detail page: looking an event up by id alone would search every partition.
    list_display_links = None
    list_filter = [EventNameFilter, "late", VoidFilter]
    list_select_related = ["customer"]
    list_per_page = 100
    search_fields = ["=idempotency_key"]
    search_help_text = "An idempotency key, or a customer's external id (exact)."
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator

    @admin.display(description="Properties")
    def properties_json(self, event):
        text = json.dumps(event.properties, sort_keys=True, ensure_ascii=False)
        return text if len(text) <= 160 else text[:159] + "…"

    @admin.display(description="Void", boolean=True)
    def is_void(self, event):
        return event.voided_at is not None

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        # Each match is pinned to (customer, event time): index lookups in one partition.
        found = Q(customer__in=Customer.objects.filter(external_id=term).values("pk"))
        for customer_id, moment in EventKey.objects.filter(idempotency_key=term).values_list(
            "customer_id", "event_timestamp"
        )[:100]:
            found |= Q(customer_id=customer_id, timestamp=moment, idempotency_key=term)
        return queryset.filter(found), False


# --- Reconciliation -----------------------------------------------------------------------


@admin.register(UsageDiscrepancy)
class UsageDiscrepancyAdmin(ReadOnlyAdmin):
    list_display = [
        "found_at",
        "customer",
        "meter",
        "hour",
        "dimensions",
        "realtime_value",
        "batch_value",
    ]
    list_filter = ["meter"]
    list_select_related = ["customer", "meter"]
    search_fields = ["customer__external_id", "customer__name", "meter__code"]
    date_hierarchy = "found_at"


@admin.register(UsageReconciliationRun)
class UsageReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "status",
        "window_start",
        "window_end",
        "scanned_since",
        "hours_checked",
        "late_hours_checked",
        "discrepancies_found",
        "rollups_corrected",
        "finished_at",
    ]
    list_filter = ["status"]
    date_hierarchy = "started_at"


@admin.register(CustomerUsageState)
class CustomerUsageStateAdmin(ReadOnlyAdmin):
    list_display = ["customer", "closed_through", "updated_at"]
    list_select_related = ["customer"]
    search_fields = ["customer__external_id", "customer__name"]

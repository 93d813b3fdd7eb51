"""Catalog: plans and their published plan versions (with their prices)."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html_join

from accounts.errors import DomainError
from accounts.forms import add_domain_error

from .. import services
from ..models import Plan, PlanVersion, PriceComponent
from ._shared import BR, ReadOnlyInline, ServiceAdmin, admin_link, number
from .forms import PlanCreateForm, PlanVersionForm

# --- Catalog ---------------------------------------------------------------------------------


class PlanVersionInline(ReadOnlyInline):
    model = PlanVersion
    fields = ["version_link", "interval", "created_at", "notes"]
    readonly_fields = fields

    @admin.display(description="Version")
    def version_link(self, version):
        return admin_link(version, f"v{version.version}")


@admin.register(Plan)
class PlanAdmin(ServiceAdmin):
    list_display = ["name", "code", "currency", "is_active", "latest_version", "created_at"]
    list_filter = ["is_active", "currency"]
    search_fields = ["code", "name"]
    fields = ["code", "name", "currency", "description", "is_active", "created_at"]
    readonly_fields = fields
    inlines = [PlanVersionInline]
    creates_through_service = True

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(latest=Max("versions__version"))

    @admin.display(description="Latest version", ordering="latest")
    def latest_version(self, plan):
        return f"v{plan.latest}" if plan.latest else "—"

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PlanCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                plan = services.plan_create(actor=request.user, **form.cleaned_data)
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                messages.success(request, f"Plan {plan.code} created: now publish its prices.")
                url = reverse("admin:invoicing_planversion_add")
                return HttpResponseRedirect(f"{url}?plan={plan.pk}")
        return self.form_page(request, form, title="Add plan")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_publish": request.user.has_perm("invoicing.add_planversion"),
        }
        return super().change_view(request, object_id, form_url, extra_context)


class PriceComponentInline(ReadOnlyInline):
    model = PriceComponent
    fields = [
        "position",
        "kind",
        "description",
        "meter",
        "pricing_model",
        "unit_price",
        "tier_table",
        "package_size",
        "included_units",
        "amount",
        "percent",
        "commitment_months",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("meter")

    @admin.display(description="Tiers")
    def tier_table(self, component):
        return format_html_join(
            BR,
            "up to {}: {} per unit + {} flat",
            (
                (
                    "∞" if t["up_to"] is None else number(t["up_to"]),
                    number(t["unit_price"]),
                    number(t["flat_fee"]),
                )
                for t in component.tiers
            ),
        )


@admin.register(PlanVersion)
class PlanVersionAdmin(ServiceAdmin):
    list_display = ["__str__", "plan", "version", "interval", "components_count", "created_at"]
    list_filter = ["interval", "plan"]
    list_select_related = ["plan"]
    search_fields = ["plan__code", "plan__name"]
    fields = ["plan", "version", "interval", "created_at", "notes"]
    readonly_fields = fields
    inlines = [PriceComponentInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(components_total=Count("components"))

    @admin.display(description="Prices", ordering="components_total")
    def components_count(self, version):
        return version.components_total

    creates_through_service = True  # publishing is the only way a version comes to be

    def add_view(self, request, form_url="", extra_context=None):
        """Publish the next version of a plan; the service's refusals become form errors."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PlanVersionForm(request.POST or None, initial={"plan": request.GET.get("plan")})
        if request.method == "POST" and form.is_valid():
            try:
                version = services.plan_version_create(actor=request.user, **form.cleaned_data)
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                messages.success(request, f"Published {version}.")
                return HttpResponseRedirect(
                    reverse("admin:invoicing_planversion_change", args=[version.pk])
                )
        return self.form_page(request, form, title="Publish a new plan version")

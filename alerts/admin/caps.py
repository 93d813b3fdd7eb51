"""Caps: customers' (read-only: they set them in the portal or the API, every change audited
by the service) and the operator's defaults per plan (managed here through the services)."""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseRedirect

from accounts.errors import DomainError
from accounts.forms import add_domain_error
from invoicing.admin._shared import ReadOnlyInline, ServiceAdmin, admin_link, changelist_url, number
from invoicing.admin.forms import ConfirmForm
from metering.admin import ReadOnlyAdmin

from ..models import Cap, CapWindow, PlanCapDefault
from ..services import plan_defaults as services
from ._shared import counted
from .forms import PlanCapDefaultForm


def limit_text(item: Cap | PlanCapDefault, currency: str) -> str:
    """The limit in its measure: units of the meter, or spend in ``currency``."""
    if item.measure == Cap.Measure.MONEY:
        return f"{number(item.limit)} {currency}".strip()
    return f"{number(item.limit)} {item.meter.unit_label}".strip()


# --- Customers' caps ------------------------------------------------------------------------


class CapWindowInline(ReadOnlyInline):
    model = CapWindow
    fields = ["period_start", "period_end", "limit", "used", "reserved"]
    readonly_fields = fields
    ordering = ["-period_start"]


@admin.register(Cap)
class CapAdmin(ReadOnlyAdmin):
    list_display = [
        "customer",
        "capped",
        "measure",
        "limit",
        "on_exceed",
        "plan_default_link",
        "updated_at",
    ]
    list_filter = ["measure", "on_exceed", "meter"]
    list_select_related = ["customer", "meter", "plan_default__plan"]
    search_fields = ["customer__name", "customer__external_id", "meter__code"]
    fields = [
        "customer",
        "capped",
        "measure",
        "limit",
        "on_exceed",
        "plan_default_link",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [CapWindowInline]

    @admin.display(description="Meter", ordering="meter__code")
    def capped(self, cap):
        # No meter: the cap on the customer's total usage spend (its windows count money).
        return "total spend" if cap.is_total else cap.meter

    @admin.display(description="Plan default")
    def plan_default_link(self, cap):
        if cap.plan_default_id is None:
            return "— (the customer's own)"
        return admin_link(cap.plan_default, f"copy of plan {cap.plan_default.plan.code}'s")


# --- Plans' default caps --------------------------------------------------------------------


@admin.register(PlanCapDefault)
class PlanCapDefaultAdmin(ServiceAdmin):
    list_display = [
        "plan",
        "meter",
        "measure",
        "limit_shown",
        "on_exceed",
        "copies",
        "updated_at",
    ]
    list_filter = ["measure", "on_exceed", "plan"]
    list_select_related = ["plan", "meter"]
    search_fields = ["plan__code", "plan__name", "meter__code"]
    show_facets = admin.ShowFacets.NEVER
    fields = [
        "plan",
        "meter",
        "measure",
        "limit_shown",
        "on_exceed",
        "copies",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    actions = ["remove_defaults"]
    creates_through_service = True

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(copies_count=Count("caps"))

    @admin.display(description="Limit", ordering="limit")
    def limit_shown(self, default):
        return limit_text(default, default.plan.currency)

    @admin.display(description="Copied onto", ordering="copies_count")
    def copies(self, default):
        return counted(default.copies_count, "subscriber")

    # -- through the services

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PlanCapDefaultForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                default = services.plan_cap_default_set(actor=request.user, **data)
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                messages.success(request, f"Default cap set: {default}.")
                return HttpResponseRedirect(changelist_url(PlanCapDefault))
        return self.form_page(
            request,
            form,
            title="Set a plan's default cap",
            intro="Subscribers of the plan without their own cap on the meter get this one at "
            "once (a plan's default on a meter it has already changes it). A customer who "
            "sets their own cap keeps it.",
            submit_label="Set",
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        default = self.get_object(request, unquote(object_id))
        if default is not None and self.has_change_permission(request):
            return self.default_change(request, default)
        return super().change_view(request, object_id, form_url, extra_context)

    def default_change(self, request, default):
        form = PlanCapDefaultForm(request.POST or None, default=default)
        if request.method == "POST" and form.is_valid():
            try:
                default = services.plan_cap_default_set(
                    actor=request.user, plan=default.plan, meter=default.meter, **form.cleaned_data
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                messages.success(request, f"Default cap saved: {default}.")
                return HttpResponseRedirect(changelist_url(PlanCapDefault))
        return self.form_page(
            request,
            form,
            title=f"Change plan {default.plan.code}'s default cap on {default.meter.code}",
            intro=f"Copied onto {counted(default.copies_count, 'subscriber')}; saving "
            "changes each of those caps. Customers with their own cap keep it.",
            submit_label="Save",
        )

    def has_remove_permission(self, request):
        return request.user.has_perm("alerts.delete_plancapdefault")

    @admin.action(
        description="Remove selected default caps, with their copies…", permissions=["remove"]
    )
    def remove_defaults(self, request, queryset):
        defaults = list(queryset.select_related("plan", "meter"))
        form = ConfirmForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self.form_page(
                request,
                form,
                title="Remove plan default caps",
                action="remove_defaults",
                objects=defaults,
                template="admin/alerts/remove.html",
                removals=[
                    (default, f"copied onto {counted(default.copies_count, 'subscriber')}")
                    for default in defaults
                ],
                intro="Each default goes with the caps still copied from it: those "
                "subscribers are no longer capped on the meter. Customers' own caps stay.",
                submit_label="Remove",
            )
        self.run_each(
            request,
            defaults,
            lambda default: services.plan_cap_default_remove(actor=request.user, default=default),
            done="Removed",
        )
        return None

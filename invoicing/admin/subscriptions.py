"""Subscriptions, with their phases, and the cancel actions."""

from django.contrib import admin

from .. import services
from ..models import Subscription, SubscriptionPhase
from ._shared import ReadOnlyInline, ServiceAdmin
from .forms import ConfirmForm

# --- Subscriptions ---------------------------------------------------------------------------


class SubscriptionPhaseInline(ReadOnlyInline):
    model = SubscriptionPhase
    fields = ["plan_version", "starts_at", "ends_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("plan_version__plan")


@admin.register(Subscription)
class SubscriptionAdmin(ServiceAdmin):
    list_display = [
        "customer",
        "plan_version",
        "status",
        "started_at",
        "billed_through",
        "current_period_end",
        "ends_at",
    ]
    list_filter = ["status", "plan_version__plan"]
    list_select_related = ["customer", "plan_version__plan"]
    search_fields = ["customer__name", "customer__external_id"]
    fields = [
        "customer",
        "plan_version",
        "status",
        "started_at",
        "billing_anchor",
        "billed_through",
        "current_period_end",
        "ends_at",
        "canceled_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [SubscriptionPhaseInline]
    actions = ["cancel_at_period_end", "cancel_now"]

    def object_actions(self, request, obj):
        if obj.status != Subscription.Status.ACTIVE or obj.ends_at is not None:
            return []
        return [
            ("cancel_at_period_end", "Cancel at period end"),
            ("cancel_now", "Cancel now"),
        ]

    def _cancel(self, request, queryset, *, at_period_end: bool, action: str):
        active = self.eligible(
            request, queryset.select_related("customer", "plan_version"), ["active"], what="active"
        )
        if not active:
            return self.done(request)
        form = ConfirmForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            when = "at the end of the current period" if at_period_end else "now"
            return self.form_page(
                request,
                form,
                title=f"Cancel {when}",
                action=action,
                objects=active,
                template="admin/invoicing/cancel.html",
                intro=(
                    "Each subscription runs to the end of its current period, which is billed "
                    "as usual; nothing after it."
                    if at_period_end
                    else "Each subscription ends now: the current period is cut short and "
                    "billed up to now (flat fees by the second), and the customer may "
                    "subscribe anew at once."
                ),
                submit_label=f"Cancel {when}",
            )
        self.run_each(
            request,
            active,
            lambda sub: services.subscription_cancel(
                actor=request.user, subscription=sub, at_period_end=at_period_end
            ),
            done="Canceled",
            describe=lambda sub: f"{sub.customer} (ends {sub.ends_at:%Y-%m-%d %H:%M} UTC)",
        )
        return self.done(request)

    @admin.action(description="Cancel at the end of the current period…", permissions=["change"])
    def cancel_at_period_end(self, request, queryset):
        return self._cancel(request, queryset, at_period_end=True, action="cancel_at_period_end")

    @admin.action(description="Cancel now (billed up to now)…", permissions=["change"])
    def cancel_now(self, request, queryset):
        return self._cancel(request, queryset, at_period_end=False, action="cancel_now")

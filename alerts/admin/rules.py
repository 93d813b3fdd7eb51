"""Alert rules (customers' to look at; the operator's plan defaults to manage), the alerts
they fired, and the expansion signals those left for the account team."""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.utils.html import format_html

from accounts.errors import DomainError
from accounts.forms import add_domain_error
from invoicing.admin._shared import ReadOnlyInline, ServiceAdmin, admin_link, changelist_url, span
from invoicing.admin.forms import ConfirmForm
from invoicing.currency import format_money
from metering.admin import ReadOnlyAdmin

from ..models import Alert, AlertRule, Delivery, ExpansionSignal
from ..services import rules as services
from ._shared import counted, personas, pretty_json, rule_levels
from .forms import PlanRuleForm

# --- Alert rules ----------------------------------------------------------------------------


class RuleOwnerFilter(admin.SimpleListFilter):
    title = "belongs to"
    parameter_name = "owner"

    def lookups(self, request, model_admin):
        return [
            ("customer", "A customer (their own)"),
            ("copy", "A customer (copy of a plan default)"),
            ("plan", "A plan (the default)"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "customer":
            return queryset.filter(customer__isnull=False, plan_default__isnull=True)
        if self.value() == "copy":
            return queryset.filter(plan_default__isnull=False)
        if self.value() == "plan":
            return queryset.filter(plan__isnull=False)
        return queryset


@admin.register(AlertRule)
class AlertRuleAdmin(ServiceAdmin):
    """Customers set their rules (portal, API): staff look. The operator's defaults per
    plan are created, changed and removed here, through the rules services, which copy
    them onto the plan's subscribers."""

    list_display = [
        "rule",
        "owner",
        "kind",
        "subject",
        "basis",
        "levels_text",
        "audience_text",
        "enabled",
        "plan_default_text",
    ]
    list_filter = [RuleOwnerFilter, "kind", "basis", "enabled", "meter"]
    list_select_related = ["customer", "plan", "meter", "plan_default__plan"]
    search_fields = [
        "name",
        "customer__name",
        "customer__external_id",
        "plan__code",
        "plan__name",
        "meter__code",
    ]
    search_help_text = "A rule's name, a customer's name or external id, a plan, a meter code."
    show_facets = admin.ShowFacets.NEVER
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "owner",
                    "plan_default_text",
                    "kind",
                    "subject",
                    "basis",
                    "levels_text",
                    "audience_text",
                    "enabled",
                ]
            },
        ),
        (
            "Tuning",
            {
                "fields": [
                    "confidence",
                    "within_days",
                    "factor",
                    "recent_days",
                    "baseline_days",
                    "sensitivity",
                    "min_volume",
                ]
            },
        ),
        (None, {"fields": ["fired", "created_at", "updated_at"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]
    actions = ["remove_plan_defaults"]
    creates_through_service = True  # plan defaults only: customers make their own

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(copies_count=Count("copies"))

    # -- columns and fields

    @admin.display(description="Rule")
    def rule(self, rule):
        return str(rule)

    @admin.display(description="Belongs to")
    def owner(self, rule):
        if rule.plan_id is not None:
            return format_html("Plan {} <em>(default)</em>", rule.plan.code)
        return str(rule.customer)

    @admin.display(description="Meter", ordering="meter__code")
    def subject(self, rule):
        return rule.meter.code if rule.meter_id else "total spend"

    @admin.display(description="Levels / tuning")
    def levels_text(self, rule):
        return rule_levels(rule)

    @admin.display(description="Audience")
    def audience_text(self, rule):
        return personas(rule.audience)

    @admin.display(description="Plan default")
    def plan_default_text(self, rule):
        if rule.plan_default_id is not None:
            return admin_link(rule.plan_default, f"copy of plan {rule.plan_default.plan.code}'s")
        if rule.plan_id is not None:
            copies = getattr(rule, "copies_count", None)
            return "—" if copies is None else f"copied onto {counted(copies, 'subscriber')}"
        return "—"

    @admin.display(description="Alerts fired")
    def fired(self, rule):
        url = f"{changelist_url(Alert)}?rule={rule.pk}"
        return format_html('<a href="{}">{}</a>', url, counted(rule.alerts.count(), "alert"))

    # -- plan defaults through the services

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = PlanRuleForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            plan = form.cleaned_data["plan"]
            try:
                rule = services.rule_create(actor=request.user, plan=plan, **form.rule_fields())
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                copies = rule.copies.count()
                messages.success(
                    request, f"Default rule “{rule}” added to plan {plan.code}: {copies} copied."
                )
                return HttpResponseRedirect(changelist_url(AlertRule))
        return self.form_page(
            request,
            form,
            title="Add a default alert rule to a plan",
            intro="Customers set their own rules in the portal or the API. A plan's default "
            "is copied onto each current subscriber; a customer who changes their copy keeps "
            "it as their own.",
            submit_label="Add",
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        rule = self.get_object(request, unquote(object_id))
        if rule is not None and rule.plan_id is not None and self.has_change_permission(request):
            return self.plan_default_change(request, rule)
        return super().change_view(request, object_id, form_url, extra_context)

    def plan_default_change(self, request, rule):
        form = PlanRuleForm(request.POST or None, rule=rule)
        if request.method == "POST" and form.is_valid():
            try:
                rule = services.rule_update(actor=request.user, rule=rule, **form.rule_fields())
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                messages.success(
                    request,
                    f"Default rule “{rule}” of plan {rule.plan.code} saved, with the copies "
                    "still attached to it.",
                )
                return HttpResponseRedirect(changelist_url(AlertRule))
        return self.form_page(
            request,
            form,
            title=f"Change plan {rule.plan.code}'s default rule “{rule}”",
            intro=f"Copied onto {counted(rule.copies_count, 'subscriber')}. Saving changes "
            "each copy still attached; customers who changed theirs keep their own.",
            submit_label="Save",
        )

    def has_remove_permission(self, request):
        return request.user.has_perm("alerts.delete_alertrule")

    @admin.action(
        description="Remove selected plan defaults, with their copies…", permissions=["remove"]
    )
    def remove_plan_defaults(self, request, queryset):
        chosen = list(queryset.select_related("customer", "plan", "meter"))
        defaults = [rule for rule in chosen if rule.plan_id is not None]
        theirs = [str(rule) for rule in chosen if rule.plan_id is None]
        if theirs and "apply" not in request.POST:
            messages.warning(request, f"Customers' own rules, left out: {', '.join(theirs)}.")
        if not defaults:
            messages.error(request, "None of the selected rules is a plan default.")
            return None
        form = ConfirmForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self.form_page(
                request,
                form,
                title="Remove plan default rules",
                action="remove_plan_defaults",
                objects=defaults,
                template="admin/alerts/remove.html",
                removals=[
                    (
                        rule,
                        f"plan {rule.plan.code}, copied onto "
                        f"{counted(rule.copies_count, 'subscriber')}",
                    )
                    for rule in defaults
                ],
                intro="Each default goes with the copies still attached to it; customers who "
                "changed their copy keep it. Alerts already fired stay as history.",
                submit_label="Remove",
            )
        self.run_each(
            request,
            defaults,
            lambda rule: services.rule_delete(actor=request.user, rule=rule),
            done="Removed",
            describe=lambda rule: f"{rule} (plan {rule.plan.code})",
        )
        return None


# --- Alerts -----------------------------------------------------------------------------------


class AlertDeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = [
        "delivery",
        "event",
        "channel",
        "persona",
        "target",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "delivered_at",
    ]
    readonly_fields = fields
    ordering = ["created_at", "pk"]

    @admin.display(description="Delivery")
    def delivery(self, delivery):
        return admin_link(delivery, f"#{delivery.pk}")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = [
        "title",
        "customer",
        "kind",
        "meter",
        "level",
        "severity",
        "status",
        "triggered_at",
        "resolved_at",
    ]
    list_filter = ["kind", "severity", "status"]
    list_select_related = ["customer", "meter"]
    search_fields = ["title", "customer__name", "customer__external_id", "meter__code"]
    search_help_text = "An alert's title, a customer's name or external id, a meter code."
    date_hierarchy = "triggered_at"
    show_facets = admin.ShowFacets.NEVER
    fields = [
        "title",
        "customer",
        "rule_link",
        "kind",
        "meter",
        "period",
        "level",
        "severity",
        "status",
        "summary",
        "evidence_json",
        "audience_text",
        "triggered_at",
        "resolved_at",
        "resolution",
        "signal",
    ]
    readonly_fields = fields
    inlines = [AlertDeliveryInline]

    @admin.display(description="Rule")
    def rule_link(self, alert):
        return admin_link(alert.rule) if alert.rule_id else "— (removed)"

    @admin.display(description="Period")
    def period(self, alert):
        return span(alert.period_start, alert.period_end)

    @admin.display(description="Evidence")
    def evidence_json(self, alert):
        return pretty_json(alert.evidence)

    @admin.display(description="Audience")
    def audience_text(self, alert):
        return personas(alert.audience)

    @admin.display(description="Expansion signal")
    def signal(self, alert):
        return admin_link(ExpansionSignal.objects.filter(alert=alert).first())


# --- Expansion signals ------------------------------------------------------------------------


@admin.register(ExpansionSignal)
class ExpansionSignalAdmin(ReadOnlyAdmin):
    list_display = ["customer", "kind", "meter", "revenue_impact", "created_at", "alert"]
    list_filter = ["kind"]
    list_select_related = ["customer", "meter", "alert"]
    search_fields = ["customer__name", "customer__external_id", "meter__code"]
    search_help_text = "A customer's name or external id, a meter code."
    date_hierarchy = "created_at"
    show_facets = admin.ShowFacets.NEVER
    fields = [
        "customer",
        "kind",
        "meter",
        "revenue_impact",
        "alert_link",
        "evidence_json",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(
        description="Estimated revenue impact per period",
        ordering="estimated_revenue_impact_minor",
    )
    def revenue_impact(self, signal):
        if not signal.currency:
            return "—"
        return format_money(signal.estimated_revenue_impact_minor, signal.currency)

    @admin.display(description="Alert")
    def alert_link(self, signal):
        return admin_link(signal.alert)

    @admin.display(description="Evidence")
    def evidence_json(self, signal):
        return pretty_json(signal.evidence)

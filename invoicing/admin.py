"""The finance staff's admin for invoicing: every write goes through the services.

Nothing here saves a model. Plans and plan versions are created by ``plan_create`` and
``plan_version_create``; invoices, subscriptions and disputes change only through admin
actions calling the services (finalize, release, void, credit, cancel, accept, reject).
Every change page is read-only, and finalized invoices are immutable in the database
anyway. Actions need "change" on their model (the finance group); support only looks.

An action that needs input answers the changelist POST with a confirmation page whose
form posts back to the same action with ``apply`` set (as Django's own delete does); the
buttons on a change page post the same action for that one object and come back to it.
"""

from collections.abc import Callable, Iterable
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, IntegerField, Max, Prefetch, Value, When
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.text import capfirst

from accounts.errors import DomainError

from . import services
from .currency import format_money
from .forms_admin import (
    ConfirmForm,
    CreditNoteForm,
    DisputeAcceptForm,
    DisputeRejectForm,
    PlanCreateForm,
    PlanVersionForm,
    ReleaseForm,
    VoidForm,
    add_domain_error,
)
from .models import (
    CreditNote,
    CreditNoteLine,
    Dispute,
    Invoice,
    InvoiceLine,
    InvoiceUsageCheck,
    Plan,
    PlanVersion,
    PriceComponent,
    Subscription,
    SubscriptionPhase,
)
from .services.corrections import NEVER_PAID

Status = Invoice.Status


# --- Shared pieces -------------------------------------------------------------------------


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ServiceAdmin(admin.ModelAdmin):
    """Read-only pages; "change" permission only unlocks the actions (which call services)."""

    # Set where ``add_view`` is a form calling the create service.
    creates_through_service = False

    def has_add_permission(self, request):
        return self.creates_through_service and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        # No change form ever saves: for an object the page is view-only.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    def page(self, request, template: str, **context) -> TemplateResponse:
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "opts": self.model._meta, **context},
        )

    def form_page(self, request, form, *, title: str, action: str = "", objects=(), **extra):
        """A form page; for an action, the form posts back to the changelist action."""
        return self.page(
            request,
            extra.pop("template", "admin/invoicing/form.html"),
            title=title,
            form=form,
            action=action,
            objects=list(objects),
            action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
            return_to=request.POST.get("_return_to", ""),
            changelist_url=reverse(f"admin:invoicing_{self.model._meta.model_name}_changelist"),
            **extra,
        )

    def done(self, request):
        """After an action: back to the page it was started from, else the changelist."""
        url = request.POST.get("_return_to", "")
        if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}):
            return HttpResponseRedirect(url)
        return None

    def run_each(
        self, request, objects: Iterable, call: Callable, *, done: str, describe=str
    ) -> None:
        """Call the service per object; domain errors become error messages."""
        succeeded = []
        for obj in objects:
            try:
                result = call(obj)
            except DomainError as exc:
                messages.error(request, f"{obj}: {exc.message}")
            else:
                succeeded.append(describe(result if result is not None else obj))
        if succeeded:
            messages.success(request, f"{done}: {', '.join(succeeded)}.")

    def eligible(self, request, queryset, statuses, *, what: str) -> list:
        chosen = list(queryset)
        ok = [obj for obj in chosen if obj.status in statuses]
        skipped = [str(obj) for obj in chosen if obj.status not in statuses]
        if skipped and "apply" not in request.POST:
            messages.warning(request, f"Not {what}, left out: {', '.join(skipped)}.")
        if not ok:
            messages.error(request, f"None of the selected items is {what}.")
        return ok

    def object_actions(self, request, obj) -> list[tuple[str, str]]:
        """(action, label) buttons for the change page."""
        return []

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        buttons = []
        if obj is not None and self.has_change_permission(request):
            actions = self.get_actions(request)
            buttons = [(n, label) for n, label in self.object_actions(request, obj) if n in actions]
        extra_context = {
            **(extra_context or {}),
            "object_buttons": buttons,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse(f"admin:invoicing_{self.model._meta.model_name}_changelist"),
        }
        return super().change_view(request, object_id, form_url, extra_context)


BR = mark_safe("<br>")


def money(minor: int | None, currency: str) -> str:
    return "—" if minor is None else format_money(minor, currency)


def admin_link(obj, text=None):
    if obj is None:
        return "—"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text or obj)


def span(start, end) -> str:
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"


def number(value) -> str:
    """A Decimal (or its text) without trailing zeros, grouped: 1,234.5."""
    value = Decimal(str(value))
    if value == value.to_integral_value():
        return f"{value.quantize(Decimal(1)):,}"
    return f"{value.normalize():,f}"


def with_checks(invoices: Iterable[Invoice]) -> list[Invoice]:
    """Invoices (usage checks prefetched) with ``checks`` ready for _usage_checks.html."""
    invoices = list(invoices)
    for invoice in invoices:
        invoice.checks = list(invoice.usage_checks.all())
        for check in invoice.checks:
            check.batch_text = number(check.batch_quantity)
            check.realtime_text = number(check.realtime_quantity)
            check.portal_text = number(check.portal_quantity)
    return invoices


CHECKS = Prefetch("usage_checks", queryset=InvoiceUsageCheck.objects.select_related("meter"))


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


# --- Invoices ----------------------------------------------------------------------------------


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = [
        "position",
        "kind",
        "description",
        "line_period",
        "quantity_text",
        "included_text",
        "unit_price_text",
        "amount",
        "tier_breakdown",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice")

    @admin.display(description="Period")
    def line_period(self, line):
        return span(line.period_start, line.period_end)

    @admin.display(description="Quantity")
    def quantity_text(self, line):
        return number(line.quantity)

    @admin.display(description="Included")
    def included_text(self, line):
        return number(line.included_units)

    @admin.display(description="Unit price")
    def unit_price_text(self, line):
        return "—" if line.unit_price is None else number(line.unit_price)

    @admin.display(description="Amount")
    def amount(self, line):
        return format_money(line.amount_minor, line.invoice.currency)

    @admin.display(description="Tier by tier")
    def tier_breakdown(self, line):
        return format_html_join(
            BR,
            "Tier {}: units {}&ndash;{}: {} &times; {}{} = {}",
            (
                (
                    t["tier"],
                    number(t["first_unit"]),
                    "∞" if t["up_to"] is None else number(t["up_to"]),
                    number(t["quantity"]),
                    number(t["unit_price"]),
                    f" + {number(t['flat_fee'])} flat" if Decimal(t["flat_fee"]) else "",
                    number(t["amount"]),
                )
                for t in line.tiers
            ),
        )


MISMATCH = mark_safe('<strong class="mb-mismatch">✗ mismatch</strong>')


class InvoiceUsageCheckInline(ReadOnlyInline):
    model = InvoiceUsageCheck
    verbose_name = "usage check"
    verbose_name_plural = "Reconciliation: usage per meter (batch is billed)"
    fields = ["meter", "check_period", "batch", "realtime", "portal", "agrees", "checked_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("meter")

    @admin.display(description="Period")
    def check_period(self, check):
        return span(check.period_start, check.period_end)

    def _figure(self, check, value):
        if value == check.batch_quantity:
            return number(value)
        return format_html('<strong class="mb-mismatch">{}</strong>', number(value))

    @admin.display(description="Batch (billed)")
    def batch(self, check):
        return number(check.batch_quantity)

    @admin.display(description="Real-time")
    def realtime(self, check):
        return self._figure(check, check.realtime_quantity)

    @admin.display(description="Portal")
    def portal(self, check):
        return self._figure(check, check.portal_quantity)

    @admin.display(description="Agrees")
    def agrees(self, check):
        if check.matches:
            return "✓"
        return MISMATCH


class InvoiceCreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fields = ["number_link", "reason", "total", "issued_at", "issued_by"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice")

    @admin.display(description="Number")
    def number_link(self, note):
        return admin_link(note, note.number)

    @admin.display(description="Total")
    def total(self, note):
        return format_money(note.total_minor, note.invoice.currency)


class StripeStateFilter(admin.SimpleListFilter):
    title = "Stripe"
    parameter_name = "stripe"

    def lookups(self, request, model_admin):
        return [("synced", "Synced"), ("error", "Last sync failed"), ("never", "Not synced")]

    def queryset(self, request, queryset):
        if self.value() == "synced":
            return queryset.filter(stripe_synced_at__isnull=False)
        if self.value() == "error":
            return queryset.exclude(stripe_last_error="")
        if self.value() == "never":
            return queryset.filter(stripe_synced_at__isnull=True).exclude(
                status__in=Invoice.EDITABLE
            )
        return queryset


@admin.register(Invoice)
class InvoiceAdmin(ServiceAdmin):
    list_display = [
        "label",
        "customer",
        "period",
        "status",
        "total",
        "stripe_invoice_id",
        "stripe_error",
    ]
    list_filter = ["status", StripeStateFilter, "currency"]
    list_select_related = ["customer"]
    search_fields = ["number", "customer__name", "customer__external_id"]
    search_help_text = "An invoice number, or a customer's name or external id."
    date_hierarchy = "period_start"
    show_facets = admin.ShowFacets.NEVER
    fieldsets = [
        (None, {"fields": ["number", "customer", "subscription", "status", "period"]}),
        (
            "Amounts",
            {"fields": ["subtotal", "total", "commitment_balance_after", "credited"]},
        ),
        (
            "Life cycle",
            {
                "fields": [
                    "rated_at",
                    "finalize_after",
                    "finalized_at",
                    "due_at",
                    "released_by",
                    "released_at",
                    "paid_at",
                    "voided_at",
                    "void_reason",
                ]
            },
        ),
        (
            "Stripe",
            {
                "fields": [
                    "stripe_invoice_id",
                    "stripe_synced_at",
                    "stripe_sync_attempts",
                    "stripe_last_error",
                ]
            },
        ),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]
    inlines = [InvoiceLineInline, InvoiceUsageCheckInline, InvoiceCreditNoteInline]
    actions = ["finalize", "release", "void", "issue_credit_note", "resync_stripe"]

    # -- columns and fields

    @admin.display(description="Invoice", ordering="number")
    def label(self, invoice):
        return invoice.number or f"Draft #{invoice.pk}"

    @admin.display(description="Period", ordering="period_start")
    def period(self, invoice):
        return f"{invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}"

    @admin.display(description="Total", ordering="total_minor")
    def total(self, invoice):
        return format_money(invoice.total_minor, invoice.currency)

    @admin.display(description="Subtotal")
    def subtotal(self, invoice):
        return format_money(invoice.subtotal_minor, invoice.currency)

    @admin.display(description="Commitment balance after")
    def commitment_balance_after(self, invoice):
        return money(invoice.commitment_balance_after_minor, invoice.currency)

    @admin.display(description="Left to credit")
    def credited(self, invoice):
        if invoice.is_editable:
            return "—"
        return format_money(services.creditable_minor(invoice), invoice.currency)

    @admin.display(description="Stripe last error")
    def stripe_error(self, invoice):
        error = invoice.stripe_last_error
        return error if len(error) <= 80 else error[:79] + "…"

    # -- pages

    def get_urls(self):
        held = path(
            "held/",
            self.admin_site.admin_view(self.held_view),
            name="invoicing_invoice_held",
        )
        return [held, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        held = Invoice.objects.filter(status=Status.HELD).count()
        return super().changelist_view(request, {**(extra_context or {}), "held_count": held})

    def held_view(self, request):
        """Invoices the reconciliation gate holds, with the figures that disagree."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        invoices = with_checks(
            Invoice.objects.filter(status=Status.HELD)
            .select_related("customer")
            .prefetch_related(CHECKS)
            .order_by("period_start", "pk")
        )
        return self.page(
            request,
            "admin/invoicing/held.html",
            title="Held invoices: review the discrepancies",
            invoices=invoices,
            can_release="release" in self.get_actions(request),
            action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
            changelist_url=reverse("admin:invoicing_invoice_changelist"),
        )

    def object_actions(self, request, invoice):
        if invoice.status == Status.DRAFT:
            return [("finalize", "Finalize")]
        if invoice.status == Status.HELD:
            return [("release", "Review and release")]
        buttons = [("resync_stripe", "Resync to Stripe")]
        if invoice.status != Status.VOID:
            buttons.append(("issue_credit_note", "Issue credit note"))
        if invoice.status in NEVER_PAID:
            buttons.append(("void", "Void"))
        return buttons

    # -- actions

    @admin.action(description="Finalize selected drafts", permissions=["change"])
    def finalize(self, request, queryset):
        drafts = self.eligible(
            request, queryset.order_by("period_start", "pk"), [Status.DRAFT], what="a draft"
        )
        self.run_each(
            request,
            drafts,
            lambda invoice: services.invoice_finalize(actor=request.user, invoice=invoice),
            done="Finalized",
        )
        return self.done(request)

    @admin.action(description="Release held invoices after review…", permissions=["change"])
    def release(self, request, queryset):
        held = self.eligible(
            request,
            queryset.select_related("customer").prefetch_related(CHECKS),
            [Status.HELD],
            what="held",
        )
        if not held:
            return self.done(request)
        form = ReleaseForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self.form_page(
                request,
                form,
                title="Release held invoices",
                action="release",
                objects=with_checks(held),
                template="admin/invoicing/release.html",
                intro="Releasing bills the batch figures (from the raw events) as they stand. "
                "The invoice then finalizes like any draft; it is held again only if the "
                "figures move.",
                submit_label="Release",
            )
        note = form.cleaned_data["note"]
        self.run_each(
            request,
            held,
            lambda invoice: services.invoice_release(
                actor=request.user, invoice=invoice, note=note
            ),
            done="Released",
            describe=lambda invoice: f"Draft #{invoice.pk} ({invoice.customer})",
        )
        return self.done(request)

    @admin.action(description="Void unpaid invoices…", permissions=["change"])
    def void(self, request, queryset):
        unpaid = self.eligible(
            request, queryset.select_related("customer"), NEVER_PAID, what="finalized and unpaid"
        )
        if not unpaid:
            return self.done(request)
        form = VoidForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self.form_page(
                request,
                form,
                title="Void invoices",
                action="void",
                objects=unpaid,
                template="admin/invoicing/void.html",
                left_to_credit=[
                    (invoice, format_money(services.creditable_minor(invoice), invoice.currency))
                    for invoice in unpaid
                ],
                submit_label="Void",
            )
        reason = form.cleaned_data["reason"]
        self.run_each(
            request,
            unpaid,
            lambda invoice: services.invoice_void(
                actor=request.user, invoice=invoice, reason=reason
            ),
            done="Voided, each with a matching credit note",
        )
        return self.done(request)

    @admin.action(description="Issue a credit note…", permissions=["change"])
    def issue_credit_note(self, request, queryset):
        invoices = list(queryset.select_related("customer")[:2])
        if len(invoices) != 1:
            messages.error(request, "Select exactly one invoice to credit.")
            return self.done(request)
        invoice = invoices[0]
        form = CreditNoteForm(request.POST if "apply" in request.POST else None, invoice=invoice)
        if form.is_valid():
            try:
                note = services.credit_note_issue(
                    actor=request.user,
                    invoice=invoice,
                    reason=form.cleaned_data["reason"],
                    memo=form.cleaned_data["memo"],
                    lines=form.requests(),
                )
            except DomainError as exc:
                messages.error(request, f"{invoice}: {exc.message}")
            else:
                messages.success(
                    request,
                    f"Credit note {note.number} issued on {invoice}: "
                    f"{format_money(note.total_minor, invoice.currency)}.",
                )
                return self.done(request)
        return self.form_page(
            request,
            form,
            title=f"Credit invoice {invoice}",
            action="issue_credit_note",
            objects=[invoice],
            template="admin/invoicing/credit_note.html",
            invoice=invoice,
            invoice_total=format_money(invoice.total_minor, invoice.currency),
            left_to_credit=format_money(services.creditable_minor(invoice), invoice.currency),
            submit_label="Issue credit note",
        )

    @admin.action(description="Resync to Stripe", permissions=["change"])
    def resync_stripe(self, request, queryset):
        from .tasks import invoice_stripe_sync  # Celery tasks import the services

        finalized = self.eligible(
            request,
            queryset,
            [s for s in Status.values if s not in Invoice.EDITABLE],
            what="finalized",
        )
        for invoice in finalized:
            invoice_stripe_sync.delay(invoice.pk)
        if finalized:
            names = ", ".join(str(invoice) for invoice in finalized)
            messages.success(request, f"Stripe sync queued: {names}.")
        return self.done(request)


# --- Credit notes ------------------------------------------------------------------------------


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = ["invoice_line_position", "description", "amount"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice_line", "credit_note__invoice")

    @admin.display(description="Invoice line")
    def invoice_line_position(self, line):
        return line.invoice_line.position

    @admin.display(description="Amount")
    def amount(self, line):
        return format_money(line.amount_minor, line.credit_note.invoice.currency)


@admin.register(CreditNote)
class CreditNoteAdmin(ServiceAdmin):
    list_display = [
        "number",
        "customer",
        "invoice",
        "reason",
        "total",
        "issued_at",
        "issued_by",
        "stripe_credit_note_id",
    ]
    list_filter = ["reason"]
    list_select_related = ["customer", "invoice"]
    search_fields = ["number", "invoice__number", "customer__name", "customer__external_id"]
    date_hierarchy = "issued_at"
    fields = [
        "number",
        "customer",
        "invoice",
        "reason",
        "memo",
        "total",
        "issued_at",
        "issued_by",
        "stripe_credit_note_id",
        "stripe_synced_at",
    ]
    readonly_fields = fields
    inlines = [CreditNoteLineInline]

    @admin.display(description="Total", ordering="total_minor")
    def total(self, note):
        return format_money(note.total_minor, note.invoice.currency)


# --- Disputes ----------------------------------------------------------------------------------


@admin.register(Dispute)
class DisputeAdmin(ServiceAdmin):
    list_display = ["created_at", "customer", "invoice", "line", "status", "resolved_at"]
    list_filter = ["status"]
    list_select_related = ["customer", "invoice_line__invoice"]
    search_fields = ["customer__name", "customer__external_id", "invoice_line__invoice__number"]
    fields = [
        "customer",
        "invoice",
        "line",
        "line_amount",
        "events",
        "message",
        "opened_by",
        "created_at",
        "status",
        "resolution",
        "resolved_by",
        "resolved_at",
        "credit_note",
    ]
    readonly_fields = fields
    actions = ["accept", "reject"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("customer", "opened_by", "credit_note", "invoice_line__invoice")
        )

    def get_ordering(self, request):
        open_first = Case(
            When(status=Dispute.Status.OPEN, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        return [open_first.asc(), "-created_at"]

    @admin.display(description="Invoice")
    def invoice(self, dispute):
        return admin_link(dispute.invoice_line.invoice)

    @admin.display(description="Line")
    def line(self, dispute):
        line = dispute.invoice_line
        return f"{line.position}. {line.description}"

    @admin.display(description="Line amount")
    def line_amount(self, dispute):
        line = dispute.invoice_line
        text = format_money(line.amount_minor, line.invoice.currency)
        if line.meter_id:
            text += f" for {number(line.quantity)} units"
        return f"{text}, {span(line.period_start, line.period_end)} UTC"

    @admin.display(description="Usage events")
    def events(self, dispute):
        line = dispute.invoice_line
        if line.meter_id is None:
            return "— (not a usage line)"
        query = {
            "customer__id__exact": dispute.customer_id,
            "event_name": line.meter.code,
            "timestamp__gte": line.period_start.isoformat(),
            "timestamp__lt": line.period_end.isoformat(),
        }
        url = reverse("admin:metering_usageevent_changelist") + "?" + urlencode(query)
        return format_html('<a href="{}">The raw events behind this line</a>', url)

    def object_actions(self, request, dispute):
        if dispute.status != Dispute.Status.OPEN:
            return []
        return [("accept", "Accept (credit the line)"), ("reject", "Reject")]

    def _dispute_form(self, request, form, open_disputes, *, action: str, title: str, intro: str):
        return self.form_page(
            request,
            form,
            title=title,
            action=action,
            objects=open_disputes,
            template="admin/invoicing/dispute_action.html",
            intro=intro,
            submit_label=capfirst(action),
        )

    def _open(self, request, queryset):
        return self.eligible(
            request,
            queryset.select_related("customer", "invoice_line__invoice"),
            [Dispute.Status.OPEN],
            what="open",
        )

    @admin.action(description="Accept: credit the disputed lines…", permissions=["change"])
    def accept(self, request, queryset):
        open_disputes = self._open(request, queryset)
        if not open_disputes:
            return self.done(request)
        form = DisputeAcceptForm(
            request.POST if "apply" in request.POST else None, disputes=len(open_disputes)
        )
        if not form.is_valid():
            return self._dispute_form(
                request,
                form,
                open_disputes,
                action="accept",
                title="Accept disputes",
                intro="Accepting issues a credit note for the line (what is left of it, or "
                "the amount you give) and tells the customer your resolution.",
            )
        self.run_each(
            request,
            open_disputes,
            lambda dispute: services.dispute_accept(
                actor=request.user,
                dispute=dispute,
                resolution=form.cleaned_data["resolution"],
                amount_minor=form.cleaned_data["amount_minor"],
            ),
            done="Accepted",
            describe=lambda d: f"{d} with credit note {d.credit_note.number}",
        )
        return self.done(request)

    @admin.action(description="Reject disputes…", permissions=["change"])
    def reject(self, request, queryset):
        open_disputes = self._open(request, queryset)
        if not open_disputes:
            return self.done(request)
        form = DisputeRejectForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self._dispute_form(
                request,
                form,
                open_disputes,
                action="reject",
                title="Reject disputes",
                intro="Nothing is credited. The customer sees your resolution.",
            )
        self.run_each(
            request,
            open_disputes,
            lambda dispute: services.dispute_reject(
                actor=request.user, dispute=dispute, resolution=form.cleaned_data["resolution"]
            ),
            done="Rejected",
        )
        return self.done(request)

"""Invoices (with the held invoices page and the invoice actions) and credit notes."""

from collections.abc import Iterable
from decimal import Decimal

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from accounts.errors import DomainError

from .. import services
from ..currency import format_money
from ..models import CreditNote, CreditNoteLine, Invoice, InvoiceLine, InvoiceUsageCheck
from ._shared import BR, ReadOnlyInline, ServiceAdmin, admin_link, number, span
from .forms import CreditNoteForm, ReleaseForm, VoidForm

Status = Invoice.Status


def money(minor: int | None, currency: str) -> str:
    return "—" if minor is None else format_money(minor, currency)


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
        if invoice.status in Invoice.NEVER_PAID:
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
            request,
            queryset.select_related("customer"),
            Invoice.NEVER_PAID,
            what="finalized and unpaid",
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
        from ..tasks import invoice_stripe_sync  # Celery tasks import the services

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
        "stripe_last_error",
    ]
    readonly_fields = fields
    inlines = [CreditNoteLineInline]
    actions = ["resync_stripe"]

    @admin.action(description="Resync to Stripe", permissions=["change"])
    def resync_stripe(self, request, queryset):
        """Retry the push after a person dealt with a refusal (a sync skips synced notes)."""
        from ..tasks import credit_note_stripe_sync  # Celery tasks import the services

        unsynced = list(queryset.filter(stripe_credit_note_id=""))
        for note in unsynced:
            credit_note_stripe_sync.delay(note.pk)
        if unsynced:
            names = ", ".join(str(note) for note in unsynced)
            messages.success(request, f"Stripe sync queued: {names}.")
        else:
            messages.error(request, "The selected credit notes are in Stripe already.")
        return self.done(request)

    @admin.display(description="Total", ordering="total_minor")
    def total(self, note):
        return format_money(note.total_minor, note.invoice.currency)

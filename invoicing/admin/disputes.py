"""Disputes customers open on invoice lines, and the accept and reject actions."""

from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Case, IntegerField, Value, When
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from .. import services
from ..currency import format_money
from ..models import Dispute
from ._shared import ServiceAdmin, admin_link, number, span
from .forms import DisputeAcceptForm, DisputeRejectForm

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

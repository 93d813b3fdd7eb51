"""One invoice line: the raw events behind it, their CSV, and disputing it.

The events are the usage Events page's own: the same filter form, the same filtering
(``filtered_events``: the meter's code and property filters, one property, a date range),
the same keyset pages and the same streamed ``COPY`` export — narrowed here to the line:
its meter, its period ``[period_start, period_end)``, the invoice's customer, and the
events it counted (a usage line: the period's events that were on time; an adjustment for
late usage: the late ones). Voided events were never billed and are left out.
"""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.db.models import QuerySet
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from accounts.errors import DomainError
from accounts.forms import add_domain_error
from accounts.roles import Ability
from accounts.views.mixins import FORM_INVALID, wants_partial
from metering.models import UsageEvent
from metering.views import wants_fragment
from metering.views.events import PAGE_SIZE, filtered_events, page_of_events, stream_csv
from metering.views.forms import EventFilterForm

from .. import selectors, services
from ..charges import carried_from_previous
from ..forms import DisputeForm
from ..models import Invoice, InvoiceLine
from . import LineObjectView
from .display import EVENT_KINDS, line_row

PAGE = "invoicing/line_events.html"
PANEL = "metering/_events_panel.html"
DISPUTE_PAGE = "invoicing/dispute.html"
DISPUTE = "invoicing/_line_dispute.html"
FLASH = "accounts/_flash.html"


def late_window(invoice: Invoice) -> tuple[datetime | None, datetime | None]:
    """Receive times of the late events an invoice's adjustments carry: from what the
    invoice before it handed on (``carried_from_previous``, as period close read it) to the
    invoice's own cut-off."""
    if invoice.subscription_id is None:
        return None, invoice.late_usage_through
    key = (invoice.subscription_id, invoice.period_start)
    return carried_from_previous([key])[key].late_usage_through, invoice.late_usage_through


def line_events(form: EventFilterForm, *, membership, line: InvoiceLine) -> QuerySet[UsageEvent]:
    """The events the line counted, narrowed by a valid filter form (its meter is the
    line's), newest first."""
    late = line.kind == InvoiceLine.Kind.LATE_USAGE
    events = filtered_events(form, membership=membership).filter(
        customer_id=line.invoice.customer_id,
        timestamp__gte=line.period_start,
        timestamp__lt=line.period_end,
        voided_at__isnull=True,
        late=late,
    )
    if late:
        since, until = late_window(line.invoice)
        if since is not None:
            events = events.filter(received_at__gte=since)
        if until is not None:
            events = events.filter(received_at__lt=until)
    return events


class LineView(LineObjectView):
    # Where a dispute posted from this page returns without htmx: a name, never a URL
    # taken from the request, so never an open redirect.
    back = "invoice"

    def line_context(self, *, form: DisputeForm | None = None) -> dict:
        line = self.object
        disputes = (
            selectors.dispute_list(principal=self.membership)
            .filter(invoice_line=line)
            .select_related("opened_by")
        )
        row = line_row(
            line,
            currency=line.invoice.currency,
            invoice=line.invoice,
            disputes=disputes,
            can_dispute=self.can_dispute,
            form=form,
        )
        return {"invoice": line.invoice, "line": line, "row": row, "back": self.back}


class LineEventsMixin(LineView):
    back = "events"

    def filter_form(self) -> EventFilterForm:
        line = self.object
        if line.kind not in EVENT_KINDS or line.meter is None:
            raise Http404("This line is not measured from events.")
        data = self.request.GET.copy()
        data["meter"] = line.meter.code  # always the line's own meter
        return EventFilterForm(data, meters=[line.meter], zone=ZoneInfo(self.customer.timezone))

    def events_url(self) -> str:
        kwargs = {"invoice_id": self.object.invoice_id, "line_id": self.object.pk}
        return reverse("billing:line_events", kwargs=kwargs)

    def panel_context(self, form: EventFilterForm) -> dict:
        """The Events page's panel, narrowed to this line's events."""
        late = self.object.kind == InvoiceLine.Kind.LATE_USAGE
        return {
            "form": form,
            "rows": [],
            "page_size": PAGE_SIZE,
            "here": self.events_url(),
            "panel_id": "line-events-panel",
            "filter_label": "Filter the line's events",
            "grid_class": "line-filter-grid",
            "hide_meter_filter": True,
            "hide_status": True,
            "all_title": "All events of this line",
            "panel_note": "Late events: they arrived after their period was invoiced."
            if late
            else "Events that arrived after the invoice was final are billed as "
            "adjustments on a later invoice, not here.",
            "no_match_text": "No events of this line match these filters.",
            "empty_text": "This line counted no events.",
        }

    @staticmethod
    def filter_params(form: EventFilterForm) -> dict[str, str]:
        params = form.filter_params()
        params.pop("meter", None)
        return params


class LineEventsView(LineEventsMixin):
    def get(self, request, invoice_id, line_id):
        form = self.filter_form()
        context = self.panel_context(form)
        status = 200
        if form.is_valid():
            kwargs = {"invoice_id": invoice_id, "line_id": line_id}
            context.update(
                page_of_events(
                    line_events(form, membership=self.membership, line=self.object),
                    form,
                    here=context["here"],
                    params=self.filter_params(form),
                    export=reverse("billing:line_events_export", kwargs=kwargs),
                )
            )
        else:
            status = FORM_INVALID
        if wants_fragment(request):
            return self.render(PANEL, context, status=status)
        return self.render(PAGE, {**self.line_context(), **context}, status=status)


class LineEventsExportView(LineEventsMixin):
    def get(self, request, invoice_id, line_id):
        form = self.filter_form()
        if not form.is_valid():
            context = {**self.line_context(), **self.panel_context(form)}
            return self.render(PAGE, context, status=FORM_INVALID)
        line = self.object
        events = line_events(form, membership=self.membership, line=line)
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        number = re.sub(r"[^A-Za-z0-9_.-]+", "-", line.invoice.number or "").strip("-")
        response = StreamingHttpResponse(stream_csv(events), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="{number}-line-{line.position}-events-{stamp}.csv"'
        )
        response["Cache-Control"] = "no-store"
        return response


class LineDisputeView(LineView):
    """Dispute a line: the form (its own page without JavaScript) and the post."""

    required_ability = Ability.DISPUTE_INVOICES

    def back_url(self, back: str) -> str:
        kwargs = {"invoice_id": self.object.invoice_id, "line_id": self.object.pk}
        if back == "events" and self.object.kind in EVENT_KINDS:
            return reverse("billing:line_events", kwargs=kwargs)
        invoice = reverse("billing:invoice", kwargs={"invoice_id": self.object.invoice_id})
        return f"{invoice}#line-{self.object.pk}"

    def get(self, request, invoice_id, line_id):
        return self.render(DISPUTE_PAGE, self.line_context())

    def post(self, request, invoice_id, line_id):
        form = DisputeForm(request.POST, line_id=self.object.pk)
        if request.POST.get("back") == "events":
            self.back = "events"
        if form.is_valid():
            try:
                services.dispute_open(
                    actor=request.user,
                    invoice_line=self.object,
                    message=form.cleaned_data["message"],
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                text = (
                    f"Your dispute of “{self.object.description}” is open: "
                    "the answer will show here."
                )
                if wants_partial(request):
                    return self.render_fragments(
                        (DISPUTE, self.line_context()), (FLASH, {"flash": [("success", text)]})
                    )
                messages.success(request, text)
                return redirect(self.back_url(self.back))
        context = self.line_context(form=form)
        if wants_partial(request):
            return self.render(DISPUTE, context, status=FORM_INVALID)
        return self.render(DISPUTE_PAGE, context, status=FORM_INVALID)

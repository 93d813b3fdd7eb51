"""The Billing page: the plan, the current period with the invoice so far and where it is
heading, the invoices (paginated) and the customer's disputes.

The projection is the projected-cost hook's range (alerts: the period rated at the
forecast usage) when a provider answers for this period, else the straight-line
projection of the upcoming invoice.

Queries are bounded by the plan's price components (the upcoming invoice measures each
usage component, the projection forecasts each metered one), never by the number of
invoices or disputes.
"""

from django.core.paginator import Paginator
from django.utils import timezone

from metering.views import wants_fragment

from .. import selectors
from ..currency import format_money
from . import BillingView
from .display import invoice_rows, line_row

PAGE = "invoicing/billing.html"
INVOICES = "invoicing/_invoices.html"
INVOICES_PER_PAGE = 12
DISPUTES_SHOWN = 20


class BillingHomeView(BillingView):
    def invoices_context(self) -> dict:
        paginator = Paginator(selectors.invoice_list(principal=self.membership), INVOICES_PER_PAGE)
        page = paginator.get_page(self.request.GET.get("page"))
        return {"invoices_page": page, "invoices": invoice_rows(page.object_list)}

    def get(self, request):
        if wants_fragment(request):  # a page of the invoices list
            return self.render(INVOICES, self.invoices_context())
        projection = selectors.projected_invoice(customer=self.customer, now=timezone.now())
        upcoming = projection.upcoming if projection is not None else None
        context = {**self.invoices_context(), "upcoming": upcoming}
        if projection is not None:
            currency = projection.currency
            context.update(
                subscription=upcoming.subscription,
                upcoming_lines=[line_row(line, currency=currency) for line in upcoming.lines],
                upcoming_total=format_money(upcoming.total_minor, currency),
                projected_total=format_money(projection.projected_minor, currency),
                projected_by_forecast=projection.by_forecast,
                projected_range=projection.range_text,
            )
        disputes = selectors.dispute_list(principal=self.membership).select_related("opened_by")
        context["disputes"] = list(disputes[: DISPUTES_SHOWN + 1])
        context["more_disputes"] = len(context["disputes"]) > DISPUTES_SHOWN
        context["disputes"] = context["disputes"][:DISPUTES_SHOWN]
        return self.render(PAGE, context)

"""The customer portal's billing pages (namespace ``billing``).

Every page is a ``BillingView``: the member's role must allow seeing invoices, and the
invoice or line in the URL is looked up through ``PortalView``'s tenant choke point in the
invoices the member may see (``selectors.invoice_list``: never another customer's, never
a draft or a held one), so anything else answers 404 before a handler runs.
"""

from django.db.models import QuerySet

from accounts.roles import Ability, role_allows
from accounts.views.mixins import PortalView

from .. import selectors
from ..models import Invoice, InvoiceLine


class BillingView(PortalView):
    required_ability = Ability.VIEW_INVOICES

    @property
    def can_dispute(self) -> bool:
        return role_allows(self.membership.role, Ability.DISPUTE_INVOICES)

    def base_context(self) -> dict:
        return {"customer_tz": self.customer.timezone, "can_dispute": self.can_dispute}


class InvoiceObjectView(BillingView):
    """A page about one invoice (``invoice_id``) the member may see."""

    object_kwarg = "invoice_id"
    object: Invoice

    def get_object_queryset(self) -> QuerySet[Invoice]:
        return selectors.invoice_list(principal=self.membership).select_related(
            "subscription__plan_version__plan"
        )


class LineObjectView(BillingView):
    """A page about one line (``line_id``) of an invoice (``invoice_id``) the member may see."""

    object_kwarg = "line_id"
    object: InvoiceLine

    def get_object_queryset(self) -> QuerySet[InvoiceLine]:
        visible = selectors.invoice_list(principal=self.membership)
        return InvoiceLine.objects.filter(
            invoice__in=visible.values("pk"), invoice_id=self.kwargs["invoice_id"]
        ).select_related("invoice__customer", "meter")

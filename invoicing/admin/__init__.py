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

from .catalog import PlanAdmin, PlanVersionAdmin
from .disputes import DisputeAdmin
from .invoices import CreditNoteAdmin, InvoiceAdmin
from .subscriptions import SubscriptionAdmin

__all__ = [
    "CreditNoteAdmin",
    "DisputeAdmin",
    "InvoiceAdmin",
    "PlanAdmin",
    "PlanVersionAdmin",
    "SubscriptionAdmin",
]

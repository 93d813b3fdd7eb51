from .catalog import Interval, Plan, PlanVersion, PriceComponent
from .invoices import (
    CreditNote,
    CreditNoteLine,
    Dispute,
    DocumentSequence,
    Invoice,
    InvoiceLine,
    InvoiceUsageCheck,
)
from .stripe import StripeCustomer, StripeWebhookEvent
from .subscriptions import Subscription, SubscriptionPhase

__all__ = [
    "CreditNote",
    "CreditNoteLine",
    "Dispute",
    "DocumentSequence",
    "Interval",
    "Invoice",
    "InvoiceLine",
    "InvoiceUsageCheck",
    "Plan",
    "PlanVersion",
    "PriceComponent",
    "StripeCustomer",
    "StripeWebhookEvent",
    "Subscription",
    "SubscriptionPhase",
]

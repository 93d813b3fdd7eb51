"""Writes for invoicing: the catalog, subscriptions, period close and finalization.

Every function is keyword-only, runs in a transaction, and audits what it changes. The
functions live in one module per subdomain; import them from here.
"""

from .catalog import plan_create, plan_version_create
from .corrections import (
    CreditRequest,
    credit_note_issue,
    creditable_minor,
    dispute_accept,
    dispute_open,
    dispute_reject,
    invoice_void,
)
from .period_close import (
    invoice_finalize,
    invoice_rate,
    invoice_release,
    invoices_finalize_due,
    period_close,
    periods_close_due,
)
from .stripe_sync import (
    credit_note_stripe_sync,
    invoice_stripe_sync,
    stripe_customer_ensure,
    stripe_sync_pending,
)
from .stripe_webhooks import stripe_event_receive, stripe_event_verify
from .subscriptions import subscription_cancel, subscription_change_plan, subscription_create

__all__ = [
    "CreditRequest",
    "credit_note_issue",
    "credit_note_stripe_sync",
    "creditable_minor",
    "dispute_accept",
    "dispute_open",
    "dispute_reject",
    "invoice_finalize",
    "invoice_rate",
    "invoice_release",
    "invoice_stripe_sync",
    "invoice_void",
    "invoices_finalize_due",
    "period_close",
    "periods_close_due",
    "plan_create",
    "plan_version_create",
    "stripe_customer_ensure",
    "stripe_event_receive",
    "stripe_event_verify",
    "stripe_sync_pending",
    "subscription_cancel",
    "subscription_change_plan",
    "subscription_create",
]

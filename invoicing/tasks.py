"""Celery tasks for invoicing: thin, idempotent wrappers around services.

Both periodic jobs are safe to run twice and from several workers at once: period close
claims each period with a compare-and-swap, finalization locks each invoice row.
"""

from celery import shared_task

from . import services
from .stripe_gateway import StripeUnavailable


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def periods_close_due() -> int:
    return services.periods_close_due()


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def invoices_finalize_due() -> int:
    return services.invoices_finalize_due()


# Stripe sync: enqueued after commit by finalize, void and credit notes. Retried with backoff
# only while Stripe is unavailable (every attempt reuses the same idempotency keys); a refusal
# or a conflict is recorded on the invoice (stripe_last_error) for finance and not retried.
@shared_task(
    acks_late=True,
    autoretry_for=(StripeUnavailable,),
    retry_backoff=30,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=12,
    soft_time_limit=900,
    time_limit=960,
)
def invoice_stripe_sync(invoice_id: int) -> bool:
    """Push a finalized invoice to Stripe: one Stripe invoice however often this runs."""
    return services.invoice_stripe_sync(invoice_id=invoice_id) is not None


@shared_task(
    acks_late=True,
    autoretry_for=(StripeUnavailable,),
    retry_backoff=30,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=12,
    soft_time_limit=900,
    time_limit=960,
)
def credit_note_stripe_sync(credit_note_id: int) -> bool:
    """Push a credit note to Stripe (its invoice first if need be), once."""
    note = services.credit_note_stripe_sync(credit_note_id=credit_note_id)
    return bool(note and note.stripe_credit_note_id)


@shared_task(acks_late=True, expires=900)  # 1.5x a 10-minute schedule
def stripe_sync_sweep() -> int:
    """Re-enqueue syncs the after-commit enqueue lost (broker down, worker gone)."""
    invoice_ids, credit_note_ids = services.stripe_sync_pending()
    for invoice_id in invoice_ids:
        invoice_stripe_sync.delay(invoice_id)
    for credit_note_id in credit_note_ids:
        credit_note_stripe_sync.delay(credit_note_id)
    return len(invoice_ids) + len(credit_note_ids)

"""Celery tasks for invoicing: thin, idempotent wrappers around services.

Both periodic jobs are safe to run twice and from several workers at once: period close
claims each period with a compare-and-swap, finalization locks each invoice row.
"""

from celery import shared_task

from . import services


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def periods_close_due() -> int:
    return services.periods_close_due()


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def invoices_finalize_due() -> int:
    return services.invoices_finalize_due()

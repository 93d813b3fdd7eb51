"""Celery tasks for accounts: thin wrappers that take ids and call a service."""

from celery import shared_task

from . import services


@shared_task(
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
    expires=24 * 3600,
)
def send_invitation(membership_id: int) -> bool:
    """Email an invitation link. Safe to run twice: the service claims the send first."""
    return services.invitation_send(membership_id=membership_id)

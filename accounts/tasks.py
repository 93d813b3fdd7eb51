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


@shared_task(acks_late=True, expires=450)  # 1.5x the 5-minute schedule
def sweep_unsent_invitations() -> int:
    """Re-enqueue invitations whose email never went out (broker down at commit, worker lost).

    The enqueue after commit is the fast path; this sweep is what makes delivery certain.
    """
    membership_ids = services.invitations_unsent_ids()
    for membership_id in membership_ids:
        send_invitation.delay(membership_id)
    return len(membership_ids)

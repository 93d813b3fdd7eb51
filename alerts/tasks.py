"""Celery tasks of the alerts app: thin, idempotent calls into ``alerts.services``."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def reservations_release_expired() -> int:
    """Give back the units of cap reservations no usage consumed in time (safe twice)."""
    return services.reservations_release_expired()

"""Celery tasks for metering: thin, idempotent wrappers around services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def meter_rebuild(meter_id: int, version: int) -> bool:
    """Rebuild a meter's rollups for one definition version (a no-op if already done or
    superseded)."""
    return services.meter_rebuild(meter_id=meter_id, version=version)

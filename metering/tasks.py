"""Celery tasks for metering: thin, idempotent wrappers around services."""

from celery import shared_task

from . import reconciliation, services


# A 13-month rebuild over millions of events outlasts the global 300 s limit; it works a
# month per transaction and resumes cleanly if a newer definition supersedes it.
@shared_task(
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=4 * 3600,
    time_limit=4 * 3600 + 60,
)
def meter_rebuild(meter_id: int, version: int) -> bool:
    """Rebuild a meter's rollups for one definition version (a no-op if already done or
    superseded)."""
    return services.meter_rebuild(meter_id=meter_id, version=version)


# No retries: the next scheduled run (15 minutes later) resumes from the last succeeded
# run, so a failed one is re-checked anyway. Time limits above the global 300 s: a run
# after an outage has more late-touched hours to check.
@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def usage_reconcile() -> int | None:
    """The batch track: check recent and late-touched hours; the run's id, or ``None`` if
    another run was in progress."""
    run = reconciliation.usage_reconcile()
    return run.pk if run else None

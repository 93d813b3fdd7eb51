"""The batch track on a schedule, and rebuilds on demand.

``usage_reconcile`` runs every 15 minutes (Celery Beat). It recomputes, from the raw
events, the rollups of

* the recent hours (``METERING_RECONCILE_RECENT_HOURS``, default 3, the current hour
  included), for every customer, and
* the *late-touched* hours: hours before that window holding events received or voided
  since the previous succeeded run (less ``METERING_RECONCILE_MARGIN_MINUTES``, because an
  event's ``received_at`` is stamped before its batch commits),

and compares them with the real-time rollups through ``rollups_recompute``: the batch
value is authoritative, every difference becomes a ``UsageDiscrepancy`` and the rollup is
corrected, with one audit record per (customer, meter) corrected. Each checked slice is
its own transaction, so ingestion waits on at most one slice at a time.

Only one run works at a time (a session advisory lock); a second one started meanwhile
skips. A run that crashed leaves the last succeeded run as the place to resume from, so
its hours are checked again next time: checking twice finds nothing new.
"""

import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Customer
from accounts.services import Actor, audit_record

from . import sql
from .models import Meter, UsageDiscrepancy, UsageReconciliationRun
from .tracks import floor_hour, rollups_recompute

logger = logging.getLogger(__name__)

# Advisory lock (class, key) held by the one reconciliation allowed to run.
RECONCILE_LOCK = (7002, 0)
# A long stretch of late-touched hours is checked a day at a time, so ingestion for the
# meters involved never waits on one huge recompute.
MAX_SLICE = timedelta(hours=24)
# An audit record lists at most this many corrected rollups (the count is always exact).
AUDIT_MAX_VALUES = 100
ABANDONED = "Abandoned: its worker stopped before finishing; the next run checks its hours."

Run = UsageReconciliationRun


@contextmanager
def _only_run() -> Iterator[bool]:
    """Hold the reconciliation lock for the block; yields whether it was free."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", RECONCILE_LOCK)
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", RECONCILE_LOCK)


def usage_reconcile(*, now: datetime | None = None) -> UsageReconciliationRun | None:
    """Check recent and late-touched hours against the raw events; ``None`` if another
    run holds the lock."""
    now = now or timezone.now()
    recent_hours = settings.METERING_RECONCILE_RECENT_HOURS
    margin = timedelta(minutes=settings.METERING_RECONCILE_MARGIN_MINUTES)
    with _only_run() as acquired:
        if not acquired:
            logger.info("usage reconciliation skipped: another run is in progress")
            return None
        # Whoever left a run "running" no longer holds the lock: that worker died.
        Run.objects.filter(status=Run.Status.RUNNING).update(
            status=Run.Status.FAILED, finished_at=now, error=ABANDONED
        )
        previous = Run.objects.filter(status=Run.Status.SUCCEEDED).order_by("-started_at").first()
        window_end = floor_hour(now) + timedelta(hours=1)
        window_start = window_end - timedelta(hours=recent_hours)
        scanned_since = (previous.started_at if previous else window_start) - margin
        run = Run.objects.create(
            started_at=now,
            window_start=window_start,
            window_end=window_end,
            scanned_since=scanned_since,
        )
        corrected: list[UsageDiscrepancy] = []
        try:
            _reconcile(run, corrected)
        except BaseException as exc:  # incl. the soft time limit: the run must not stay "running"
            try:  # slices committed before the failure stay corrected: audit them too
                _audit_corrections(run, corrected)
            except Exception:
                logger.exception("usage reconciliation %s: auditing its corrections failed", run.pk)
            run.status, run.finished_at = Run.Status.FAILED, timezone.now()
            run.error = f"{type(exc).__name__}: {exc}"[:2000]
            run.save()
            raise
        _audit_corrections(run, corrected)
        run.status, run.finished_at = Run.Status.SUCCEEDED, timezone.now()
        run.save()
        if run.discrepancies_found:
            logger.warning(
                "usage reconciliation %s corrected %s discrepancies",
                run.pk,
                run.discrepancies_found,
            )
        return run


def _reconcile(run: UsageReconciliationRun, corrected: list[UsageDiscrepancy]) -> None:
    """Check every slice; ``corrected`` collects the discrepancies of committed slices."""

    def check(meters, start, end, customer_ids=None):
        found, rows = _check_slice(meters, start, end, customer_ids)
        run.discrepancies_found += len(found)
        run.rollups_corrected += rows
        corrected.extend(found)

    recent = [
        run.window_start + timedelta(hours=i)
        for i in range(int((run.window_end - run.window_start) / timedelta(hours=1)))
    ]
    meters = list(
        Meter.objects.filter(is_active=True, rebuild_status=Meter.RebuildStatus.IDLE).order_by("pk")
    )
    late = _late_touched(run, [m.code for m in meters]) if meters else {}
    run.late_hours_checked = sum(len(hours) for _, hours in late.values())
    run.hours_checked = len(recent) + run.late_hours_checked
    if not meters:
        return
    for hour in recent:
        check(meters, hour, hour + timedelta(hours=1))
    by_code = {m.code: m for m in meters}
    for customer_id, (codes, hours) in sorted(late.items()):
        customer_meters = [by_code[code] for code in sorted(codes)]
        for start, end in _slices(sorted(hours)):
            check(customer_meters, start, end, customer_ids=[customer_id])


def _late_touched(
    run: UsageReconciliationRun, codes: list[str]
) -> dict[int, tuple[set[str], set[datetime]]]:
    """Per customer: the meter codes and hours (before the recent window) of events
    received or voided since ``scanned_since``. Late events never reached the rollups."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT customer_id, event_name, date_trunc('hour', "timestamp", 'UTC') AS hour
            FROM metering_usageevent
            WHERE received_at >= %(since)s AND "timestamp" < %(window_start)s
              AND NOT late AND event_name = ANY(%(codes)s::text[])
            UNION
            SELECT customer_id, event_name, date_trunc('hour', "timestamp", 'UTC') AS hour
            FROM metering_usageevent
            WHERE voided_at >= %(since)s AND "timestamp" < %(window_start)s
              AND NOT late AND event_name = ANY(%(codes)s::text[])
            """,
            {"since": run.scanned_since, "window_start": run.window_start, "codes": codes},
        )
        rows = cursor.fetchall()
    touched: dict[int, tuple[set[str], set[datetime]]] = defaultdict(lambda: (set(), set()))
    for customer_id, code, hour in rows:
        touched[customer_id][0].add(code)
        touched[customer_id][1].add(hour)
    return dict(touched)


def _slices(hours: list[datetime]) -> Iterator[tuple[datetime, datetime]]:
    """Runs of consecutive hours as ``[start, end)``, none longer than ``MAX_SLICE``."""
    start = end = None
    for hour in hours:
        if start is not None and hour == end and end - start < MAX_SLICE:
            end = hour + timedelta(hours=1)
            continue
        if start is not None:
            yield start, end
        start, end = hour, hour + timedelta(hours=1)
    if start is not None:
        yield start, end


@transaction.atomic
def _check_slice(
    meters: list[Meter], start: datetime, end: datetime, customer_ids: list[int] | None
) -> tuple[list[UsageDiscrepancy], int]:
    """Recompute one slice, correcting it; its discrepancies and the rows corrected."""
    # A meter edited since the run began is its rebuild's business: a new definition
    # gives new numbers, which are not drift. The row lock keeps edits out until commit.
    meters = list(
        Meter.objects.select_for_update(no_key=True)
        .filter(
            pk__in=[m.pk for m in meters], is_active=True, rebuild_status=Meter.RebuildStatus.IDLE
        )
        .order_by("pk")
    )
    if not meters:
        return [], 0
    with connection.cursor() as cursor:
        # Taken before reading the high-water mark: anyone else recording discrepancies
        # for these meters has committed by then (the recompute takes the lock again).
        cursor.execute(
            sql.LOCK_METERS_EXCLUSIVE,
            {"lock_class": sql.ROLLUP_LOCK_CLASS, "meter_ids": [m.pk for m in meters]},
        )
        cursor.execute("SELECT coalesce(max(id), 0) FROM metering_usagediscrepancy")
        high_water = cursor.fetchone()[0]
    result = rollups_recompute(
        meters=meters, start=start, end=end, customer_ids=customer_ids, record_discrepancies=True
    )
    if not result.discrepancies:
        return [], 0
    found = list(UsageDiscrepancy.objects.filter(pk__gt=high_water, meter__in=meters))
    return found, result.rollups_corrected + result.unique_keys_corrected


@transaction.atomic
def _audit_corrections(run: UsageReconciliationRun, found: list[UsageDiscrepancy]) -> None:
    """One audit record per (customer, meter) for the whole run: which hours, how many
    differences, the rollups as they were and as corrected."""
    groups: dict[tuple[int, int], list[UsageDiscrepancy]] = defaultdict(list)
    for discrepancy in sorted(
        found, key=lambda d: (d.customer_id, d.meter_id, d.hour, d.dimensions, d.pk)
    ):
        groups[(discrepancy.customer_id, discrepancy.meter_id)].append(discrepancy)
    customers = Customer.objects.in_bulk({customer_id for customer_id, _ in groups})
    meters = Meter.objects.in_bulk({meter_id for _, meter_id in groups})
    for (customer_id, meter_id), rows in sorted(groups.items()):
        meter = meters[meter_id]
        shown = rows[:AUDIT_MAX_VALUES]
        audit_record(
            actor=None,
            action="usage.corrected",
            obj=meter,
            customer=customers[customer_id],
            before={
                "rollups": [
                    {
                        "hour": d.hour.isoformat(),
                        "dimensions": d.dimensions,
                        "value": d.realtime_value,
                    }
                    for d in shown
                ]
            },
            after={
                "reconciliation_run": run.pk,
                "meter": meter.code,
                "hours": sorted({d.hour.isoformat() for d in rows}),
                "discrepancies": len(rows),
                "truncated": len(rows) > len(shown),
                "rollups": [
                    {"hour": d.hour.isoformat(), "dimensions": d.dimensions, "value": d.batch_value}
                    for d in shown
                ],
            },
        )


# --- Rebuild on demand --------------------------------------------------------------------

# A rebuild "running" for longer than this lost its worker (task time limits are far lower).
STALE_REBUILD = timedelta(hours=1)


@transaction.atomic
def meter_rebuild_request(*, actor: Actor, meter: Meter) -> bool:
    """Queue a rebuild of the meter's current definition from the raw events.

    Refused (``False``) while a rebuild is running, unless that one is stale. The rollups
    stay as they are until the rebuild replaces them month by month.
    """
    from .tasks import meter_rebuild  # the tasks module imports this one

    meter = Meter.objects.select_for_update().get(pk=meter.pk)
    running = meter.rebuild_status == Meter.RebuildStatus.RUNNING
    if running and (meter.rebuild_started_at or timezone.now()) > timezone.now() - STALE_REBUILD:
        return False
    before = {"rebuild_status": meter.rebuild_status, "rebuild_progress": meter.rebuild_progress}
    meter.rebuild_status, meter.rebuild_progress = Meter.RebuildStatus.QUEUED, 0
    meter.save(update_fields=["rebuild_status", "rebuild_progress", "updated_at"])
    audit_record(
        actor=actor,
        action="meter.rebuild_requested",
        obj=meter,
        customer=None,
        before=before,
        after={"rebuild_status": meter.rebuild_status, "version": meter.definition_version},
    )
    meter_id, version = meter.pk, meter.definition_version
    transaction.on_commit(lambda: meter_rebuild.delay(meter_id, version))
    return True

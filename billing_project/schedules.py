"""Every periodic task, declared in one place and synced into django-celery-beat.

``manage.py sync_platform`` (run by the demo and by every deploy) calls
``periodic_tasks_sync()``, which upserts each entry by name with ``update_or_create``. The
schedule tables are never emptied: an entry we created earlier and no longer declare is
disabled, not deleted, so its run history stays browsable in the admin.

To add a job: append a ``PeriodicEntry`` to ``SCHEDULE`` with its queue; ``expires`` defaults
to 1.5x the interval so a backlog after an outage does not run the same job many times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction

# Marks rows this module owns; rows created by hand in the admin are left alone.
MANAGED_DESCRIPTION = "Declared in billing_project/schedules.py; sync_platform keeps it in step."


@dataclass(frozen=True)
class Crontab:
    minute: str = "*"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    timezone: str = "UTC"


@dataclass(frozen=True)
class PeriodicEntry:
    name: str
    task: str
    queue: str
    every: timedelta | None = None
    crontab: Crontab | None = None
    # Seconds after which an unstarted run is dropped; default 1.5x the interval.
    expires: int | None = None
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.every is None) == (self.crontab is None):
            raise ValueError(f"{self.name}: give exactly one of every= or crontab=")
        if self.crontab is not None and self.expires is None:
            raise ValueError(f"{self.name}: a crontab entry needs an explicit expires=")

    @property
    def expire_seconds(self) -> int:
        if self.expires is not None:
            return self.expires
        return int(self.every.total_seconds() * 1.5)


SCHEDULE: list[PeriodicEntry] = [
    PeriodicEntry(
        name="accounts: sweep unsent invitations",
        task="accounts.tasks.sweep_unsent_invitations",
        every=timedelta(minutes=5),
        queue="notifications",
    ),
    PeriodicEntry(
        name="metering: reconcile usage (batch track)",
        task="metering.tasks.usage_reconcile",
        every=timedelta(minutes=15),
        queue="ingest",
    ),
    PeriodicEntry(
        name="invoicing: close ended billing periods",
        task="invoicing.tasks.periods_close_due",
        every=timedelta(minutes=5),
        queue="billing",
    ),
    PeriodicEntry(
        name="invoicing: finalize drafts after their grace period",
        task="invoicing.tasks.invoices_finalize_due",
        every=timedelta(minutes=5),
        queue="billing",
    ),
    PeriodicEntry(
        name="invoicing: re-send Stripe syncs that were never enqueued",
        task="invoicing.tasks.stripe_sync_sweep",
        every=timedelta(minutes=10),
        queue="billing",
    ),
    PeriodicEntry(
        name="alerts: give back the units of expired cap reservations",
        task="alerts.tasks.reservations_release_expired",
        every=timedelta(minutes=1),
        queue="alerts",
    ),
    PeriodicEntry(
        name="alerts: evaluate velocity, anomaly and predictive rules",
        task="alerts.tasks.rules_evaluate",
        every=timedelta(minutes=15),
        queue="alerts",
    ),
    PeriodicEntry(
        name="alerts: apply plans' default caps and rules to their subscribers",
        task="alerts.tasks.plan_defaults_apply",
        every=timedelta(minutes=10),
        queue="alerts",
    ),
    PeriodicEntry(
        name="alerts: send due and lost deliveries",
        task="alerts.tasks.deliveries_sweep",
        every=timedelta(seconds=30),
        queue="notifications",
    ),
]


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    def __str__(self):
        parts = [f"{len(v)} {k}" for k, v in vars(self).items()]
        return "periodic tasks: " + ", ".join(parts)


def _interval(every: timedelta):
    from django_celery_beat.models import IntervalSchedule

    seconds = int(every.total_seconds())
    if seconds < 1 or seconds != every.total_seconds():
        raise ValueError(f"Intervals are whole seconds, not {every}.")
    # The largest whole unit reads best in the admin ("every 5 minutes").
    units = (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))
    period, size = next((name, size) for name, size in units if seconds % size == 0)
    every_n = seconds // size
    found = IntervalSchedule.objects.filter(every=every_n, period=period).order_by("pk").first()
    return found or IntervalSchedule.objects.create(every=every_n, period=period)


def _crontab(spec: Crontab):
    from django_celery_beat.models import CrontabSchedule

    values = {
        "minute": spec.minute,
        "hour": spec.hour,
        "day_of_week": spec.day_of_week,
        "day_of_month": spec.day_of_month,
        "month_of_year": spec.month_of_year,
        "timezone": spec.timezone,
    }
    found = CrontabSchedule.objects.filter(**values).order_by("pk").first()
    return found or CrontabSchedule.objects.create(**values)


def _desired(entry: PeriodicEntry) -> dict:
    return {
        "task": entry.task,
        "interval": _interval(entry.every) if entry.every else None,
        "crontab": _crontab(entry.crontab) if entry.crontab else None,
        "solar": None,
        "clocked": None,
        "one_off": False,
        "queue": entry.queue,
        "expire_seconds": entry.expire_seconds,
        "args": "[]",
        "kwargs": json.dumps(entry.kwargs, sort_keys=True),
        "enabled": True,
        "description": MANAGED_DESCRIPTION,
    }


def _differs(task, desired: dict) -> bool:
    for name, value in desired.items():
        current = getattr(task, name)
        if name == "kwargs":
            current = json.dumps(json.loads(current or "{}"), sort_keys=True)
        if current != value:
            return True
    return False


@transaction.atomic
def periodic_tasks_sync(entries: list[PeriodicEntry] | None = None) -> SyncReport:
    """Make django-celery-beat's table match ``entries`` (default: ``SCHEDULE``).

    Idempotent: a second run writes nothing, so beat does not reload needlessly.
    """
    from django_celery_beat.models import PeriodicTask

    entries = SCHEDULE if entries is None else entries
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError("Periodic task names must be unique.")
    report = SyncReport()
    for entry in entries:
        desired = _desired(entry)
        existing = PeriodicTask.objects.filter(name=entry.name).first()
        if existing is not None and not _differs(existing, desired):
            report.unchanged.append(entry.name)
            continue
        _, created = PeriodicTask.objects.update_or_create(name=entry.name, defaults=desired)
        (report.created if created else report.updated).append(entry.name)
    stale = PeriodicTask.objects.filter(description=MANAGED_DESCRIPTION, enabled=True).exclude(
        name__in=names
    )
    for task in stale:
        # save(), not a queryset update(): beat notices changes through the save signal.
        task.enabled = False
        task.save()
        report.disabled.append(task.name)
    return report

from datetime import timedelta

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from billing_project.schedules import (
    MANAGED_DESCRIPTION,
    SCHEDULE,
    Crontab,
    PeriodicEntry,
    periodic_tasks_sync,
)

pytestmark = pytest.mark.django_db

NIGHTLY = PeriodicEntry(
    name="test: nightly",
    task="accounts.tasks.sweep_unsent_invitations",
    crontab=Crontab(minute="15", hour="2"),
    queue="billing",
    expires=3600,
)


def test_sync_creates_every_declared_entry_on_its_queue_with_expiry():
    report = periodic_tasks_sync()

    assert report.created == [entry.name for entry in SCHEDULE]
    sweep = PeriodicTask.objects.get(name="accounts: sweep unsent invitations")
    assert sweep.task == "accounts.tasks.sweep_unsent_invitations"
    assert (sweep.interval.every, sweep.interval.period) == (5, "minutes")
    assert sweep.queue == "notifications"
    assert sweep.expire_seconds == 450  # 1.5x the 5-minute interval
    assert sweep.enabled
    assert sweep.description == MANAGED_DESCRIPTION


def test_second_sync_writes_nothing():
    periodic_tasks_sync([*SCHEDULE, NIGHTLY])
    before = {t.name: t.date_changed for t in PeriodicTask.objects.all()}

    report = periodic_tasks_sync([*SCHEDULE, NIGHTLY])

    assert report.created == report.updated == report.disabled == []
    assert sorted(report.unchanged) == sorted(e.name for e in [*SCHEDULE, NIGHTLY])
    assert {t.name: t.date_changed for t in PeriodicTask.objects.all()} == before
    assert IntervalSchedule.objects.count() == len({e.every for e in SCHEDULE if e.every})
    assert CrontabSchedule.objects.filter(minute="15", hour="2").count() == 1


def test_an_interval_edited_in_the_admin_is_put_back():
    periodic_tasks_sync()
    sweep = PeriodicTask.objects.get(name="accounts: sweep unsent invitations")
    sweep.interval = IntervalSchedule.objects.create(every=1, period="hours")
    sweep.queue = "default"
    sweep.enabled = False
    sweep.save()

    report = periodic_tasks_sync()

    assert report.updated == ["accounts: sweep unsent invitations"]
    sweep.refresh_from_db()
    assert (sweep.interval.every, sweep.interval.period) == (5, "minutes")
    assert sweep.queue == "notifications"
    assert sweep.enabled


def test_a_changed_declaration_updates_the_row_in_place():
    periodic_tasks_sync([NIGHTLY])
    row_id = PeriodicTask.objects.get(name=NIGHTLY.name).pk
    every_ten = PeriodicEntry(
        name=NIGHTLY.name, task=NIGHTLY.task, every=timedelta(minutes=10), queue="billing"
    )

    periodic_tasks_sync([every_ten])

    row = PeriodicTask.objects.get(name=NIGHTLY.name)
    assert row.pk == row_id
    assert row.crontab is None
    assert (row.interval.every, row.interval.period) == (10, "minutes")
    assert row.expire_seconds == 900


def test_an_entry_no_longer_declared_is_disabled_not_deleted():
    periodic_tasks_sync([*SCHEDULE, NIGHTLY])

    report = periodic_tasks_sync(SCHEDULE)

    assert report.disabled == [NIGHTLY.name]
    nightly = PeriodicTask.objects.get(name=NIGHTLY.name)
    assert not nightly.enabled
    assert PeriodicTask.objects.get(name="accounts: sweep unsent invitations").enabled


def test_tasks_created_by_hand_in_the_admin_are_left_alone():
    every_hour = IntervalSchedule.objects.create(every=1, period="hours")
    PeriodicTask.objects.create(
        name="ops: one-off backfill",
        task="accounts.tasks.sweep_unsent_invitations",
        interval=every_hour,
    )

    report = periodic_tasks_sync()

    assert report.disabled == []
    assert PeriodicTask.objects.get(name="ops: one-off backfill").enabled


def test_an_entry_needs_exactly_one_kind_of_schedule():
    with pytest.raises(ValueError, match="exactly one"):
        PeriodicEntry(name="x", task="t", queue="default")
    with pytest.raises(ValueError, match="exactly one"):
        PeriodicEntry(
            name="x", task="t", queue="default", every=timedelta(minutes=1), crontab=Crontab()
        )


def test_every_declared_task_exists_and_routes_to_a_known_queue():
    from billing_project.celery import QUEUES, app

    app.loader.import_default_modules()
    for entry in SCHEDULE:
        assert entry.task in app.tasks, entry.task
        assert entry.queue in QUEUES


def test_sync_platform_command_creates_staff_groups_and_schedule(capsys):
    from django.contrib.auth.models import Group

    call_command("sync_platform")

    assert set(Group.objects.values_list("name", flat=True)) >= {"finance", "csm", "support"}
    assert PeriodicTask.objects.filter(
        name="accounts: sweep unsent invitations", enabled=True
    ).exists()
    assert f"periodic tasks: {len(SCHEDULE)} created" in capsys.readouterr().out

"""The batch track finds drift between the real-time rollups and the raw events."""

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import AuditLog
from billing_project.schedules import SCHEDULE
from metering import reconciliation, services, tasks
from metering.ingest import events_ingest
from metering.models import (
    Meter,
    UsageDiscrepancy,
    UsageReconciliationRun,
    UsageRollup,
    UsageUniqueValue,
)
from metering.selectors import usage_total
from metering.tracks import floor_hour
from tests.metering.factories import (
    MeterFactory,
    api_calls_meter,
    data_meter,
    event,
    seats_meter,
    users_meter,
)

pytestmark = pytest.mark.django_db

Run = UsageReconciliationRun


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def recent_hour(now):
    """An hour inside the recent window that is complete (no edge effects)."""
    return floor_hour(now) - timedelta(hours=1)


def ingest(*events):
    result = events_ingest(events=list(events))
    assert result.accepted == len(events), [r for r in result.results if r.status != "accepted"]
    return result


def rollup(customer, meter, hour, **dims):
    return UsageRollup.objects.get(customer=customer, meter=meter, hour=hour, **dims)


def drift_run(**kwargs):
    run = reconciliation.usage_reconcile(**kwargs)
    assert run is not None and run.status == Run.Status.SUCCEEDED
    return run


def test_an_edited_count_rollup_is_found_corrected_and_audited(customer_a, recent_hour):
    meter = api_calls_meter()
    ts = iso(recent_hour + timedelta(minutes=10))
    ingest(*(event(customer_a, f"k{i}", ts=ts, endpoint="/v1", region="eu") for i in range(3)))
    row = rollup(customer_a, meter, recent_hour)
    UsageRollup.objects.filter(pk=row.pk).update(event_count=10)  # behind the system's back

    run = drift_run()

    discrepancy = UsageDiscrepancy.objects.get()
    assert (discrepancy.customer, discrepancy.meter, discrepancy.hour) == (
        customer_a,
        meter,
        recent_hour,
    )
    assert discrepancy.dimensions == ["/v1", "eu"]
    assert discrepancy.realtime_value["event_count"] == 10
    assert discrepancy.batch_value["event_count"] == 3
    assert rollup(customer_a, meter, recent_hour).event_count == 3
    assert usage_total(
        customer=customer_a,
        meter=meter,
        start=recent_hour,
        end=recent_hour + timedelta(hours=1),
    ) == Decimal(3)
    assert (run.discrepancies_found, run.rollups_corrected) == (1, 1)

    audit = AuditLog.objects.get(action="usage.corrected")
    assert audit.customer == customer_a
    assert (audit.object_type, audit.object_id) == ("metering.meter", str(meter.pk))
    assert audit.actor_label == "system"
    assert audit.after["hours"] == [recent_hour.isoformat()]
    assert audit.after["discrepancies"] == 1
    assert audit.after["reconciliation_run"] == run.pk
    assert audit.before["rollups"][0]["value"]["event_count"] == 10
    assert audit.after["rollups"][0]["value"]["event_count"] == 3


@pytest.mark.parametrize(
    ("make_meter", "properties", "column", "tampered", "expected"),
    [
        (data_meter, [{"gb": "1.5"}, {"gb": 2}], "value_sum", Decimal("9"), Decimal("3.5")),
        (
            lambda: MeterFactory(code="peak", aggregation="max", value_property="v"),
            [{"v": 4}, {"v": 9}],
            "value_max",
            Decimal("1"),
            Decimal("9"),
        ),
        (seats_meter, [{"seats": 5}, {"seats": 7}], "latest_value", Decimal("5"), Decimal("7")),
    ],
    ids=["sum", "max", "latest"],
)
def test_an_edited_value_rollup_is_put_back(
    customer_a, recent_hour, make_meter, properties, column, tampered, expected
):
    meter = make_meter()
    for i, props in enumerate(properties):
        ts = iso(recent_hour + timedelta(minutes=5 + i))
        ingest(event(customer_a, f"v{i}", name=meter.code, ts=ts, **props))
    UsageRollup.objects.filter(meter=meter).update(**{column: tampered})

    run = drift_run()

    discrepancy = UsageDiscrepancy.objects.get(meter=meter)
    assert Decimal(discrepancy.realtime_value[column]) == tampered
    assert Decimal(discrepancy.batch_value[column]) == expected
    assert getattr(rollup(customer_a, meter, recent_hour), column) == expected
    assert run.discrepancies_found == 1


def test_a_deleted_unique_value_is_found_and_restored(customer_a, recent_hour):
    meter = users_meter()
    ts = iso(recent_hour + timedelta(minutes=1))
    ingest(
        *(
            event(customer_a, f"u{i}", name=meter.code, ts=ts, user_id=u)
            for i, u in enumerate(["ann", "bob", "cy", "bob"])
        )
    )
    UsageUniqueValue.objects.filter(meter=meter, value="cy").delete()
    hour_end = recent_hour + timedelta(hours=1)
    assert usage_total(customer=customer_a, meter=meter, start=recent_hour, end=hour_end) == 2

    drift_run()

    discrepancy = UsageDiscrepancy.objects.get(meter=meter)
    assert discrepancy.realtime_value == {"distinct": 2}
    assert discrepancy.batch_value == {"distinct": 3}
    assert usage_total(customer=customer_a, meter=meter, start=recent_hour, end=hour_end) == 3


def test_a_bogus_rollup_for_an_hour_without_events_is_removed(customer_a, recent_hour):
    meter = api_calls_meter()
    UsageRollup.objects.create(
        customer=customer_a, meter=meter, hour=recent_hour, dimensions=["/x", "us"], event_count=5
    )

    drift_run()

    discrepancy = UsageDiscrepancy.objects.get()
    assert discrepancy.realtime_value["event_count"] == 5
    assert discrepancy.batch_value is None
    assert not UsageRollup.objects.exists()


def test_a_second_run_finds_nothing_new(customer_a, customer_b, recent_hour):
    meter = api_calls_meter()
    ts = iso(recent_hour + timedelta(minutes=30))
    ingest(event(customer_a, "a", ts=ts), event(customer_b, "b", ts=ts))
    UsageRollup.objects.filter(customer=customer_b).update(event_count=0)

    first = drift_run()
    second = drift_run()

    assert first.discrepancies_found == 1
    assert second.discrepancies_found == 0
    assert UsageDiscrepancy.objects.count() == 1
    assert AuditLog.objects.filter(action="usage.corrected").count() == 1
    assert rollup(customer_b, meter, recent_hour).event_count == 1


def test_one_audit_per_customer_and_meter_lists_every_hour_corrected_in_the_run(
    customer_a, customer_b, recent_hour, now
):
    meter = api_calls_meter()
    earlier_hour = recent_hour - timedelta(hours=1)
    old_hour = floor_hour(now) - timedelta(days=1)  # outside the window, touched just now
    for i, hour in enumerate([recent_hour, earlier_hour, old_hour]):
        ingest(event(customer_a, f"a{i}", ts=iso(hour)), event(customer_b, f"b{i}", ts=iso(hour)))
    UsageRollup.objects.filter(customer=customer_a).update(event_count=3)
    UsageRollup.objects.filter(customer=customer_b, hour=recent_hour).update(event_count=0)

    run = drift_run()

    assert run.discrepancies_found == 4
    audits = AuditLog.objects.filter(action="usage.corrected").order_by("pk")
    assert [(a.customer, a.after["discrepancies"]) for a in audits] == [
        (customer_a, 3),
        (customer_b, 1),
    ]
    assert audits[0].after["hours"] == sorted(
        h.isoformat() for h in [recent_hour, earlier_hour, old_hour]
    )
    assert audits[1].after["hours"] == [recent_hour.isoformat()]
    assert not audits[0].after["truncated"]
    assert {r["value"]["event_count"] for r in audits[0].before["rollups"]} == {3}
    assert {r["value"]["event_count"] for r in audits[0].after["rollups"]} == {1}
    assert meter.pk == int(audits[0].object_id)


def test_clean_rollups_produce_no_discrepancy(customer_a, recent_hour):
    api_calls_meter()
    data_meter()
    users_meter()
    seats_meter()
    ts = iso(recent_hour + timedelta(minutes=2))
    ingest(
        event(customer_a, "1", ts=ts, endpoint="/a", region="eu"),
        event(customer_a, "2", name="data_processed", ts=ts, gb="0.000000000001"),
        event(customer_a, "3", name="user_active", ts=ts, user_id=42),
        event(customer_a, "4", name="active_seats", ts=ts, seats=3),
    )

    run = drift_run()

    assert run.discrepancies_found == 0
    assert run.hours_checked == 3  # the recent window, nothing late
    assert not UsageDiscrepancy.objects.exists()


def test_late_touched_hours_outside_the_recent_window_are_checked(customer_a, settings, now):
    settings.METERING_RECONCILE_MARGIN_MINUTES = 0
    meter = api_calls_meter()
    old_hour = floor_hour(now) - timedelta(days=2)
    untouched_hour = old_hour - timedelta(hours=5)
    ingest(event(customer_a, "old-untouched", ts=iso(untouched_hour)))
    first = drift_run()  # picks up everything received so far
    assert first.late_hours_checked == 1

    # Since the first run: an event for a two-day-old hour arrives (a backfill), and both
    # that hour's and an untouched old hour's rollups drift.
    ingest(event(customer_a, "backfill", ts=iso(old_hour + timedelta(minutes=3))))
    UsageRollup.objects.filter(meter=meter).update(event_count=40)

    second = drift_run()

    assert second.window_start > old_hour
    assert second.late_hours_checked == 1
    assert second.hours_checked == 3 + 1
    assert list(UsageDiscrepancy.objects.values_list("hour", flat=True)) == [old_hour]
    assert rollup(customer_a, meter, old_hour).event_count == 1
    # Untouched since the last run: not this job's to look at (the rebuild's, if needed).
    assert rollup(customer_a, meter, untouched_hour).event_count == 40


def test_hours_of_events_voided_since_the_last_run_are_checked(customer_a, settings, now):
    settings.METERING_RECONCILE_MARGIN_MINUTES = 0
    meter = data_meter()
    old_hour = floor_hour(now) - timedelta(days=3)
    ts = iso(old_hour + timedelta(minutes=20))
    ingest(
        event(customer_a, "keep", name=meter.code, ts=ts, gb=2),
        event(customer_a, "drop", name=meter.code, ts=ts, gb=5),
    )
    drift_run()
    services.events_void(actor=None, customer=customer_a, idempotency_keys=["drop"], reason="dup")
    UsageRollup.objects.filter(meter=meter).update(value_sum=Decimal("7"))  # drift after the void

    run = drift_run()

    assert run.late_hours_checked == 1
    discrepancy = UsageDiscrepancy.objects.get()
    assert discrepancy.hour == old_hour
    assert Decimal(discrepancy.batch_value["value_sum"]) == 2
    assert rollup(customer_a, meter, old_hour).value_sum == 2


def test_first_run_without_history_scans_from_the_window_start(now):
    run = drift_run(now=now)

    assert run.window_end == floor_hour(now) + timedelta(hours=1)
    assert run.window_start == run.window_end - timedelta(hours=3)
    assert run.scanned_since == run.window_start - timedelta(minutes=10)
    assert run.finished_at is not None


def test_the_next_run_resumes_from_the_last_succeeded_run(now):
    first = drift_run(now=now - timedelta(minutes=30))
    Run.objects.create(
        started_at=now - timedelta(minutes=15),
        window_start=now,
        window_end=now,
        scanned_since=now,
        status=Run.Status.FAILED,
    )

    run = drift_run(now=now)

    assert run.scanned_since == first.started_at - timedelta(minutes=10)


def test_a_run_left_running_by_a_dead_worker_is_marked_failed(now):
    dead = Run.objects.create(
        started_at=now - timedelta(hours=2),
        window_start=now,
        window_end=now,
        scanned_since=now,
    )

    drift_run(now=now)

    dead.refresh_from_db()
    assert dead.status == Run.Status.FAILED
    assert dead.error == reconciliation.ABANDONED


def test_a_second_run_while_one_is_in_progress_skips():
    other = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", reconciliation.RECONCILE_LOCK)

        assert reconciliation.usage_reconcile() is None
        assert not Run.objects.exists()
    finally:
        other.execute("SELECT pg_advisory_unlock(%s, %s)", reconciliation.RECONCILE_LOCK)
        other.close()
    assert drift_run() is not None  # free again: the next run works


def test_a_meter_awaiting_its_rebuild_is_not_reported_as_drift(customer_a, recent_hour):
    meter = api_calls_meter()
    ts = iso(recent_hour + timedelta(minutes=1))
    ingest(
        event(customer_a, "1", ts=ts, endpoint="/a"), event(customer_a, "2", ts=ts, endpoint="/b")
    )
    # A new definition: the rollups are stale until the rebuild (queued, not run here).
    services.meter_update(actor=None, meter=meter, group_by=["region"])
    assert Meter.objects.get(pk=meter.pk).rebuild_status == Meter.RebuildStatus.QUEUED

    run = drift_run()

    assert run.discrepancies_found == 0
    assert UsageRollup.objects.filter(meter=meter).count() == 2


def test_inactive_meters_keep_their_rollups(customer_a, recent_hour):
    meter = api_calls_meter()
    ingest(event(customer_a, "1", ts=iso(recent_hour)))
    Meter.objects.filter(pk=meter.pk).update(is_active=False)

    drift_run()

    assert UsageRollup.objects.filter(meter=meter).count() == 1
    assert not UsageDiscrepancy.objects.exists()


def test_the_task_runs_the_job_and_is_scheduled_every_15_minutes_on_ingest(customer_a):
    run_id = tasks.usage_reconcile.delay().get()

    assert Run.objects.get(pk=run_id).status == Run.Status.SUCCEEDED
    (entry,) = [e for e in SCHEDULE if e.task == "metering.tasks.usage_reconcile"]
    assert entry.every == timedelta(minutes=15)
    assert entry.queue == "ingest"
    assert entry.expire_seconds == 1350


def test_slices_split_hours_into_runs_of_at_most_a_day(now):
    base = floor_hour(now)
    hours = [base + timedelta(hours=h) for h in [0, 1, 2, 5, *range(10, 40)]]

    slices = list(reconciliation._slices(hours))

    assert slices[0] == (base, base + timedelta(hours=3))
    assert slices[1] == (base + timedelta(hours=5), base + timedelta(hours=6))
    assert slices[2] == (base + timedelta(hours=10), base + timedelta(hours=34))
    assert slices[3] == (base + timedelta(hours=34), base + timedelta(hours=40))
    covered = [
        s + timedelta(hours=i) for s, e in slices for i in range((e - s) // timedelta(hours=1))
    ]
    assert covered == hours


def test_values_with_more_decimals_than_rollups_keep_do_not_come_back_every_run(
    customer_a, recent_hour
):
    meter = data_meter()
    ts = iso(recent_hour + timedelta(minutes=7))
    ingest(
        event(customer_a, "third", name=meter.code, ts=ts, gb="0.3333333333333333"),
        event(customer_a, "float", name=meter.code, ts=ts, gb=0.30000000000000004),
        event(customer_a, "tiny", name=meter.code, ts=ts, gb="0.0000000000005"),
    )

    assert drift_run().discrepancies_found == 0
    assert drift_run().discrepancies_found == 0
    # Each value is kept to 12 places, the same in the rollups and from the raw events.
    whole_hour = usage_total(
        customer=customer_a, meter=meter, start=recent_hour, end=recent_hour + timedelta(hours=1)
    )
    raw_edge = usage_total(
        customer=customer_a,
        meter=meter,
        start=recent_hour + timedelta(minutes=1),
        end=recent_hour + timedelta(minutes=59),
    )
    assert whole_hour == raw_edge == Decimal("0.633333333334")


def test_the_batch_track_total_reads_the_raw_events_not_the_rollups(customer_a, recent_hour):
    """Period close bills from the raw events and reconciles the rollups against them."""
    meter = data_meter()
    ingest(
        event(customer_a, "a", name=meter.code, ts=iso(recent_hour + timedelta(minutes=5)), gb=2),
        event(customer_a, "b", name=meter.code, ts=iso(recent_hour + timedelta(minutes=50)), gb=3),
    )
    start, end = recent_hour, recent_hour + timedelta(hours=1)
    UsageRollup.objects.filter(customer=customer_a, meter=meter).update(value_sum=Decimal(99))

    realtime = usage_total(customer=customer_a, meter=meter, start=start, end=end)
    batch = usage_total(customer=customer_a, meter=meter, start=start, end=end, track="batch")

    assert (realtime, batch) == (Decimal(99), Decimal(5))
    with pytest.raises(ValueError, match="track"):
        usage_total(customer=customer_a, meter=meter, start=start, end=end, track="nightly")

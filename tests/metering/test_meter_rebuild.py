"""Meter rebuilds: a new or changed definition is applied to every raw event stored."""

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from accounts.models import AuditLog
from metering import reconciliation, services, sql, tasks
from metering.ingest import events_ingest
from metering.models import Meter, UsageRollup
from metering.selectors import usage_breakdown, usage_total
from tests.metering.factories import event

NOW = datetime(2026, 11, 20, tzinfo=UTC)
START, END = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
MONTHS = ["2026-09-10T08:00:00Z", "2026-10-15T12:30:00Z", "2026-11-03T23:59:59Z"]


def ingest(*events):
    result = events_ingest(events=list(events), now=NOW)
    assert result.rejected == 0, result.results
    return result


def total(customer, meter):
    return usage_total(customer=customer, meter=meter, start=START, end=END)


def seed_gpu_events(customer):
    """Three months of GPU usage, sent before any meter counts it."""
    ingest(
        *(
            event(customer, f"gpu-{i}", name="gpu", ts=ts, seconds=s, region=r, tier=t)
            for i, (ts, s, r, t) in enumerate(
                [
                    (MONTHS[0], 10, "eu", "paid"),
                    (MONTHS[1], 20, "us", "free"),
                    (MONTHS[1], "2.5", "eu", "paid"),
                    (MONTHS[2], 40, "us", "paid"),
                ]
            )
        )
    )


def create(**fields):
    defaults = {"code": "gpu", "name": "GPU time", "unit_label": "s", "aggregation": "count"}
    return services.meter_create(actor=None, **{**defaults, **fields})


@pytest.fixture
def progress_log():
    """Every rebuild status/progress the meter row goes through, recorded by a trigger."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE progress_log (id serial, status text, progress int)")
        cursor.execute(
            """
            CREATE FUNCTION pg_temp.log_progress() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO progress_log (status, progress)
                VALUES (NEW.rebuild_status, NEW.rebuild_progress);
                RETURN NEW;
            END $$
            """
        )
        cursor.execute(
            "CREATE TRIGGER log_progress AFTER UPDATE ON metering_meter "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.log_progress()"
        )

    def read():
        with connection.cursor() as cursor:
            cursor.execute("SELECT status, progress FROM progress_log ORDER BY id")
            return cursor.fetchall()

    return read


@pytest.mark.django_db
def test_events_sent_before_their_meter_are_counted_once_it_is_created(
    customer_a, django_capture_on_commit_callbacks, progress_log
):
    seed_gpu_events(customer_a)
    assert not UsageRollup.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        meter = create(aggregation="sum", value_property="seconds")

    meter.refresh_from_db()
    assert total(customer_a, meter) == Decimal("72.5")
    assert (meter.rebuild_status, meter.rebuild_progress) == ("idle", 100)
    assert meter.rebuilt_version == meter.definition_version == 1
    assert meter.rebuild_started_at <= meter.rebuild_finished_at
    steps = progress_log()
    assert steps[0] == ("running", 0)
    assert steps[-1] == ("idle", 100)
    progress = [p for _, p in steps]
    assert progress == sorted(progress), "progress only goes up"
    assert any(0 < p < 100 for p in progress), "a month-by-month rebuild reports progress"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "expected_total", "expected_regions"),
    [
        ({"group_by": ["region"]}, 4, {"eu": 2, "us": 2}),
        ({"filters": [{"property": "tier", "equals": "paid"}]}, 3, None),
        ({"aggregation": "sum", "value_property": "seconds"}, Decimal("72.5"), None),
        ({"aggregation": "max", "value_property": "seconds"}, 40, None),
        ({"aggregation": "unique_count", "value_property": "region"}, 2, None),
    ],
    ids=["group_by", "filters", "to-sum", "to-max", "to-unique"],
)
def test_a_changed_definition_is_rebuilt_from_the_raw_events(
    customer_a, django_capture_on_commit_callbacks, change, expected_total, expected_regions
):
    seed_gpu_events(customer_a)
    with django_capture_on_commit_callbacks(execute=True):
        meter = create()
    assert total(customer_a, meter) == 4

    with django_capture_on_commit_callbacks(execute=True):
        meter = services.meter_update(actor=None, meter=meter, **change)

    meter.refresh_from_db()
    assert (meter.definition_version, meter.rebuilt_version, meter.rebuild_status) == (2, 2, "idle")
    assert total(customer_a, meter) == expected_total
    if expected_regions:
        breakdown = usage_breakdown(
            customer=customer_a, meter=meter, start=START, end=END, dimension="region"
        )
        assert {p.group: p.value for p in breakdown} == expected_regions
        dimensions = UsageRollup.objects.values_list("dimensions", flat=True)
        assert {tuple(d) for d in dimensions} == {("eu",), ("us",)}


@pytest.mark.django_db
def test_until_the_rebuild_runs_the_meter_says_it_is_queued(customer_a):
    meter = create()
    meter = services.meter_update(actor=None, meter=meter, group_by=["region"])

    assert (meter.rebuild_status, meter.rebuild_progress, meter.definition_version) == (
        "queued",
        0,
        2,
    )


@pytest.mark.django_db
def test_a_name_change_needs_no_rebuild(customer_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        meter = create()
    with django_capture_on_commit_callbacks() as callbacks:
        meter = services.meter_update(actor=None, meter=meter, name="GPU seconds")

    assert callbacks == []
    assert (meter.definition_version, meter.rebuild_status) == (1, "idle")


@pytest.mark.django_db
def test_running_the_rebuild_task_again_is_a_no_op(customer_a, django_capture_on_commit_callbacks):
    seed_gpu_events(customer_a)
    with django_capture_on_commit_callbacks(execute=True):
        meter = create(aggregation="sum", value_property="seconds")
    rollups = list(UsageRollup.objects.order_by("pk").values())
    finished = Meter.objects.get(pk=meter.pk).rebuild_finished_at

    assert tasks.meter_rebuild.delay(meter.pk, 1).get() is False

    assert list(UsageRollup.objects.order_by("pk").values()) == rollups
    assert Meter.objects.get(pk=meter.pk).rebuild_finished_at == finished


@pytest.mark.django_db
def test_a_superseded_version_does_not_run_and_the_newest_one_does(customer_a):
    seed_gpu_events(customer_a)
    meter = create()  # version 1, queued (callbacks not run)
    services.meter_update(actor=None, meter=meter, group_by=["region"])  # version 2
    services.meter_update(actor=None, meter=meter, aggregation="sum", value_property="seconds")

    assert services.meter_rebuild(meter_id=meter.pk, version=1) is False
    assert services.meter_rebuild(meter_id=meter.pk, version=2) is False
    assert services.meter_rebuild(meter_id=meter.pk, version=3) is True

    meter.refresh_from_db()
    assert (meter.rebuilt_version, meter.rebuild_status) == (3, "idle")
    assert total(customer_a, meter) == Decimal("72.5")


@pytest.mark.django_db(transaction=True)
def test_a_rebuild_superseded_while_running_stops_and_leaves_the_meter_to_the_new_version(
    customer_a,
):
    seed_gpu_events(customer_a)
    meter = Meter.objects.create(
        code="gpu", name="GPU", unit_label="s", aggregation="count", rebuild_status="queued"
    )
    blocker = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    outcome = {}

    def rebuild():
        try:
            outcome["ran"] = services.meter_rebuild(meter_id=meter.pk, version=1)
        finally:
            connection.close()

    try:
        # Hold the meter's rollup lock so the rebuild waits inside its first month.
        blocker.execute("SELECT pg_advisory_lock(%s, %s)", [sql.ROLLUP_LOCK_CLASS, meter.pk])
        thread = threading.Thread(target=rebuild)
        thread.start()
        deadline = time.monotonic() + 30
        while Meter.objects.get(pk=meter.pk).rebuild_status != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # Meanwhile an operator changes the definition (the new version's rebuild is queued).
        Meter.objects.filter(pk=meter.pk).update(
            definition_version=F("definition_version") + 1, rebuild_status="queued"
        )
        blocker.execute("SELECT pg_advisory_unlock(%s, %s)", [sql.ROLLUP_LOCK_CLASS, meter.pk])
        thread.join(60)
    finally:
        blocker.close()

    assert outcome == {"ran": False}
    meter.refresh_from_db()
    assert (meter.rebuild_status, meter.rebuilt_version) == ("queued", 1)
    assert services.meter_rebuild(meter_id=meter.pk, version=2) is True
    assert total(customer_a, Meter.objects.get(pk=meter.pk)) == 4


@pytest.mark.django_db
def test_deactivating_a_meter_empties_its_usage_and_reactivating_brings_it_back(
    customer_a, django_capture_on_commit_callbacks
):
    seed_gpu_events(customer_a)
    with django_capture_on_commit_callbacks(execute=True):
        meter = create()
    with django_capture_on_commit_callbacks(execute=True):
        meter = services.meter_update(actor=None, meter=meter, is_active=False)
    assert total(customer_a, meter) == 0
    assert not UsageRollup.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        meter = services.meter_update(actor=None, meter=meter, is_active=True)

    assert total(customer_a, meter) == 4


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["1e200000", "5\u2003", "1e30", 5 * 10**18])
def test_an_absurd_value_stored_before_the_meter_is_skipped_not_a_failed_rebuild(
    customer_a, django_capture_on_commit_callbacks, value
):
    # No meter yet, so nothing checks the value at ingest.
    ingest(
        event(customer_a, "absurd", name="gpu", ts=MONTHS[1], seconds=value),
        event(customer_a, "fine", name="gpu", ts=MONTHS[1], seconds=3),
    )

    with django_capture_on_commit_callbacks(execute=True):
        meter = create(aggregation="sum", value_property="seconds")

    meter.refresh_from_db()
    assert (meter.rebuild_status, meter.rebuild_error) == ("idle", "")
    assert total(customer_a, meter) == 3


# --- Rebuild on demand ("Rebuild now" in the admin) ----------------------------------------


@pytest.mark.django_db
def test_a_requested_rebuild_repairs_rollups_and_is_audited(
    customer_a, django_capture_on_commit_callbacks, admin_user
):
    seed_gpu_events(customer_a)
    with django_capture_on_commit_callbacks(execute=True):
        meter = create()
    UsageRollup.objects.update(event_count=99)

    with django_capture_on_commit_callbacks(execute=True):
        assert reconciliation.meter_rebuild_request(actor=admin_user, meter=meter) is True

    assert total(customer_a, meter) == 4
    audit = AuditLog.objects.get(action="meter.rebuild_requested")
    assert audit.actor_user == admin_user
    assert audit.after == {"rebuild_status": "queued", "version": 1}
    assert Meter.objects.get(pk=meter.pk).rebuild_status == "idle"


@pytest.mark.django_db
def test_a_rebuild_is_not_requested_twice_while_one_runs_unless_it_stalled(customer_a):
    meter = create()
    Meter.objects.filter(pk=meter.pk).update(
        rebuild_status="running", rebuild_started_at=timezone.now() - timedelta(minutes=5)
    )
    assert reconciliation.meter_rebuild_request(actor=None, meter=meter) is False

    Meter.objects.filter(pk=meter.pk).update(
        rebuild_started_at=timezone.now() - reconciliation.STALE_REBUILD - timedelta(minutes=1)
    )
    assert reconciliation.meter_rebuild_request(actor=None, meter=meter) is True
    assert Meter.objects.get(pk=meter.pk).rebuild_status == "queued"

"""Exactly once against real PostgreSQL: duplicates, races, deadlocks and crashes.

These tests commit for real (``transaction=True``): each thread or process has its own
database connection, as concurrent API workers do.
"""

import multiprocessing
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, connections, transaction

from metering import sql
from metering.ingest import events_ingest
from metering.models import EventKey, UsageEvent, UsageRollup, UsageUniqueValue
from metering.selectors import usage_total
from tests.accounts.factories import CustomerFactory
from tests.concurrency import in_threads
from tests.metering.factories import api_calls_meter, data_meter, event, users_meter

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
DAY = datetime(2026, 11, 2, tzinfo=UTC)


def ts(hour, minute=0, second=0):
    return (DAY + timedelta(hours=hour, minutes=minute, seconds=second)).isoformat()


def ingest(events):
    return events_ingest(events=events, now=NOW)


def total(customer, meter, start=DAY, end=DAY + timedelta(days=1)):
    return usage_total(customer=customer, meter=meter, start=start, end=end)


# --- Duplicates -------------------------------------------------------------------------


def test_duplicates_in_one_batch_are_stored_and_counted_once(customer_a):
    meter = data_meter()
    batch = [event(customer_a, "same", name=meter.code, ts=ts(10), gb=5)] * 3 + [
        event(customer_a, "other", name=meter.code, ts=ts(10), gb=1)
    ]

    result = ingest(batch)

    assert [r.status for r in result.results] == ["accepted", "duplicate", "duplicate", "accepted"]
    assert UsageEvent.objects.filter(idempotency_key="same").count() == 1
    assert total(customer_a, meter) == 6
    assert UsageRollup.objects.get().event_count == 2


def test_the_same_key_with_different_content_is_still_a_duplicate(customer_a):
    meter = data_meter()
    ingest([event(customer_a, "k", name=meter.code, ts=ts(10), gb=5)])

    result = ingest([event(customer_a, "k", name=meter.code, ts=ts(14), gb=500)])

    assert result.results[0].status == "duplicate"
    assert total(customer_a, meter) == 5
    assert UsageEvent.objects.get().timestamp == DAY + timedelta(hours=10)


def test_a_repeated_batch_counts_nothing_twice(customer_a, customer_b):
    meter = api_calls_meter()
    batch = [
        event(c, f"k{i}", ts=ts(i % 24), endpoint="/v1")
        for i in range(40)
        for c in (customer_a, customer_b)
    ]
    first = ingest(batch)
    rollups = list(UsageRollup.objects.order_by("pk").values())

    again = ingest(batch)

    assert first.accepted == 80
    assert again.duplicates == 80 and again.accepted == 0
    assert list(UsageRollup.objects.order_by("pk").values()) == rollups

    mixed = ingest([*batch[:10], event(customer_a, "new", ts=ts(3))])

    assert (mixed.duplicates, mixed.accepted) == (10, 1)
    assert total(customer_a, meter) == 41
    assert total(customer_b, meter) == 40
    assert UsageEvent.objects.count() == EventKey.objects.count() == 81


def test_the_same_key_for_two_customers_is_two_events(customer_a, customer_b):
    meter = api_calls_meter()
    result = ingest([event(customer_a, "shared", ts=ts(1)), event(customer_b, "shared", ts=ts(1))])
    assert result.accepted == 2
    assert total(customer_a, meter) == total(customer_b, meter) == 1


def test_fifty_parallel_senders_of_the_same_events_count_them_once(customer_a):
    meter = data_meter()
    users = users_meter()
    shared = [
        event(customer_a, f"shared-{i}", name=meter.code, ts=ts(i % 5), gb="1.25")
        for i in range(30)
    ]
    shared += [
        event(customer_a, f"user-{i}", name=users.code, ts=ts(2), user_id=f"u{i % 7}")
        for i in range(20)
    ]

    def send(i):
        own = [event(customer_a, f"own-{i}", name=meter.code, ts=ts(7), gb=1)]
        batch = shared + own
        random.Random(i).shuffle(batch)
        return ingest(batch)

    results = in_threads(50, send)

    accepted = Counter(
        r.idempotency_key for res in results for r in res.results if r.status == "accepted"
    )
    assert all(n == 1 for n in accepted.values())
    assert len(accepted) == 50 + 50
    assert sum(res.duplicates for res in results) == 49 * 50
    assert UsageEvent.objects.count() == EventKey.objects.count() == 100
    assert total(customer_a, meter) == Decimal("1.25") * 30 + 50
    assert total(customer_a, users) == 7
    assert UsageUniqueValue.objects.count() == 7


def _send_from_process(batch, queue):
    # A forked child must not touch the parent's socket: start from fresh connections.
    for conn in connections.all():
        conn.connection = None
    try:
        result = events_ingest(events=batch, now=NOW)
        queue.put(("ok", result.accepted, result.duplicates))
    except BaseException as exc:
        queue.put(("error", repr(exc), 0))
    finally:
        connections.close_all()


def test_parallel_processes_sending_the_same_batch_store_it_once(customer_a):
    meter = data_meter()
    batch = [event(customer_a, f"p{i}", name=meter.code, ts=ts(i % 12), gb=2) for i in range(200)]
    connections.close_all()  # nothing open to inherit across fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_send_from_process, args=(batch, queue)) for _ in range(8)]
    for process in processes:
        process.start()
    outcomes = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert all(kind == "ok" for kind, *_ in outcomes), outcomes
    assert sum(accepted for _, accepted, _ in outcomes) == 200
    assert sum(duplicates for *_, duplicates in outcomes) == 7 * 200
    assert UsageEvent.objects.count() == 200
    assert total(customer_a, meter) == 400


# --- Deadlocks --------------------------------------------------------------------------


def test_concurrent_batches_on_the_same_rollup_rows_neither_deadlock_nor_lose_counts():
    customers = [CustomerFactory(external_id=f"dl-{i}") for i in range(3)]
    calls, data = api_calls_meter(), data_meter()
    rounds, threads, per_batch = 4, 8, 240

    def send(worker):
        rng = random.Random(worker)
        outcomes = []
        for round_ in range(rounds):
            batch = []
            for n in range(per_batch):
                customer = rng.choice(customers)
                hour, key = rng.randrange(6), f"w{worker}-r{round_}-{n}"
                if n % 2:
                    batch.append(
                        event(
                            customer,
                            key,
                            ts=ts(hour, n % 60),
                            endpoint=rng.choice(["/a", "/b"]),
                            region="eu",
                        )
                    )
                else:
                    batch.append(event(customer, key, name=data.code, ts=ts(hour, n % 60), gb=n))
            rng.shuffle(batch)  # every worker touches the rows in a different order
            outcomes.append(ingest(batch))
        return outcomes

    results = in_threads(threads, send)

    assert all(r.accepted == per_batch for worker in results for r in worker)
    stored = UsageEvent.objects.all()
    assert stored.count() == rounds * threads * per_batch
    for customer in customers:
        mine = [e for e in stored if e.customer_id == customer.pk]
        assert total(customer, calls) == sum(1 for e in mine if e.event_name == calls.code)
        assert total(customer, data) == sum(
            Decimal(e.properties["gb"]) for e in mine if e.event_name == data.code
        )


# --- Crash mid-batch --------------------------------------------------------------------


def _raw_connection():
    return psycopg.connect(**connection.get_connection_params(), autocommit=True)


def _wait_until_blocked(watcher, pid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = watcher.execute(
            "SELECT wait_event_type, query FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()
        if row and row[0] == "Lock":
            return row[1]
        time.sleep(0.02)
    raise AssertionError("the ingest never blocked")


def _ingest_and_get_killed(batch, blocker_setup):
    """Run ``batch`` in a thread while ``blocker_setup`` holds a lock it needs; kill the
    ingesting backend once it waits. Returns the query it was killed in and its error."""
    blocker, watcher = _raw_connection(), _raw_connection()
    state = {}
    started = threading.Event()

    def run():
        try:
            connection.ensure_connection()
            state["pid"] = connection.connection.info.backend_pid
            started.set()
            events_ingest(events=batch, now=NOW)
        except BaseException as exc:
            state["error"] = exc
        finally:
            try:
                connection.close()
            except Exception:  # the socket is already gone
                connection.connection = None

    try:
        blocker_setup(blocker)
        thread = threading.Thread(target=run)
        thread.start()
        assert started.wait(30)
        query = _wait_until_blocked(watcher, state["pid"])
        assert watcher.execute("SELECT pg_terminate_backend(%s)", [state["pid"]]).fetchone()[0]
        thread.join(60)
        assert not thread.is_alive()
    finally:
        blocker.close()  # releases whatever it held
        watcher.close()
    return query, state.get("error")


def _big_batch(customer, meter, size=5000):
    return [
        event(customer, f"big-{i}", name=meter.code, ts=ts(i % 24, i % 60), gb=i % 10)
        for i in range(size)
    ]


def test_a_connection_killed_after_claiming_keys_leaves_nothing_and_the_retry_counts_once(
    customer_a,
):
    meter = data_meter()
    batch = _big_batch(customer_a, meter)

    def hold_meter_lock(blocker):
        # Recompute's exclusive lock on the meter: ingest waits for it after claiming keys.
        blocker.execute("SELECT pg_advisory_lock(%s, %s)", [sql.ROLLUP_LOCK_CLASS, meter.pk])

    query, error = _ingest_and_get_killed(batch, hold_meter_lock)

    assert "pg_advisory_xact_lock_shared" in query
    assert isinstance(error, Exception)
    assert not EventKey.objects.exists()
    assert not UsageEvent.objects.exists()
    assert not UsageRollup.objects.exists()

    retry = ingest(batch)
    assert retry.accepted == len(batch)
    assert ingest(batch).duplicates == len(batch)
    assert total(customer_a, meter) == sum(i % 10 for i in range(len(batch)))


def test_a_connection_killed_mid_statement_leaves_nothing_and_the_retry_counts_once(customer_a):
    meter = data_meter()
    ingest([event(customer_a, "before", name=meter.code, ts=ts(12, 30), gb=100)])
    held = UsageRollup.objects.get()
    batch = _big_batch(customer_a, meter)

    def lock_a_rollup_row(blocker):
        # Hour 12 sorts mid-batch: the statement has inserted the events and upserted the
        # earlier hours' rollups when it waits for this row.
        blocker.execute("BEGIN")
        blocker.execute("SELECT 1 FROM metering_usagerollup WHERE id = %s FOR UPDATE", [held.pk])

    query, error = _ingest_and_get_killed(batch, lock_a_rollup_row)

    assert "INSERT INTO metering_usageevent" in query
    assert isinstance(error, Exception)
    assert list(EventKey.objects.values_list("idempotency_key", flat=True)) == ["before"]
    assert list(UsageEvent.objects.values_list("idempotency_key", flat=True)) == ["before"]
    assert list(UsageRollup.objects.values_list("pk", "event_count", "value_sum")) == [
        (held.pk, 1, Decimal(100))
    ]

    assert ingest(batch).accepted == len(batch)
    assert ingest(batch).duplicates == len(batch)
    assert total(customer_a, meter) == 100 + sum(i % 10 for i in range(len(batch)))
    assert UsageEvent.objects.count() == len(batch) + 1


def test_two_batches_in_one_enclosing_transaction_each_count_once(customer_a):
    """The staging table is emptied at commit; a caller's own transaction must not make the
    second batch re-store the first."""
    meter = api_calls_meter()
    with transaction.atomic():
        ingest([event(customer_a, "one", ts=ts(10), endpoint="/a", region="eu")])
        ingest([event(customer_a, "two", ts=ts(10), endpoint="/a", region="eu")])
    assert UsageEvent.objects.filter(customer=customer_a).count() == 2
    assert sum(UsageRollup.objects.filter(meter=meter).values_list("event_count", flat=True)) == 2

"""Late events (for a closed period) and voids (taking events out of usage)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.errors import InvalidInput
from accounts.models import AuditLog
from metering import hooks, reconciliation, services
from metering.ingest import events_ingest
from metering.models import CustomerUsageState, UsageEvent, UsageRollup, UsageUniqueValue
from metering.selectors import (
    late_events,
    late_events_by_customer,
    usage_breakdown,
    usage_total,
)
from metering.services import VoidStatus
from tests.metering.factories import (
    MeterFactory,
    api_calls_meter,
    data_meter,
    event,
    seats_meter,
    users_meter,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOUR = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
CLOSED = datetime(2026, 11, 1, tzinfo=UTC)


def at(minutes, hour=HOUR):
    return (hour + timedelta(minutes=minutes)).isoformat()


def ingest(*events, now=NOW):
    result = events_ingest(events=list(events), now=now)
    assert result.rejected == 0, result.results
    return result


def hour_total(customer, meter, hour=HOUR):
    return usage_total(customer=customer, meter=meter, start=hour, end=hour + timedelta(hours=1))


def partial_total(customer, meter, hour=HOUR):
    """Over a range that is not hour-aligned: served from the raw events."""
    return usage_total(
        customer=customer,
        meter=meter,
        start=hour + timedelta(seconds=1),
        end=hour + timedelta(minutes=59),
    )


def void(customer, *keys, reason="sent twice by a retry bug"):
    return services.events_void(
        actor=None, customer=customer, idempotency_keys=list(keys), reason=reason
    )


# --- Late events ------------------------------------------------------------------------


def test_an_event_for_a_closed_period_is_stored_flagged_late_and_not_counted(customer_a):
    meter = data_meter()
    services.usage_close_through(actor=None, customer=customer_a, closed_through=CLOSED)
    october = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)

    result = ingest(
        event(customer_a, "late", name=meter.code, ts=at(30, october), gb=7),
        event(customer_a, "open", name=meter.code, ts=at(5), gb=2),
    )

    assert [r.status for r in result.results] == ["accepted", "accepted"]
    late = UsageEvent.objects.get(idempotency_key="late")
    assert late.late and late.received_at == NOW
    assert not UsageEvent.objects.get(idempotency_key="open").late
    assert hour_total(customer_a, meter, october) == 0
    assert partial_total(customer_a, meter, october) == 0
    assert hour_total(customer_a, meter) == 2
    assert not UsageRollup.objects.filter(hour=october).exists()
    assert result.changed == {(customer_a.pk, meter.pk)}  # the open event's usage changed


def test_an_event_exactly_at_closed_through_is_not_late(customer_a):
    api_calls_meter()
    services.usage_close_through(actor=None, customer=customer_a, closed_through=CLOSED)

    ingest(
        event(customer_a, "edge", ts=CLOSED.isoformat()),
        event(customer_a, "before", ts=(CLOSED - timedelta(microseconds=1)).isoformat()),
    )

    assert dict(UsageEvent.objects.values_list("idempotency_key", "late")) == {
        "edge": False,
        "before": True,
    }


def test_late_events_are_reported_for_invoicing_oldest_first(customer_a, customer_b):
    data_meter()
    for customer in (customer_a, customer_b):
        services.usage_close_through(actor=None, customer=customer, closed_through=CLOSED)
    earlier, later = NOW - timedelta(days=2), NOW
    ingest(
        event(
            customer_a, "old-1", name="data_processed", ts=at(0, CLOSED - timedelta(days=3)), gb=1
        ),
        now=earlier,
    )
    ingest(
        event(
            customer_a, "old-2", name="data_processed", ts=at(0, CLOSED - timedelta(days=9)), gb=1
        ),
        event(customer_a, "fresh", name="data_processed", ts=at(0), gb=1),
        event(
            customer_b,
            "other-customer",
            name="data_processed",
            ts=at(0, CLOSED - timedelta(days=1)),
            gb=1,
        ),
        now=later,
    )

    assert [e.idempotency_key for e in late_events(customer=customer_a)] == ["old-2", "old-1"]
    assert [e.idempotency_key for e in late_events(customer=customer_a, received_since=later)] == [
        "old-2"
    ]
    assert [e.idempotency_key for e in late_events(customer=customer_b)] == ["other-customer"]


def test_late_events_by_customer_takes_each_customers_own_receive_window(customer_a, customer_b):
    data_meter()
    for customer in (customer_a, customer_b):
        services.usage_close_through(actor=None, customer=customer, closed_through=CLOSED)
    october = CLOSED - timedelta(days=3)
    received = [NOW - timedelta(days=3), NOW - timedelta(days=2), NOW - timedelta(days=1)]
    for i, moment in enumerate(received):
        ingest(
            *(
                event(c, f"late-{i}", name="data_processed", ts=at(i, october), gb=1)
                for c in (customer_a, customer_b)
            ),
            now=moment,
        )
    # (Voids of a closed period are refused; one voided before the period closed is
    # written here directly.)
    UsageEvent.objects.filter(customer=customer_b, idempotency_key="late-0").update(
        voided_at=NOW, void_reason="sent twice"
    )

    found = late_events_by_customer(
        received_since={customer_a.pk: received[1], customer_b.pk: None},
        received_before=received[2],
    )

    # From each customer's own lower bound (inclusive) to the common upper bound
    # (exclusive); voided events are not usage.
    assert found[customer_a.pk] == [("data_processed", october + timedelta(minutes=1), received[1])]
    assert found[customer_b.pk] == [("data_processed", october + timedelta(minutes=1), received[1])]
    everything = late_events_by_customer(received_since={customer_a.pk: None}, received_before=NOW)
    assert sorted(r for _, _, r in everything[customer_a.pk]) == received
    assert late_events_by_customer(received_since={}, received_before=NOW) == {}


def test_the_batch_track_never_counts_late_events_into_a_closed_period(customer_a):
    meter = api_calls_meter()
    services.usage_close_through(actor=None, customer=customer_a, closed_through=CLOSED)
    ingest(event(customer_a, "late", ts=at(0, CLOSED - timedelta(hours=2))), now=None)

    run = reconciliation.usage_reconcile()

    assert run.discrepancies_found == 0
    assert not UsageRollup.objects.filter(meter=meter).exists()


def test_closed_through_only_moves_forward_and_each_advance_is_audited(customer_a):
    first = services.usage_close_through(actor=None, customer=customer_a, closed_through=CLOSED)
    later = CLOSED + timedelta(days=30)
    services.usage_close_through(actor=None, customer=customer_a, closed_through=later)

    kept = services.usage_close_through(actor=None, customer=customer_a, closed_through=CLOSED)
    same = services.usage_close_through(actor=None, customer=customer_a, closed_through=later)

    assert first.pk == kept.pk == same.pk
    assert CustomerUsageState.objects.get(customer=customer_a).closed_through == later
    audits = AuditLog.objects.filter(action="usage.closed_through").order_by("pk")
    assert [(a.before["closed_through"], a.after["closed_through"]) for a in audits] == [
        (None, CLOSED.isoformat()),
        (CLOSED.isoformat(), later.isoformat()),
    ]
    assert all(a.customer == customer_a for a in audits)


def test_closed_through_must_be_timezone_aware(customer_a):
    with pytest.raises(InvalidInput) as caught:
        services.usage_close_through(
            actor=None, customer=customer_a, closed_through=datetime(2026, 11, 1)
        )
    assert caught.value.field == "closed_through"


# --- Voids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_meter", "values", "voided", "before", "after"),
    [
        (api_calls_meter, [{}, {}, {}], "k1", 3, 2),
        (data_meter, [{"gb": 1}, {"gb": "2.5"}, {"gb": 4}], "k2", Decimal("7.5"), Decimal("3.5")),
        (
            lambda: MeterFactory(code="peak", aggregation="max", value_property="v"),
            [{"v": 3}, {"v": 9}, {"v": 5}],
            "k1",
            9,
            5,
        ),
        # The voided reading was the latest: the one before it is the gauge again.
        (seats_meter, [{"seats": 4}, {"seats": 6}, {"seats": 10}], "k2", 10, 6),
        # The voided event was the only one with "carol": one user fewer.
        (users_meter, [{"user_id": "ann"}, {"user_id": "ann"}, {"user_id": "carol"}], "k2", 2, 1),
    ],
    ids=["count", "sum", "max-was-voided", "latest-was-voided", "unique-only-value"],
)
def test_a_void_takes_the_event_out_of_usage_at_once(
    customer_a, make_meter, values, voided, before, after
):
    meter = make_meter()
    ingest(
        *(
            event(customer_a, f"k{i}", name=meter.code, ts=at(10 * (i + 1)), **props)
            for i, props in enumerate(values)
        )
    )
    assert hour_total(customer_a, meter) == before

    assert void(customer_a, voided) == {voided: VoidStatus.VOIDED}

    assert hour_total(customer_a, meter) == after
    assert partial_total(customer_a, meter) == after
    row = UsageEvent.objects.get(idempotency_key=voided)
    assert row.voided_at is not None and row.void_reason == "sent twice by a retry bug"


def test_voiding_a_unique_value_seen_twice_keeps_it(customer_a):
    meter = users_meter()
    ingest(
        event(customer_a, "a1", name=meter.code, ts=at(1), user_id="ann"),
        event(customer_a, "a2", name=meter.code, ts=at(2), user_id="ann"),
    )

    void(customer_a, "a1")

    assert hour_total(customer_a, meter) == 1
    assert list(UsageUniqueValue.objects.values_list("value", flat=True)) == ["ann"]


def test_voiding_the_only_event_of_a_rollup_removes_the_row_and_its_breakdown(customer_a):
    meter = api_calls_meter()
    ingest(
        event(customer_a, "eu", ts=at(1), endpoint="/v1", region="eu"),
        event(customer_a, "us", ts=at(2), endpoint="/v1", region="us"),
    )

    void(customer_a, "us")

    assert list(UsageRollup.objects.values_list("dimensions", flat=True)) == [["/v1", "eu"]]
    breakdown = usage_breakdown(
        customer=customer_a,
        meter=meter,
        start=HOUR,
        end=HOUR + timedelta(hours=1),
        dimension="region",
    )
    assert [(p.group, p.value) for p in breakdown] == [("eu", 1)]


def test_voiding_twice_is_already_void_and_audited_once(customer_a):
    data_meter()
    ingest(event(customer_a, "k", name="data_processed", ts=at(1), gb=3))

    assert void(customer_a, "k") == {"k": VoidStatus.VOIDED}
    assert void(customer_a, "k") == {"k": VoidStatus.ALREADY_VOID}

    audit = AuditLog.objects.get(action="usage.events_voided")
    assert audit.customer == customer_a
    assert audit.after == {"idempotency_keys": ["k"], "reason": "sent twice by a retry bug"}


def test_voiding_an_event_of_a_closed_period_is_refused_and_changes_nothing(customer_a):
    meter = data_meter()
    ingest(event(customer_a, "billed", name=meter.code, ts=at(1), gb=3))
    services.usage_close_through(actor=None, customer=customer_a, closed_through=NOW)

    assert void(customer_a, "billed") == {"billed": VoidStatus.PERIOD_CLOSED}

    assert UsageEvent.objects.get(idempotency_key="billed").voided_at is None
    assert hour_total(customer_a, meter) == 3
    assert not AuditLog.objects.filter(action="usage.events_voided").exists()


def test_each_key_gets_its_own_answer_and_other_customers_keys_are_not_found(
    customer_a, customer_b
):
    meter = api_calls_meter()
    ingest(
        event(customer_a, "mine", ts=at(1)),
        event(customer_a, "gone", ts=at(2)),
        event(customer_b, "theirs", ts=at(3)),
    )
    void(customer_a, "gone")

    outcome = void(customer_a, "mine", "gone", "theirs", "never-sent", "mine")

    assert outcome == {
        "mine": VoidStatus.VOIDED,
        "gone": VoidStatus.ALREADY_VOID,
        "theirs": VoidStatus.NOT_FOUND,
        "never-sent": VoidStatus.NOT_FOUND,
    }
    assert UsageEvent.objects.get(idempotency_key="theirs").voided_at is None
    assert hour_total(customer_b, meter) == 1
    assert hour_total(customer_a, meter) == 0


def test_a_voided_key_stays_taken(customer_a):
    meter = api_calls_meter()
    ingest(event(customer_a, "k", ts=at(1)))
    void(customer_a, "k")

    again = events_ingest(events=[event(customer_a, "k", ts=at(1))], now=NOW)

    assert again.results[0].status == "duplicate"
    assert hour_total(customer_a, meter) == 0


@pytest.mark.parametrize(
    ("keys", "reason", "field"),
    [
        (["k"], "  ", "reason"),
        ([], "typo", "idempotency_keys"),
        ([f"k{i}" for i in range(services.MAX_VOID_KEYS + 1)], "typo", "idempotency_keys"),
    ],
    ids=["no-reason", "no-keys", "too-many-keys"],
)
def test_a_void_needs_a_reason_and_a_bounded_list_of_keys(customer_a, keys, reason, field):
    with pytest.raises(InvalidInput) as caught:
        void(customer_a, *keys, reason=reason)
    assert caught.value.field == field


def test_a_void_tells_the_layers_above_after_commit(customer_a, django_capture_on_commit_callbacks):
    meter = api_calls_meter()
    ingest(event(customer_a, "k", ts=at(1)))
    heard = []
    hooks.register_usage_recorded(heard.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            void(customer_a, "k")
    finally:
        hooks.unregister(heard.append)

    assert heard == [{(customer_a.pk, meter.pk)}]

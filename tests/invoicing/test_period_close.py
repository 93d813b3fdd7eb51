"""Period close: drafts from the batch track, the reconciliation gate, finalization."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import Error, connection, transaction

from accounts.errors import Conflict
from accounts.models import AuditLog
from invoicing import services
from invoicing.models import Invoice, Subscription
from invoicing.reconciliation import measure_periods
from invoicing.services.period_close import (
    PeriodCloseFailed,
    _close_periods,
    _subscriptions_to_close,
)
from metering.ingest import events_ingest
from metering.models import CustomerUsageState, UsageRollup
from tests.accounts.factories import CustomerFactory
from tests.invoicing.factories import flat, ingest_usage, per_unit, plan_version, subscribe
from tests.metering.factories import api_calls_meter, event

pytestmark = pytest.mark.django_db

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
INGEST_NOW = datetime(2026, 11, 21, tzinfo=UTC)


@pytest.fixture
def meter():
    return api_calls_meter()


@pytest.fixture
def growth(meter):
    # $99 a month, API calls at $0.002 after 1,000 free.
    return plan_version(components=[flat("99.00"), per_unit(meter, "0.002", included="1000")])


@pytest.fixture
def subscription(customer_a, growth):
    return subscribe(customer_a, growth, at=OCT)


def october_calls(count):
    step = (NOV - OCT) / count
    return [OCT + step * i for i in range(count)]


def test_an_ended_period_closes_into_a_draft_rated_from_the_raw_events(
    customer_a, meter, subscription
):
    ingest_usage(customer_a, meter, october_calls(1500), now=INGEST_NOW, endpoint="/v1")
    ingest_usage(customer_a, meter, [NOV + timedelta(hours=2)], now=INGEST_NOW, prefix="nov")

    assert services.periods_close_due(now=NOV - timedelta(seconds=1)) == 0
    assert services.periods_close_due(now=NOV + timedelta(minutes=5)) == 1

    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.period_start, invoice.period_end) == ("draft", OCT, NOV)
    lines = list(invoice.lines.values_list("kind", "quantity", "amount_minor"))
    # 1,500 calls - 1,000 included = 500 x $0.002 = $1.00; the November call is not in it.
    assert lines == [("flat_fee", Decimal(1), 9900), ("usage", Decimal(1500), 100)]
    assert (invoice.subtotal_minor, invoice.total_minor) == (10000, 10000)
    check = invoice.usage_checks.get()
    assert check.batch_quantity == check.realtime_quantity == check.portal_quantity == 1500
    assert invoice.finalize_after == NOV + timedelta(minutes=5) + timedelta(hours=1)
    subscription.refresh_from_db()
    assert subscription.billed_through == NOV
    assert subscription.current_period_end == datetime(2026, 12, 1, tzinfo=UTC)
    # Running the job again bills nothing twice.
    assert services.periods_close_due(now=NOV + timedelta(minutes=10)) == 0
    assert Invoice.objects.count() == 1


def test_drift_between_the_tracks_holds_the_invoice_until_finance_releases_it(
    customer_a, meter, subscription, django_user_model
):
    ingest_usage(customer_a, meter, october_calls(1200), now=INGEST_NOW, endpoint="/v1")
    # The real-time track drifts behind the system's back.
    rollup = UsageRollup.objects.filter(customer=customer_a, meter=meter).first()
    UsageRollup.objects.filter(pk=rollup.pk).update(event_count=rollup.event_count + 7)

    invoice = services.period_close(subscription_id=subscription.pk, now=NOV)

    assert invoice.status == "held"
    check = invoice.usage_checks.get()
    assert (check.batch_quantity, check.realtime_quantity) == (1200, 1207)
    # Billed from the batch track, the authoritative one: 200 x $0.002.
    assert invoice.lines.get(kind="usage").amount_minor == 40
    with pytest.raises(Conflict) as held:
        services.invoice_finalize(actor=None, invoice=invoice, now=NOV + timedelta(hours=2))
    assert held.value.code == "invoice_held"
    assert services.invoices_finalize_due(now=NOV + timedelta(hours=2)) == 0

    reviewer = django_user_model.objects.create_user("finance@vendor.example", "x")
    services.invoice_release(actor=reviewer, invoice=invoice, note="Rollup drift; batch is right")
    final = services.invoice_finalize(actor=reviewer, invoice=invoice, now=NOV + timedelta(hours=2))

    assert final.status == "open" and final.number == "INV-2026-000001"
    assert AuditLog.objects.filter(action="invoice.released", object_id=str(invoice.pk)).exists()


def test_stragglers_during_the_grace_period_are_billed_then_later_events_are_late(
    customer_a, meter, subscription
):
    ingest_usage(customer_a, meter, october_calls(1000), now=INGEST_NOW, endpoint="/v1")
    invoice = services.period_close(subscription_id=subscription.pk, now=NOV)
    assert invoice.lines.get(kind="usage").amount_minor == 0  # all inside the allowance

    # An October event arrives during the grace hour.
    ingest_usage(customer_a, meter, [NOV - timedelta(minutes=3)] * 1, now=INGEST_NOW, prefix="s")
    assert services.invoices_finalize_due(now=NOV + timedelta(minutes=30)) == 0  # still in grace
    assert services.invoices_finalize_due(now=NOV + timedelta(hours=1, minutes=1)) == 1

    invoice.refresh_from_db()
    assert invoice.status == "open"
    usage = invoice.lines.get(kind="usage")
    assert (usage.quantity, usage.amount_minor) == (Decimal(1001), 0)  # 1 x $0.002 rounds to 0
    assert CustomerUsageState.objects.get(customer=customer_a).closed_through == NOV

    late = events_ingest(
        events=[event(customer_a, "very-late", ts="2026-10-15T12:00:00Z", endpoint="/v1")],
        now=INGEST_NOW,
    )
    assert late.accepted == 1
    assert invoice.lines.get(kind="usage").quantity == 1001  # the finalized invoice is untouched


def test_two_workers_closing_the_same_period_make_one_invoice(customer_a, meter, subscription):
    """The compare-and-swap on billed_through: the second claim finds the period gone."""
    first = services.period_close(subscription_id=subscription.pk, now=NOV)
    second = services.period_close(subscription_id=subscription.pk, now=NOV)
    assert first is not None and second is None
    assert Invoice.objects.count() == 1


def test_a_run_closes_many_periods_with_their_drafts_lines_evidence_and_audit(meter, growth):
    customers = [CustomerFactory() for _ in range(5)]
    for customer in customers:
        subscribe(customer, growth, at=OCT)
    for i, customer in enumerate(customers):
        ingest_usage(customer, meter, october_calls(1000 + 100 * i), now=INGEST_NOW)

    assert services.periods_close_due(now=NOV) == 5

    invoices = Invoice.objects.order_by("customer_id")
    assert [i.total_minor for i in invoices] == [9900, 9920, 9940, 9960, 9980]
    for i, invoice in enumerate(invoices):
        assert list(invoice.lines.values_list("kind", "quantity")) == [
            ("flat_fee", 1),
            ("usage", 1000 + 100 * i),
        ]
        assert invoice.usage_checks.get().batch_quantity == 1000 + 100 * i
    drafted = AuditLog.objects.filter(action="invoice.drafted")
    assert sorted(int(a.object_id) for a in drafted) == sorted(i.pk for i in invoices)
    assert {a.after["total_minor"] for a in drafted} == {9900, 9920, 9940, 9960, 9980}


def test_a_faulty_subscription_holds_back_only_itself(meter, growth):
    """A chunk that fails is retried one subscription at a time: the others close, the
    faulty one stays due (nothing of it half-written) and the run reports it."""
    subscriptions = [subscribe(CustomerFactory(), growth, at=OCT) for _ in range(3)]
    faulty = subscriptions[1]
    with connection.cursor() as cursor:
        # A database fault for one subscription's invoice, as real as it gets.
        cursor.execute(
            f"""
            CREATE FUNCTION test_refuse_one_invoice() RETURNS trigger AS $$
            BEGIN
                IF NEW.subscription_id = {int(faulty.pk)} THEN
                    RAISE EXCEPTION 'refused for the test';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_refuse_one_invoice BEFORE INSERT ON invoicing_invoice
                FOR EACH ROW EXECUTE FUNCTION test_refuse_one_invoice();
            """
        )

    with pytest.raises(PeriodCloseFailed) as failed:
        services.periods_close_due(now=NOV)

    assert f"subscriptions {faulty.pk}" in str(failed.value)
    assert "2 were" in str(failed.value)
    assert set(Invoice.objects.values_list("subscription_id", flat=True)) == {
        subscriptions[0].pk,
        subscriptions[2].pk,
    }
    faulty.refresh_from_db()
    assert (faulty.billed_through, faulty.current_period_end) == (OCT, NOV)
    assert not AuditLog.objects.filter(action="invoice.drafted", customer=faulty.customer)


def test_a_period_whose_subscription_changed_since_it_was_read_is_not_claimed(
    customer_a, meter, subscription
):
    """The claim compares the period's end too: a cancel landing between the read and the
    claim leaves the period to the next run, which bills it as it now stands."""
    stale = _subscriptions_to_close().get(pk=subscription.pk)
    services.subscription_cancel(
        actor=None, subscription=subscription, at_period_end=False, now=OCT + timedelta(days=10)
    )
    measured = measure_periods([(stale, OCT, NOV)], now=NOV)

    assert _close_periods([stale], now=NOV, measured=measured) == []
    assert not Invoice.objects.exists()
    assert stale.billed_through == OCT  # the copy is left as it was read

    invoice = services.period_close(subscription_id=subscription.pk, now=NOV)
    assert invoice.period_end == OCT + timedelta(days=10)


def test_finalizing_in_period_order_only(customer_a, meter, subscription):
    services.period_close(subscription_id=subscription.pk, now=NOV)
    dec = datetime(2026, 12, 1, tzinfo=UTC)
    december = services.period_close(subscription_id=subscription.pk, now=dec)
    with pytest.raises(Conflict) as refused:
        services.invoice_finalize(actor=None, invoice=december, now=dec)
    assert refused.value.code == "earlier_invoice_open"


def test_cancel_at_period_end_bills_the_last_period_and_stops(customer_a, meter, subscription):
    services.subscription_cancel(
        actor=None, subscription=subscription, at_period_end=True, now=OCT + timedelta(days=10)
    )
    services.periods_close_due(now=NOV + timedelta(days=40))
    subscription.refresh_from_db()
    assert Invoice.objects.count() == 1
    assert subscription.status == Subscription.Status.CANCELED
    assert subscription.current_period_end is None


def test_cancel_now_prorates_the_flat_fee_by_the_second(customer_a, meter, subscription):
    # Canceled after 15 days and 12 hours of a 31-day October.
    services.subscription_cancel(
        actor=None,
        subscription=subscription,
        at_period_end=False,
        now=OCT + timedelta(days=15, hours=12),
    )
    invoice = services.period_close(subscription_id=subscription.pk, now=NOV)
    assert invoice.period_end == OCT + timedelta(days=15, hours=12)
    # $99 x 15.5 / 31 = $49.50 exactly.
    assert invoice.lines.get(kind="flat_fee").amount_minor == 4950


def test_a_plan_change_splits_the_period_at_the_second_of_the_change(
    customer_a, meter, subscription
):
    scale = plan_version(
        code="scale", components=[flat("310.00"), per_unit(meter, "0.001")], name="Scale"
    )
    change_at = OCT + timedelta(days=10)
    ingest_usage(customer_a, meter, [OCT + timedelta(days=d) for d in range(31)], now=INGEST_NOW)
    services.subscription_change_plan(
        actor=None, subscription=subscription, plan_version=scale, at=change_at
    )

    invoice = services.period_close(subscription_id=subscription.pk, now=NOV)

    lines = list(
        invoice.lines.values_list("kind", "period_start", "period_end", "quantity", "amount_minor")
    )
    assert lines == [
        # Growth for 10 of 31 days: $99 x 10/31 = $31.935... -> $31.94; 10 calls, all free.
        # (A prorated flat fee's quantity is its share of the period.)
        ("flat_fee", OCT, change_at, Decimal("0.322580645161"), 3194),
        ("usage", OCT, change_at, Decimal(10), 0),
        # Scale for 21 of 31 days: $310 x 21/31 = $210.00; 21 calls x $0.001 = $0.021 -> $0.02.
        ("flat_fee", change_at, NOV, Decimal("0.677419354839"), 21000),
        ("usage", change_at, NOV, Decimal(21), 2),
    ]
    assert invoice.total_minor == 3194 + 21000 + 2


def test_finalized_invoices_refuse_changes_through_the_orm_and_raw_sql(
    customer_a, meter, subscription
):
    invoice = services.period_close(subscription_id=subscription.pk, now=NOV)
    invoice = services.invoice_finalize(actor=None, invoice=invoice, now=NOV + timedelta(hours=2))

    for statement in (
        "UPDATE invoicing_invoice SET total_minor = 1 WHERE id = %s",
        "UPDATE invoicing_invoice SET status = 'draft' WHERE id = %s",
        "DELETE FROM invoicing_invoice WHERE id = %s",
        "UPDATE invoicing_invoiceline SET amount_minor = 1 WHERE invoice_id = %s",
        "DELETE FROM invoicing_invoiceline WHERE invoice_id = %s",
    ):
        with (
            pytest.raises(Error, match="finalized"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, [invoice.pk])
    with pytest.raises(Error, match="finalized"), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(total_minor=0)
    with pytest.raises(Error, match="finalized"), transaction.atomic():
        invoice.lines.update(description="changed")
    # Its payment life still moves on.
    Invoice.objects.filter(pk=invoice.pk).update(status="paid", paid_at=NOV + timedelta(days=3))


def test_late_events_of_a_finalized_period_become_an_adjustment_on_the_next_invoice(
    customer_a, meter, subscription
):
    ingest_usage(customer_a, meter, october_calls(1500), now=NOV, endpoint="/v1")
    october = services.period_close(subscription_id=subscription.pk, now=NOV)
    october = services.invoice_finalize(actor=None, invoice=october, now=NOV + timedelta(hours=2))
    # 250 more October calls arrive after the invoice is final: stored late.
    received = NOV + timedelta(days=3)
    late = [OCT + timedelta(days=20)] * 250
    ingest_usage(customer_a, meter, late, now=received, prefix="late", endpoint="/v1")

    dec = datetime(2026, 12, 1, tzinfo=UTC)
    november = services.period_close(subscription_id=subscription.pk, now=dec)

    adjustment = november.lines.get(kind="late_usage")
    # October billed 1,500 (500 over the allowance); now 1,750: 250 more x $0.002 = $0.50.
    assert (adjustment.quantity, adjustment.amount_minor) == (Decimal(250), 50)
    assert adjustment.adjusts_line == october.lines.get(kind="usage")
    assert "late usage" in adjustment.description and october.number in adjustment.description
    assert november.total_minor == 9900 + 50
    october.refresh_from_db()
    assert october.total_minor == 10000  # the finalized invoice never changes

    # Re-rating (and the next invoice) never carries them twice.
    services.invoice_finalize(actor=None, invoice=november, now=dec + timedelta(hours=2))
    january = services.period_close(
        subscription_id=subscription.pk, now=datetime(2027, 1, 1, tzinfo=UTC)
    )
    assert not january.lines.filter(kind="late_usage").exists()


def test_drift_found_when_re_rating_at_finalization_leaves_the_invoice_held(
    customer_a, meter, subscription
):
    ingest_usage(customer_a, meter, october_calls(1200), now=INGEST_NOW, endpoint="/v1")
    invoice = services.period_close(subscription_id=subscription.pk, now=NOV)
    assert invoice.status == "draft"
    rollup = UsageRollup.objects.filter(customer=customer_a, meter=meter).first()
    UsageRollup.objects.filter(pk=rollup.pk).update(event_count=rollup.event_count + 1)

    with pytest.raises(Conflict) as held:
        services.invoice_finalize(actor=None, invoice=invoice, now=NOV + timedelta(hours=2))

    assert held.value.code == "invoice_held"
    invoice.refresh_from_db()
    assert (invoice.status, invoice.number) == ("held", None)
    # The beat job leaves it to finance instead of retrying it for ever.
    assert services.invoices_finalize_due(now=NOV + timedelta(hours=3)) == 0

"""Period close: from a subscription's anniversary to a final, numbered invoice.

1. ``periods_close_due`` (Celery Beat, every few minutes) finds subscriptions whose
   current period has ended and closes each in its own transaction. ``period_close``
   claims the period with a compare-and-swap on ``billed_through`` (and the invoice's
   unique (subscription, period_start) backs it), so two workers never bill it twice.
2. ``invoice_rate`` builds the draft: per phase of the period (a plan change splits it),
   usage from the **batch** track (the raw events), rated with that phase's prices. The
   same usage from the real-time rollups and as the portal shows it is kept beside it as
   ``InvoiceUsageCheck`` rows; any disagreement **holds** the invoice for finance.
3. ``invoices_finalize_due`` finalizes drafts once their grace period is over (stragglers
   of the period arriving meanwhile are included: the draft is re-rated first); finance
   can finalize earlier. Finalizing numbers the invoice, makes it immutable and advances
   metering's "closed through" time, after which events for the period are late.
"""

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.errors import Conflict, InvalidInput
from accounts.models import AuditLog
from accounts.services import Actor, audit_entry, audit_record
from metering import selectors as metering
from metering import services as metering_services
from metering.models import Meter

from ..charges import Catalog, Span, rate_subscription_period
from ..models import (
    Invoice,
    InvoiceLine,
    InvoiceUsageCheck,
    PriceComponent,
    Subscription,
)
from ..pricing import usage_price
from ..rating import rate_usage
from ..reconciliation import Measured, measure_periods
from .stripe_sync import invoice_stripe_sync_enqueue
from .subscriptions import period_end_after

logger = logging.getLogger(__name__)


# Additive meters only (Meter.ADDITIVE): a late event adds to them. A late reading of a
# gauge or maximum can lower an invoiced figure; those stay with the batch track and finance.


def _late_usage_lines(
    invoice: Invoice,
    *,
    late: list[tuple[str, datetime, datetime]],
    received_since: datetime | None,
    received_before: datetime,
    first_position: int,
) -> list[InvoiceLine]:
    """Adjustment lines for late events of earlier, finalized invoices.

    For each earlier usage line that late events fall into, the adjustment is what the
    line would cost with everything now known (its quantity from the raw events, late ones
    included) minus what it and its earlier adjustments billed, rated with the line's own
    price: exact, and nothing is carried twice whatever the window.
    """
    touched = {
        (name, moment)
        for name, moment, received in late
        if received_since is None or received >= received_since
    }
    if not touched:
        return []
    earlier = (
        InvoiceLine.objects.filter(
            invoice__subscription=invoice.subscription_id,
            invoice__status__in=Invoice.BILLED,
            kind=InvoiceLine.Kind.USAGE,
            meter__aggregation__in=Meter.ADDITIVE,
            meter__code__in={name for name, _ in touched},
        )
        .select_related("meter", "price_component", "invoice")
        .order_by("period_start", "position")
    )
    adjustments = []
    for line in earlier:
        if not any(
            name == line.meter.code and line.period_start <= moment < line.period_end
            for name, moment in touched
        ):
            continue
        known = metering.usage_total(
            customer=invoice.customer,
            meter=line.meter,
            start=line.period_start,
            end=line.period_end,
            track="batch",
            late_received_before=received_before,
        )
        adjusted = line.adjustments.filter(invoice__status__in=Invoice.BILLED).exclude(
            invoice_id=invoice.pk
        )
        billed = line.quantity + sum((a.quantity for a in adjusted), Decimal(0))
        if known == billed:
            continue
        price = usage_price(line.price_component)
        amount = (
            rate_usage(price, known, currency=invoice.currency).amount_minor
            - rate_usage(price, billed, currency=invoice.currency).amount_minor
        )
        period = f"{line.period_start:%Y-%m-%d} to {line.period_end:%Y-%m-%d}"
        adjustments.append(
            InvoiceLine(
                position=first_position + len(adjustments),
                kind=InvoiceLine.Kind.LATE_USAGE,
                description=f"{line.meter.name}: late usage for {period} "
                f"(invoice {line.invoice.number})",
                meter=line.meter,
                price_component=line.price_component,
                period_start=line.period_start,
                period_end=line.period_end,
                quantity=known - billed,
                unit_price=line.unit_price,
                amount_minor=amount,
                adjusts_line=line,
            )
        )
    return adjustments


def _rated(
    invoice: Invoice, *, now: datetime, measured: Measured
) -> tuple[list[InvoiceLine], list[InvoiceUsageCheck]]:
    """The invoice's period rated into unsaved lines and the gate's evidence beside them;
    sets the invoice's totals and status (held when the gate finds a difference)."""
    customer = invoice.customer
    subscription = invoice.subscription
    released_figures = (
        {}
        if invoice.released_at is None
        else {(c.meter_id, c.period_start): c.batch_quantity for c in invoice.usage_checks.all()}
    )
    checks: list[InvoiceUsageCheck] = []

    def billed_usage(component: PriceComponent, span: Span) -> Decimal:
        """The batch track's figure, with the real-time and portal ones kept beside it."""
        figures = measured.figures[(customer.pk, component.meter_id, span.start, span.end)]
        checks.append(
            InvoiceUsageCheck(
                meter=component.meter,
                period_start=span.start,
                period_end=span.end,
                batch_quantity=figures.batch,
                realtime_quantity=figures.realtime,
                portal_quantity=figures.portal,
                checked_at=now,
            )
        )
        return figures.batch

    carried = measured.carried[(subscription.pk, invoice.period_start)]
    lines, balance = rate_subscription_period(
        subscription,
        invoice.period_start,
        invoice.period_end,
        usage_of=billed_usage,
        commitment_balance_minor=carried.commitment_balance_minor,
        catalog=measured.catalog,
    )
    lines += _late_usage_lines(
        invoice,
        late=measured.late.get(customer.pk, []),
        received_since=carried.late_usage_through,
        received_before=measured.late_before,
        first_position=len(lines) + 1,
    )

    mismatched = [c for c in checks if not c.matches]
    if invoice.released_at is not None:
        # Finance reviewed and released these figures: hold again only if they moved.
        mismatched = [
            c
            for c in mismatched
            if released_figures.get((c.meter_id, c.period_start)) != c.batch_quantity
        ]
    charges = (
        InvoiceLine.Kind.FLAT_FEE,
        InvoiceLine.Kind.USAGE,
        InvoiceLine.Kind.MINIMUM_TRUE_UP,
        InvoiceLine.Kind.COMMITMENT_FEE,
    )
    invoice.subtotal_minor = sum(line.amount_minor for line in lines if line.kind in charges)
    invoice.total_minor = sum(line.amount_minor for line in lines)
    invoice.commitment_balance_after_minor = balance
    invoice.late_usage_through = measured.late_before
    invoice.rated_at = now
    invoice.status = Invoice.Status.HELD if mismatched else Invoice.Status.DRAFT
    return lines, checks


def invoice_rate(
    invoice: Invoice, *, now: datetime | None = None, measured: Measured | None = None
) -> bool:
    """Rebuild a draft's lines and its reconciliation evidence, and save it; returns True
    when the gate holds it. The caller holds the invoice row locked. ``measured`` comes
    from ``measure_periods`` when the caller read ahead for many periods."""
    if not invoice.is_editable:
        raise Conflict(f"Invoice {invoice} is finalized.", code="invoice_finalized")
    now = now or timezone.now()
    if measured is None:
        measured = measure_periods(
            [(invoice.subscription, invoice.period_start, invoice.period_end)], now=now
        )
    lines, checks = _rated(invoice, now=now, measured=measured)
    invoice.lines.all().delete()
    invoice.usage_checks.all().delete()
    invoice.save()
    _insert_parts([(invoice, lines, checks)])
    return invoice.status == Invoice.Status.HELD


def _insert_parts(rated: list[tuple[Invoice, list[InvoiceLine], list[InvoiceUsageCheck]]]) -> None:
    """Saved invoices' lines and gate evidence, in two statements for any number."""
    for invoice, lines, checks in rated:
        for part in (*lines, *checks):
            part.invoice = invoice
    InvoiceLine.objects.bulk_create([line for _, lines, _ in rated for line in lines])
    InvoiceUsageCheck.objects.bulk_create([check for _, _, checks in rated for check in checks])


def _subscriptions_to_close():
    return Subscription.objects.select_related("customer", "plan_version__plan").prefetch_related(
        "phases__plan_version__plan"
    )


# Set-based because a run claims hundreds of periods at once. Each period is claimed
# only while the subscription still stands where it was read (billed through the
# period's start, the period ending where it did): the compare-and-swap that keeps two
# workers from billing one period, backed by the invoice's unique (subscription,
# period_start). SKIP LOCKED lets concurrent runs share the work instead of queueing: a
# row another transaction holds is left to it (or to the next run, if that was a plan
# change).
_CLAIM_PERIODS = """
    WITH claimable AS (
        SELECT s.id, p.period_end, p.next_end
        FROM unnest(%(ids)s::bigint[], %(starts)s::timestamptz[], %(ends)s::timestamptz[],
                    %(next_ends)s::timestamptz[]) AS p(id, period_start, period_end, next_end)
        JOIN invoicing_subscription s
          ON s.id = p.id AND s.billed_through = p.period_start
         AND s.current_period_end = p.period_end
        ORDER BY s.id
        FOR UPDATE OF s SKIP LOCKED
    )
    UPDATE invoicing_subscription s
    SET billed_through = c.period_end,
        current_period_end = c.next_end,
        status = CASE WHEN c.next_end IS NULL THEN %(canceled)s ELSE s.status END,
        updated_at = %(now)s
    FROM claimable c
    WHERE s.id = c.id
    RETURNING s.id
"""


def _close_periods(
    subscriptions: list[Subscription], *, now: datetime, measured: Measured
) -> list[Invoice]:
    """Close the ended current periods of these subscriptions (loaded with
    ``_subscriptions_to_close``) in one transaction: claim them in one statement, rate
    each claimed one from ``measured``, and insert the drafts, their lines, their gate
    evidence and their audit rows in a statement each."""
    periods = [
        (s, s.billed_through, s.current_period_end, period_end_after(s, s.current_period_end))
        for s in subscriptions
        if s.current_period_end is not None and s.current_period_end <= now
    ]
    if not periods:
        return []
    finalize_after = now + timedelta(minutes=settings.INVOICING_FINALIZE_GRACE_MINUTES)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _CLAIM_PERIODS,
                {
                    "ids": [s.pk for s, *_ in periods],
                    "starts": [start for _, start, _, _ in periods],
                    "ends": [end for _, _, end, _ in periods],
                    "next_ends": [next_end for *_, next_end in periods],
                    "canceled": Subscription.Status.CANCELED,
                    "now": now,
                },
            )
            claimed = {pk for (pk,) in cursor.fetchall()}
        rated = []
        for subscription, start, end, _ in periods:
            if subscription.pk not in claimed:
                continue
            invoice = Invoice(
                customer=subscription.customer,
                subscription=subscription,
                currency=subscription.plan_version.plan.currency,
                period_start=start,
                period_end=end,
                finalize_after=finalize_after,
            )
            rated.append((invoice, *_rated(invoice, now=now, measured=measured)))
        invoices = Invoice.objects.bulk_create([invoice for invoice, _, _ in rated])
        _insert_parts(rated)
        AuditLog.objects.bulk_create(
            audit_entry(
                actor=None,
                action="invoice.drafted",
                obj=invoice,
                customer=invoice.customer,
                after={
                    "period_start": invoice.period_start.isoformat(),
                    "period_end": invoice.period_end.isoformat(),
                    "total_minor": invoice.total_minor,
                    "held": invoice.status == Invoice.Status.HELD,
                },
            )
            for invoice in invoices
        )
    # Only now: a chunk that failed is retried from the subscriptions as they were read.
    for subscription, _, end, next_end in periods:
        if subscription.pk in claimed:
            subscription.billed_through, subscription.current_period_end = end, next_end
            if next_end is None:
                subscription.status = Subscription.Status.CANCELED
    return invoices


def period_close(
    *,
    subscription_id: int,
    now: datetime | None = None,
) -> Invoice | None:
    """Close the subscription's current period if it has ended; None if there was nothing
    to close or another worker closed it (or is closing it)."""
    now = now or timezone.now()
    subscription = _subscriptions_to_close().filter(pk=subscription_id).first()
    if subscription is None or subscription.current_period_end is None:
        return None
    if subscription.current_period_end > now:
        return None
    measured = measure_periods(
        [(subscription, subscription.billed_through, subscription.current_period_end)], now=now
    )
    closed = _close_periods([subscription], now=now, measured=measured)
    return closed[0] if closed else None


# Periods read ahead and written together: a few usage queries per meter, and a few
# statements, for the whole chunk.
CLOSE_CHUNK = 500


class PeriodCloseFailed(Exception):
    """Some periods could not be closed; the others were."""


def periods_close_due(*, now: datetime | None = None) -> int:
    """Close every period that has ended, a chunk per transaction. Safe to run twice and
    from several workers at once. A chunk that fails is retried one subscription at a
    time, so one faulty subscription holds back only itself (it is logged, and the run
    raises ``PeriodCloseFailed`` once everything else is closed)."""
    now = now or timezone.now()
    due = list(
        Subscription.objects.filter(current_period_end__lte=now)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    catalog = Catalog()
    closed = 0
    failed: list[int] = []
    for offset in range(0, len(due), CLOSE_CHUNK):
        chunk = list(_subscriptions_to_close().filter(pk__in=due[offset : offset + CLOSE_CHUNK]))
        measured = measure_periods(
            [(s, s.billed_through, s.current_period_end) for s in chunk], catalog=catalog, now=now
        )
        try:
            closed += len(_close_periods(chunk, now=now, measured=measured))
            continue
        except Exception:
            logger.exception(
                "Closing %d periods together failed: closing them one by one", len(chunk)
            )
        for subscription in chunk:
            try:
                closed += len(_close_periods([subscription], now=now, measured=measured))
            except Exception:
                logger.exception("Closing the period of subscription %s failed", subscription.pk)
                failed.append(subscription.pk)
    if failed:
        raise PeriodCloseFailed(
            f"{len(failed)} period(s) could not be closed (subscriptions "
            f"{', '.join(map(str, failed[:20]))}); {closed} were."
        )
    return closed


def _next_number(series: str, year: int) -> int:
    # One statement: creates the year's row or increments it under its row lock, so
    # concurrent finalizations queue here and a rolled-back one returns its number.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO invoicing_documentsequence AS seq (series, year, last_number)
            VALUES (%s, %s, 1)
            ON CONFLICT (series, year) DO UPDATE SET last_number = seq.last_number + 1
            RETURNING last_number
            """,
            [series, year],
        )
        return cursor.fetchone()[0]


def document_number(series: str, now: datetime) -> tuple[int, int, str]:
    year = now.year
    seq = _next_number(series, year)
    return year, seq, f"{series}-{year}-{seq:06d}"


def invoice_finalize(
    *,
    actor: Actor,
    invoice: Invoice,
    now: datetime | None = None,
    measured: Measured | None = None,
) -> Invoice:
    """Re-rate the draft (stragglers), then number it and make it final.

    If re-rating finds the tracks disagreeing, the invoice is held — and stays held: the
    hold commits before the refusal is raised. ``measured`` (from ``measure_periods``)
    spares the usage queries when a caller read ahead for many invoices.
    """
    now = now or timezone.now()
    invoice = Invoice.objects.select_related("subscription", "customer").get(pk=invoice.pk)
    if measured is None and invoice.subscription is not None and invoice.is_editable:
        subscription = _subscriptions_to_close().get(pk=invoice.subscription_id)
        measured = measure_periods(
            [(subscription, invoice.period_start, invoice.period_end)], now=now
        )
    invoice, held = _finalize_or_hold(actor=actor, invoice=invoice, now=now, measured=measured)
    if held:
        raise Conflict(
            "Re-rating found usage figures that disagree: the invoice is now held.",
            code="invoice_held",
        )
    return invoice


@transaction.atomic
def _finalize_or_hold(
    *,
    actor: Actor,
    invoice: Invoice,
    now: datetime,
    measured: Measured | None,
) -> tuple[Invoice, bool]:
    invoice = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("customer", "subscription__plan_version__plan")
        .get(pk=invoice.pk)
    )
    if invoice.status == Invoice.Status.HELD:
        raise Conflict(
            "This invoice is held by the reconciliation gate: review and release it first.",
            code="invoice_held",
        )
    if invoice.status != Invoice.Status.DRAFT:
        raise Conflict(f"Invoice {invoice} is already finalized.", code="invoice_finalized")
    earlier = Invoice.objects.filter(
        subscription=invoice.subscription_id,
        period_start__lt=invoice.period_start,
        status__in=Invoice.EDITABLE,
    )
    if earlier.exists():
        raise Conflict(
            "An earlier invoice of this subscription is not final yet: finalize it first.",
            code="earlier_invoice_open",
        )
    if invoice_rate(invoice, now=now, measured=measured):
        return invoice, True
    invoice.number_year, invoice.number_seq, invoice.number = document_number("INV", now)
    invoice.status = Invoice.Status.OPEN
    invoice.finalized_at = now
    invoice.due_at = now + timedelta(days=settings.INVOICING_PAYMENT_TERMS_DAYS)
    invoice.save()
    metering_services.usage_close_through(
        actor=actor, customer=invoice.customer, closed_through=invoice.period_end
    )
    audit_record(
        actor=actor,
        action="invoice.finalized",
        obj=invoice,
        customer=invoice.customer,
        after={"number": invoice.number, "total_minor": invoice.total_minor},
    )
    transaction.on_commit(lambda: invoice_stripe_sync_enqueue(invoice.pk))
    return invoice, False


def invoices_finalize_due(*, now: datetime | None = None) -> int:
    """Finalize drafts whose grace period is over, oldest period first; each in its own
    transaction, re-rated from figures measured a chunk at a time. Held invoices wait for
    finance."""
    now = now or timezone.now()
    due = list(
        Invoice.objects.filter(status=Invoice.Status.DRAFT, finalize_after__lte=now)
        .order_by("period_start", "pk")
        .values_list("pk", "subscription_id")
    )
    catalog = Catalog()
    finalized = 0
    for offset in range(0, len(due), CLOSE_CHUNK):
        chunk = due[offset : offset + CLOSE_CHUNK]
        invoices = Invoice.objects.in_bulk([pk for pk, _ in chunk])
        subscriptions = _subscriptions_to_close().in_bulk({s for _, s in chunk if s})
        measured = measure_periods(
            [
                (subscriptions[i.subscription_id], i.period_start, i.period_end)
                for i in invoices.values()
                if i.subscription_id
            ],
            catalog=catalog,
            now=now,
        )
        for pk, _ in chunk:
            try:
                invoice_finalize(actor=None, invoice=invoices[pk], now=now, measured=measured)
            except Conflict:
                continue  # held by re-rating, or an earlier one is held: finance decides
            finalized += 1
    return finalized


@transaction.atomic
def invoice_release(*, actor: Actor, invoice: Invoice, note: str) -> Invoice:
    """Finance reviewed a held invoice's discrepancies and bills the batch figures."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if invoice.status != Invoice.Status.HELD:
        raise Conflict("Only a held invoice can be released.", code="invoice_not_held")
    if not note.strip():
        raise InvalidInput("Say what you reviewed.", field="note", code="note_required")
    invoice.status = Invoice.Status.DRAFT
    invoice.released_by = actor
    invoice.released_at = timezone.now()
    invoice.save(update_fields=["status", "released_by", "released_at", "updated_at"])
    audit_record(
        actor=actor,
        action="invoice.released",
        obj=invoice,
        customer=invoice.customer,
        after={
            "note": note,
            "checks": [
                {
                    "meter": c.meter_id,
                    "batch": str(c.batch_quantity),
                    "realtime": str(c.realtime_quantity),
                    "portal": str(c.portal_quantity),
                }
                for c in invoice.usage_checks.all()
            ],
        },
    )
    return invoice

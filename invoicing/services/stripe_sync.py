"""Push finalized invoices and their credit notes to Stripe, exactly once.

``invoice_stripe_sync`` makes one Stripe invoice per invoice, whatever runs before it failed
and however many run at once. Each step is safe to crash after:

1. **Decide** under our invoice's row lock, in a short transaction: is it finalized, is
   anything left to push; count the attempt. The lock is released before any Stripe call.
2. **Customer**: the tenant's ``StripeCustomer`` row, or create it in Stripe and save the
   row at once (see :func:`stripe_customer_ensure`).
3. **Create** the draft with key ``meterbook:invoice:<id>:create``. The key comes from our
   id, so a timeout or a crash before step 4 replays the same object. A later attempt first
   looks for that object by metadata, in case Stripe has forgotten the key (24 hours).
4. **Store** its id at once, in its own tiny transaction, as a compare-and-swap on an empty
   ``stripe_invoice_id``: a second, different id can never be stored.
5. **Items**: one per non-zero line, key ``...:line:<line_id>``, skipping lines the Stripe
   invoice already has; check the totals agree; **finalize** (``...:finalize``); **void**
   (``...:void``) if ours is void.
6. **Mark synced**, again a compare-and-swap: if our invoice was voided meanwhile, the
   round did not push that, so it runs again.

No database transaction spans a call about an invoice or a credit note: a worker waiting on
Stripe (up to minutes when Stripe struggles) holds no row lock and no snapshot. Parallel
runs stay correct because every write to Stripe carries a key derived from our ids (Stripe
answers the same key with the same object) and because our bookkeeping is compare-and-swap.
A tenant's first sync creates its Stripe customer under a session-level advisory lock (not
a transaction), so two syncs never create two customers even against a server that ignores
idempotency keys.

Without ``STRIPE_API_KEY`` every function here is a no-op.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import stripe
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.errors import DomainError
from accounts.models import Customer
from accounts.services import audit_record

from .. import stripe_gateway
from ..models import CreditNote, Invoice, InvoiceLine, StripeCustomer
from ..stripe_gateway import StripeRejected, idempotency_key, stripe_enabled

Sleep = Callable[[float], None]

FINALIZED = (
    Invoice.Status.OPEN,
    Invoice.Status.PAID,
    Invoice.Status.PAYMENT_FAILED,
    Invoice.Status.UNCOLLECTIBLE,
    Invoice.Status.VOID,
)
# Our credit note reasons as Stripe's (Stripe knows only four); ours is kept in metadata.
STRIPE_CREDIT_NOTE_REASON = {
    CreditNote.Reason.DUPLICATE: "duplicate",
    CreditNote.Reason.BILLING_ERROR: "order_change",
    CreditNote.Reason.DISPUTE_ACCEPTED: "product_unsatisfactory",
}
# Stripe's API keeps ISK two-decimal (100 = 1 krona) where ISO 4217, and so our minor
# units, have none: our amounts are multiplied by this on the way out.
STRIPE_UNITS_PER_MINOR = {"ISK": 100}
PAGE_SIZE = 100
# A finalized invoice the fast path (enqueue after commit) has had this long to sync.
SWEEP_AFTER = timedelta(minutes=10)


class StripeSyncConflict(DomainError):
    """Stripe holds something that disagrees with our records; retrying will not help.

    Finance looks at ``stripe_last_error``.
    """

    status = 409
    code = "stripe_conflict"


# --- Stripe calls ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Api:
    """The gateway with one client and one ``sleep``; answers as plain dicts."""

    client: stripe.StripeClient
    sleep: Sleep

    @classmethod
    def from_settings(cls, sleep: Sleep) -> _Api:
        return cls(stripe_gateway.client(), sleep)

    def call(self, operation: Callable, params: dict, key: str | None) -> dict:
        result = stripe_gateway.call(
            operation, params=params, idempotency_key=key, sleep=self.sleep
        )
        return result.to_dict()

    def each(self, operation: Callable, params: dict) -> Iterator[dict]:
        """Every object of a list endpoint, page by page."""
        after = None
        while True:
            page_params = {**params, "limit": PAGE_SIZE}
            if after:
                page_params["starting_after"] = after
            page = self.call(operation, page_params, None)
            yield from page["data"]
            if not page["has_more"] or not page["data"]:
                return
            after = page["data"][-1]["id"]


def _stripe_amount(amount_minor: int, currency: str) -> int:
    """Our minor units as Stripe's ``amount`` for ``currency``."""
    return amount_minor * STRIPE_UNITS_PER_MINOR.get(currency, 1)


@contextmanager
def _advisory_lock(name: str) -> Iterator[None]:
    """Serialize on ``name`` for the block, holding no transaction open (a session lock)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [name])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [name])


# --- Customers ---------------------------------------------------------------------------


def stripe_customer_ensure(*, customer: Customer, sleep: Sleep = time.sleep) -> StripeCustomer:
    """The tenant's Stripe customer: our row, or created in Stripe and saved at once."""
    found = StripeCustomer.objects.filter(customer=customer).first()
    if found:
        return found
    api = _Api.from_settings(sleep)
    # Two first syncs of one tenant queue here; the second finds the first one's row.
    with _advisory_lock(f"meterbook:stripe_customer:{customer.pk}"):
        found = StripeCustomer.objects.filter(customer=customer).first()
        if found:
            return found
        params = {
            "name": customer.name,
            "metadata": {
                "meterbook_customer": str(customer.pk),
                "meterbook_external_id": customer.external_id,
            },
        }
        if customer.billing_email:
            params["email"] = customer.billing_email
        created = api.call(
            api.client.v1.customers.create,
            params,
            idempotency_key("customer", customer.pk, "create"),
        )
        with transaction.atomic():
            record = StripeCustomer.objects.create(
                customer=customer, stripe_customer_id=created["id"]
            )
            audit_record(
                actor=None,
                action="stripe_customer.created",
                obj=record,
                customer=customer,
                after={"stripe_customer_id": record.stripe_customer_id},
            )
    return record


# --- Invoices ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _InvoicePlan:
    invoice: Invoice
    lines: list[InvoiceLine]  # the non-zero ones, in order
    void: bool


def _invoice_claim(invoice_id: int) -> tuple[Invoice, _InvoicePlan | None]:
    """Step 1: what is left to push, decided under the row lock (held only for this)."""
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("customer")
            .get(pk=invoice_id)
        )
        if invoice.status not in FINALIZED:
            return invoice, None
        void = invoice.status == Invoice.Status.VOID
        # Payment statuses come from Stripe (webhooks): once pushed, only a void is news.
        # A void invoice is checked against Stripe each time (one read), never by clocks.
        if invoice.stripe_synced_at and not void:
            return invoice, None
        invoice.stripe_sync_attempts += 1
        invoice.save(update_fields=["stripe_sync_attempts", "updated_at"])
        lines = [line for line in invoice.lines.order_by("position") if line.amount_minor != 0]
    return invoice, _InvoicePlan(invoice, lines, void)


def _days_until_due(invoice: Invoice) -> int:
    # From our own dates, not from today: the create call's parameters must be the same on
    # every attempt, or Stripe refuses the replay of its key.
    if invoice.due_at is None or invoice.finalized_at is None:
        return settings.INVOICING_PAYMENT_TERMS_DAYS
    seconds = (invoice.due_at - invoice.finalized_at).total_seconds()
    return max(0, math.ceil(seconds / 86400))


def _invoice_create_params(invoice: Invoice, stripe_customer_id: str) -> dict:
    return {
        "customer": stripe_customer_id,
        "currency": invoice.currency.lower(),
        "collection_method": "send_invoice",
        "days_until_due": _days_until_due(invoice),
        "auto_advance": False,
        "pending_invoice_items_behavior": "exclude",
        "description": f"Invoice {invoice.number}",
        "metadata": {"meterbook_invoice": str(invoice.pk), "meterbook_number": invoice.number},
    }


def _invoice_find(api: _Api, invoice: Invoice, stripe_customer_id: str) -> dict | None:
    """The Stripe invoice an earlier attempt created, found by its metadata."""
    found = [
        remote
        for remote in api.each(api.client.v1.invoices.list, {"customer": stripe_customer_id})
        if remote["metadata"].get("meterbook_invoice") == str(invoice.pk)
    ]
    if len(found) > 1:
        raise StripeSyncConflict(
            f"Stripe has {len(found)} invoices for invoice {invoice.number}: "
            f"{', '.join(r['id'] for r in found)}. Void the extra ones in Stripe."
        )
    return found[0] if found else None


def _invoice_store_stripe_id(invoice_id: int, stripe_invoice_id: str) -> None:
    """Step 4: remember the Stripe invoice at once; never replace one we already hold."""
    with transaction.atomic():
        stored = Invoice.objects.filter(pk=invoice_id, stripe_invoice_id="").update(
            stripe_invoice_id=stripe_invoice_id, updated_at=timezone.now()
        )
        if stored:
            return
        held = Invoice.objects.values_list("stripe_invoice_id", flat=True).get(pk=invoice_id)
    if held != stripe_invoice_id:
        raise StripeSyncConflict(
            f"Invoice {invoice_id} is already synced to {held}, not {stripe_invoice_id}."
        )


def _invoice_add_items(api: _Api, plan: _InvoicePlan, stripe_invoice: dict) -> None:
    invoice = plan.invoice
    stripe_id = stripe_invoice["id"]
    present = {
        line["metadata"].get("meterbook_line")
        for line in api.each(
            functools.partial(api.client.v1.invoices.line_items.list, stripe_id), {}
        )
    }
    for line in plan.lines:
        if str(line.pk) in present:
            continue
        api.call(
            api.client.v1.invoice_items.create,
            {
                "customer": stripe_invoice["customer"],
                "invoice": stripe_id,
                # Stripe's units (see _stripe_amount); negative for discounts
                "amount": _stripe_amount(line.amount_minor, invoice.currency),
                "currency": invoice.currency.lower(),
                "description": line.description,
                "period": {
                    "start": int(line.period_start.timestamp()),
                    "end": int(line.period_end.timestamp()),
                },
                "metadata": {"meterbook_invoice": str(invoice.pk), "meterbook_line": str(line.pk)},
            },
            idempotency_key("invoice", invoice.pk, "line", line.pk),
        )


def _check_total(invoice: Invoice, stripe_invoice: dict) -> None:
    expected = _stripe_amount(invoice.total_minor, invoice.currency)
    if stripe_invoice["total"] != expected:
        raise StripeSyncConflict(
            f"Stripe invoice {stripe_invoice['id']} totals {stripe_invoice['total']} "
            f"{stripe_invoice['currency']}; invoice {invoice.number} totals {expected}."
        )


def _invoice_push(api: _Api, plan: _InvoicePlan) -> None:
    """Steps 2 to 5: every call here is safe to repeat."""
    invoice = plan.invoice
    invoices = api.client.v1.invoices
    customer_id = stripe_customer_ensure(
        customer=invoice.customer, sleep=api.sleep
    ).stripe_customer_id

    remote = None
    if not invoice.stripe_invoice_id:
        if invoice.stripe_sync_attempts > 1:  # an earlier attempt may have created it
            remote = _invoice_find(api, invoice, customer_id)
        if remote is None:
            remote = api.call(
                invoices.create,
                _invoice_create_params(invoice, customer_id),
                idempotency_key("invoice", invoice.pk, "create"),
            )
        _invoice_store_stripe_id(invoice.pk, remote["id"])
        stripe_id = remote["id"]
    else:
        stripe_id = invoice.stripe_invoice_id
    if remote is None:
        remote = api.call(functools.partial(invoices.retrieve, stripe_id), {}, None)

    if remote["status"] == "draft":
        _invoice_add_items(api, plan, remote)
        _check_total(invoice, api.call(functools.partial(invoices.retrieve, stripe_id), {}, None))
        remote = api.call(
            functools.partial(invoices.finalize_invoice, stripe_id),
            {"auto_advance": False},
            idempotency_key("invoice", invoice.pk, "finalize"),
        )
    else:
        _check_total(invoice, remote)

    if plan.void:
        if remote["status"] in ("open", "uncollectible"):
            api.call(
                functools.partial(invoices.void_invoice, stripe_id),
                {},
                idempotency_key("invoice", invoice.pk, "void"),
            )
        elif remote["status"] == "paid" and remote["amount_paid"] == 0:
            pass  # nothing was due (Stripe marks such invoices paid): nothing to void
        elif remote["status"] != "void":
            raise StripeSyncConflict(
                f"Invoice {invoice.number} is void but Stripe invoice {stripe_id} is "
                f"{remote['status']}: settle it in Stripe (refund) first."
            )
    elif remote["status"] == "void" and not _voided_since(invoice):
        # Someone voided it in Stripe: nobody will collect it, so it is not "synced".
        raise StripeSyncConflict(
            f"Stripe invoice {stripe_id} is void but invoice {invoice.number} is "
            f"{invoice.status}: void it here too, or settle it with the customer."
        )


def _voided_since(invoice: Invoice) -> bool:
    """Whether finance voided ours after this round read it (a later round pushes that)."""
    return Invoice.objects.filter(pk=invoice.pk, status=Invoice.Status.VOID).exists()


def _invoice_mark_synced(invoice_id: int, *, void: bool) -> bool:
    """Step 6; False if the invoice was voided after this round decided."""
    now = timezone.now()
    rows = Invoice.objects.filter(pk=invoice_id)
    if not void:
        rows = rows.exclude(status=Invoice.Status.VOID)
    return bool(rows.update(stripe_synced_at=now, stripe_last_error="", updated_at=now))


def _error_text(error: DomainError) -> str:
    return f"{type(error).__name__} ({error.code}): {error.message}"[:2000]


def invoice_stripe_sync(*, invoice_id: int, sleep: Sleep = time.sleep) -> Invoice | None:
    """Make (or complete) the invoice's one Stripe invoice; ``None`` if Stripe is off or
    the invoice is not finalized. Raises the gateway's errors (after recording them):
    ``StripeUnavailable`` is worth retrying, the rest needs a person."""
    if not stripe_enabled():
        return None
    api = _Api.from_settings(sleep)
    # Two rounds at most: a round is redone only if the invoice was voided meanwhile, and a
    # void is final.
    for _round in range(2):
        invoice, plan = _invoice_claim(invoice_id)
        if plan is None:
            return invoice if invoice.status in FINALIZED else None
        try:
            _invoice_push(api, plan)
        except DomainError as error:  # the gateway's errors and conflicts, never swallowed
            Invoice.objects.filter(pk=invoice_id).update(
                stripe_last_error=_error_text(error), updated_at=timezone.now()
            )
            raise
        if _invoice_mark_synced(invoice_id, void=plan.void):
            break
    return Invoice.objects.get(pk=invoice_id)


# --- Credit notes ------------------------------------------------------------------------


def _credit_note_params(note: CreditNote, stripe_invoice_id: str) -> dict:
    params = {
        "invoice": stripe_invoice_id,
        "amount": _stripe_amount(note.total_minor, note.invoice.currency),
        "memo": note.memo[:5000],
        "metadata": {
            "meterbook_credit_note": str(note.pk),
            "meterbook_number": note.number,
            "meterbook_reason": note.reason,
        },
    }
    if note.reason in STRIPE_CREDIT_NOTE_REASON:
        params["reason"] = STRIPE_CREDIT_NOTE_REASON[note.reason]
    return params


def credit_note_stripe_sync(*, credit_note_id: int, sleep: Sleep = time.sleep) -> CreditNote | None:
    """Push a credit note onto its invoice's Stripe invoice, once (syncing the invoice
    first if it is not yet). Skipped: the note a void issues, and notes of void invoices
    (the Stripe void cancels the whole invoice). ``None`` if Stripe is off."""
    if not stripe_enabled():
        return None
    note = CreditNote.objects.select_related("invoice").get(pk=credit_note_id)
    if note.stripe_credit_note_id or note.reason == CreditNote.Reason.INVOICE_VOIDED:
        return note
    invoice = note.invoice
    if invoice.status != Invoice.Status.VOID and not invoice.stripe_synced_at:
        invoice_stripe_sync(invoice_id=invoice.pk, sleep=sleep)  # raises if it cannot
        invoice.refresh_from_db()
    if invoice.status == Invoice.Status.VOID:
        return note

    api = _Api.from_settings(sleep)
    notes = api.client.v1.credit_notes
    try:
        # Normally the key replays an earlier attempt's note; the search covers a
        # forgotten key.
        remote = next(
            (
                found
                for found in api.each(notes.list, {"invoice": invoice.stripe_invoice_id})
                if found["metadata"].get("meterbook_credit_note") == str(note.pk)
            ),
            None,
        )
        if remote is None:
            remote = api.call(
                notes.create,
                _credit_note_params(note, invoice.stripe_invoice_id),
                idempotency_key("credit_note", note.pk, "create"),
            )
    except DomainError as error:  # recorded for finance, never swallowed
        CreditNote.objects.filter(pk=note.pk).update(stripe_last_error=_error_text(error))
        raise
    CreditNote.objects.filter(pk=note.pk, stripe_credit_note_id="").update(
        stripe_credit_note_id=remote["id"], stripe_synced_at=timezone.now(), stripe_last_error=""
    )
    note.refresh_from_db()
    if note.stripe_credit_note_id != remote["id"]:
        raise StripeSyncConflict(
            f"Credit note {note.number} is already synced to {note.stripe_credit_note_id}, "
            f"not {remote['id']}."
        )
    return note


# --- Enqueueing --------------------------------------------------------------------------


def invoice_stripe_sync_enqueue(invoice_id: int) -> None:
    """Queue the invoice's sync (``transaction.on_commit`` calls this after finalize/void)."""
    if stripe_enabled():
        from ..tasks import invoice_stripe_sync as task  # tasks import services

        task.delay(invoice_id)


def credit_note_stripe_sync_enqueue(credit_note_id: int) -> None:
    """Queue a credit note's sync (``transaction.on_commit`` calls this after issuing)."""
    if stripe_enabled():
        from ..tasks import credit_note_stripe_sync as task

        task.delay(credit_note_id)


def stripe_sync_pending() -> tuple[list[int], list[int]]:
    """(invoice ids, credit note ids) still to push that the fast path should have pushed
    by now: the enqueue after commit is lost if the broker was down or a worker died."""
    if not stripe_enabled():
        return [], []
    before = timezone.now() - SWEEP_AFTER
    invoices = (
        Invoice.objects.filter(status__in=FINALIZED, finalized_at__lte=before)
        .filter(
            Q(stripe_synced_at__isnull=True)
            | Q(status=Invoice.Status.VOID, stripe_synced_at__lt=F("voided_at"))
        )
        # Refused or conflicting: a person looks first (running the task again clears it).
        .exclude(stripe_last_error__startswith=StripeRejected.__name__)
        .exclude(stripe_last_error__startswith=StripeSyncConflict.__name__)
    )
    notes = (
        CreditNote.objects.filter(stripe_credit_note_id="", issued_at__lte=before)
        .exclude(
            Q(reason=CreditNote.Reason.INVOICE_VOIDED) | Q(invoice__status=Invoice.Status.VOID)
        )
        # A note's sync pushes its invoice first: same rule as for the invoice itself,
        # and for the note's own refusals.
        .exclude(invoice__stripe_last_error__startswith=StripeRejected.__name__)
        .exclude(invoice__stripe_last_error__startswith=StripeSyncConflict.__name__)
        .exclude(stripe_last_error__startswith=StripeRejected.__name__)
        .exclude(stripe_last_error__startswith=StripeSyncConflict.__name__)
    )
    return (
        list(invoices.order_by("pk").values_list("pk", flat=True)),
        list(notes.order_by("pk").values_list("pk", flat=True)),
    )

"""Stripe's webhooks: verified by the SDK, stored once, applied without moving an invoice back.

Stripe delivers at least once and in no particular order. Each event is stored under its
id (the primary key) in the same transaction that applies it: a second delivery finds the
row and changes nothing, and an event whose processing failed is not stored, so Stripe's
retry gets a fresh chance. The status changes a webhook may make, and nothing else:

    event                                       to              from
    invoice.paid, invoice.payment_succeeded     paid            open, payment_failed,
                                                                uncollectible
    invoice.payment_failed                      payment_failed  open
    invoice.marked_uncollectible                uncollectible   open, payment_failed

So a late ``payment_failed`` never undoes a payment, nothing leaves ``void`` or ``paid``, and
drafts (not in Stripe) are never touched. Events for other types or for invoices we do not
know are stored with their outcome and answered 200, so Stripe stops retrying them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.errors import DomainError, InvalidInput
from accounts.services import audit_record

from ..models import Invoice, StripeWebhookEvent

logger = logging.getLogger(__name__)

S = Invoice.Status

# event type -> (the status it sets, the statuses it may set it from)
TRANSITIONS: dict[str, tuple[str, frozenset[str]]] = {
    "invoice.paid": (S.PAID, frozenset({S.OPEN, S.PAYMENT_FAILED, S.UNCOLLECTIBLE})),
    "invoice.payment_succeeded": (S.PAID, frozenset({S.OPEN, S.PAYMENT_FAILED, S.UNCOLLECTIBLE})),
    "invoice.payment_failed": (S.PAYMENT_FAILED, frozenset({S.OPEN})),
    "invoice.marked_uncollectible": (S.UNCOLLECTIBLE, frozenset({S.OPEN, S.PAYMENT_FAILED})),
}
AUDIT_ACTION = {
    S.PAID: "invoice.paid",
    S.PAYMENT_FAILED: "invoice.payment_failed",
    S.UNCOLLECTIBLE: "invoice.marked_uncollectible",
}


class InvalidSignature(DomainError):
    status = 400
    code = "invalid_signature"


class WebhooksNotConfigured(DomainError):
    status = 503
    code = "webhooks_not_configured"


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    duplicate: bool
    outcome: str


def stripe_event_verify(*, payload: bytes, signature: str | None) -> dict:
    """The event, if Stripe signed exactly these bytes with our secret (recently)."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhooksNotConfigured("STRIPE_WEBHOOK_SECRET is not set: webhooks are off.")
    if not signature:
        raise InvalidSignature("The Stripe-Signature header is missing.")
    try:
        # The SDK's check alone: its construct_event also builds an Event, and fails with
        # an AttributeError (a 500) on a signed body that is JSON but not an object.
        stripe.WebhookSignature.verify_header(
            payload, signature, secret, stripe.Webhook.DEFAULT_TOLERANCE
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
        raise InvalidSignature(
            "The Stripe-Signature header does not match the body (or is too old)."
        ) from error
    try:
        event = json.loads(payload)
    except ValueError as error:  # signed, but not JSON
        raise InvalidInput("The body is not a JSON event.", code="invalid_payload") from error
    shaped = (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and 0 < len(event["id"]) <= 64
        and isinstance(event.get("type"), str)
        and _timestamp(event.get("created")) is not None
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    )
    if not shaped:
        raise InvalidInput("The body is not a Stripe event.", code="invalid_payload")
    return event


def _timestamp(value: object) -> datetime | None:
    """A Unix time as a UTC datetime; None if it is not one (or out of range)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@transaction.atomic
def stripe_event_receive(*, event: dict) -> WebhookResult:
    """Store the (verified) event once and apply it; a duplicate changes nothing."""
    try:
        with transaction.atomic():
            record = StripeWebhookEvent.objects.create(
                event_id=event["id"],
                type=event["type"][:100],
                stripe_created=_timestamp(event["created"]),
                payload=event,
            )
    except IntegrityError:  # delivered before (a concurrent twin waits here for the first)
        previous = StripeWebhookEvent.objects.get(pk=event["id"])
        return WebhookResult(event["id"], True, previous.outcome)
    record.outcome = _apply(event)[:200]
    record.save(update_fields=["outcome"])
    return WebhookResult(record.event_id, False, record.outcome)


def _apply(event: dict) -> str:
    rule = TRANSITIONS.get(event["type"])
    if rule is None:
        return "ignored: event type not handled"
    target, allowed = rule
    stripe_invoice_id = event["data"]["object"].get("id")
    invoice = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("customer")
        .filter(stripe_invoice_id=stripe_invoice_id)
        .first()
        if isinstance(stripe_invoice_id, str) and stripe_invoice_id
        else None
    )
    if invoice is None:
        return f"unknown invoice: {stripe_invoice_id}"
    before = invoice.status
    if before == target:
        return f"unchanged: {invoice.number} is already {target}"
    if before not in allowed:
        if target == S.PAID and before == S.VOID:
            # Money arrived for an invoice we cancelled: someone has to refund it.
            logger.warning("Stripe says void invoice %s was paid (%s)", invoice.number, event["id"])
        return f"ignored: {invoice.number} is {before}; {before} -> {target} is not allowed"
    invoice.status = target
    fields = ["status", "updated_at"]
    after = {"status": target, "stripe_event": event["id"]}
    if target == S.PAID:
        invoice.paid_at = _paid_at(event)
        fields.append("paid_at")
        after["paid_at"] = invoice.paid_at.isoformat()
    invoice.save(update_fields=fields)
    audit_record(
        actor=None,
        action=AUDIT_ACTION[target],
        obj=invoice,
        customer=invoice.customer,
        before={"status": before},
        after=after,
    )
    return f"applied: {invoice.number} {before} -> {target}"


def _paid_at(event: dict) -> datetime:
    transitions = event["data"]["object"].get("status_transitions")
    paid_at = transitions.get("paid_at") if isinstance(transitions, dict) else None
    return _timestamp(paid_at) or _timestamp(event["created"])

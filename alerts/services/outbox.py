"""The outbox: queue an alert's deliveries with it, send them, retry, replay.

``deliveries_queue`` runs inside the alert's transaction and writes one ``Delivery`` per
(channel, address) its audience reaches; after commit each gets a Celery wake-up. The
wake-up may never arrive (broker down), so ``deliveries_sweep`` on Beat sends whatever is
due either way. ``delivery_send`` claims the row with a conditional UPDATE (a lease) before
sending, so a duplicated task or the sweep racing the task sends once; the lease lapsing
after a crash is what makes a lost worker's delivery go out again (receivers deduplicate
on the webhook id, which stays the same across attempts).
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import Contact, Persona
from accounts.services import Actor, audit_record
from invoicing.currency import format_money

from .. import channels, messages
from ..models import Alert, Delivery, DeliveryAttempt, WebhookEndpoint
from ..selectors.endpoints import endpoint_signing_secrets
from . import endpoints

logger = logging.getLogger(__name__)

TRIGGERED = Delivery.Event.TRIGGERED
RESOLVED = Delivery.Event.RESOLVED
Channel = Delivery.Channel
# Long enough for the slowest channel's timeouts; a crashed sender's claim lapses after it.
CLAIM_LEASE = timedelta(seconds=90)
SWEEP_BATCH = 500

# Which of a contact's channels each persona is reached on, in order of preference; a
# contact with none of them is reached on whatever channel they have.
PERSONA_CHANNELS = {
    Persona.DEVELOPER: (Channel.WEBHOOK, Channel.SLACK),
    Persona.FINANCE: (Channel.EMAIL, Channel.TEAMS),
    Persona.PROCUREMENT: (Channel.EMAIL, Channel.TEAMS),
    Persona.EXECUTIVE: (Channel.EMAIL, Channel.TEAMS),
}
_CONTACT_ADDRESS = {
    Channel.WEBHOOK: "webhook_url",
    Channel.SLACK: "slack_webhook_url",
    Channel.TEAMS: "teams_webhook_url",
    Channel.EMAIL: "email",
}


def _contact_channels(contact: Contact) -> list[tuple[str, str]]:
    have = [
        (channel, getattr(contact, field))
        for channel, field in _CONTACT_ADDRESS.items()
        if getattr(contact, field)
    ]
    preferred = [(c, a) for c, a in have if c in PERSONA_CHANNELS[contact.persona]]
    return preferred or have


def deliveries_queue(
    alert: Alert, *, event: str, now: datetime, wake: bool = True
) -> list[Delivery]:
    """Write the alert's deliveries for ``event`` (inside the caller's transaction: it
    has just created the alert, or resolved it, once) and, with ``wake``, send each a
    wake-up once it commits; a worker that fired the alert sends them itself instead.
    One delivery per (channel, address): contacts sharing an address hear once."""
    audience = set(alert.audience)
    deliveries: dict[tuple[str, str], Delivery] = {}

    def add(channel, target, persona, *, contact=None, endpoint=None):
        # A disabled endpoint's delivery is kept, as skipped, so the history says why.
        disabled = endpoint is not None and not endpoint.enabled
        deliveries.setdefault(
            (channel, target),
            Delivery(
                alert=alert,
                event=event,
                channel=channel,
                persona=persona,
                contact=contact,
                endpoint=endpoint,
                target=target,
                created_at=now,
                status=Delivery.Status.SKIPPED if disabled else Delivery.Status.PENDING,
                next_attempt_at=None if disabled else now,
                last_error="The webhook endpoint is disabled." if disabled else "",
            ),
        )

    contacts = Contact.objects.filter(customer_id=alert.customer_id, persona__in=audience)
    for contact in contacts:
        for channel, address in _contact_channels(contact):
            if channel == Channel.WEBHOOK:
                endpoint = endpoints.endpoint_for_contact_url(
                    customer=alert.customer, contact=contact, url=address
                )
                add(channel, endpoint.url, contact.persona, contact=contact, endpoint=endpoint)
            else:
                add(channel, address, contact.persona, contact=contact)
    # The customer's own endpoints (not a contact's) take every alert, or only the alerts
    # of the personas they name.
    own = WebhookEndpoint.objects.filter(customer_id=alert.customer_id, contact__isnull=True)
    for endpoint in own:
        wanted = audience.intersection(endpoint.personas) if endpoint.personas else audience
        if wanted:
            persona = Persona.DEVELOPER if Persona.DEVELOPER in wanted else sorted(wanted)[0]
            add(Channel.WEBHOOK, endpoint.url, persona, endpoint=endpoint)
    created = Delivery.objects.bulk_create(deliveries.values())
    queued = [d for d in created if d.status == Delivery.Status.PENDING]
    if wake:
        ids = [d.pk for d in queued]
        transaction.on_commit(lambda: _wake(ids))
    return queued


def _skip(delivery: Delivery, reason: str, now: datetime) -> None:
    Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(
        status=Delivery.Status.SKIPPED, last_error=reason[:500], next_attempt_at=None
    )
    delivery.status = Delivery.Status.SKIPPED


def _wake(delivery_ids: list[int]) -> None:
    """Ask a worker to send now. A broker that is down only delays: the sweep sends them."""
    from ..tasks import delivery_send as task

    for delivery_id in delivery_ids:
        try:
            task.apply_async((delivery_id,), retry=False)
        except (OperationalError, OSError):
            logger.warning("could not enqueue delivery %s; the sweep will send it", delivery_id)
            return


# --- Sending --------------------------------------------------------------------------------


def _claim(delivery_id: int, now: datetime) -> Delivery | None:
    """Take the delivery for one attempt, or ``None`` if it is not due, done, or another
    worker holds it. One conditional UPDATE: two claimants cannot both win."""
    claimed = Delivery.objects.filter(
        Q(pk=delivery_id),
        Q(status=Delivery.Status.PENDING),
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
    ).update(claimed_until=now + CLAIM_LEASE)
    if not claimed:
        return None
    return Delivery.objects.select_related("alert__customer", "alert__meter", "endpoint").get(
        pk=delivery_id
    )


def delivery_send(delivery_id: int, *, now: datetime | None = None, rng=None) -> str | None:
    """One attempt at one delivery, recorded; the delivery's status afterwards, or
    ``None`` when there was nothing to do (not due, done, or being sent elsewhere)."""
    now = now or timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    if delivery.endpoint_id and not delivery.endpoint.enabled:
        with transaction.atomic():
            _skip(delivery, "The webhook endpoint is disabled.", now)
            Delivery.objects.filter(pk=delivery.pk).update(claimed_until=None)
        return delivery.status
    outcome = _attempt(delivery, now)
    return _record(delivery, outcome, now, rng=rng)


def _attempt(delivery: Delivery, now: datetime) -> channels.AttemptOutcome:
    if getattr(settings, "ALERTS_OUTBOUND_DRY_RUN", False):
        return channels.AttemptOutcome(
            channels.AttemptStatus.REFUSED,
            error_code="dry_run",
            error_message="Not sent: this installation does not send alerts (demo).",
        )
    alert, event = delivery.alert, delivery.event
    try:
        if delivery.channel == Channel.WEBHOOK:
            return channels.send_webhook(
                delivery.target,
                msg_id=f"msg_{delivery.pk}",
                payload=messages.webhook_payload(alert, event=event, delivery_id=delivery.pk),
                secrets=endpoint_signing_secrets(delivery.endpoint, now),
                timestamp=now,
            )
        budget = None if delivery.persona == Persona.DEVELOPER else budget_for(alert)
        notice = messages.notice(alert, event=event, persona=delivery.persona, budget=budget)
        if delivery.channel == Channel.SLACK:
            return channels.send_slack(delivery.target, notice)
        if delivery.channel == Channel.TEAMS:
            return channels.send_teams(delivery.target, notice)
        return channels.send_email(notice, to=[delivery.target])
    except Exception as exc:  # a bug or an odd message must not wedge the delivery
        logger.exception("delivery %s failed before sending", delivery.pk)
        return channels.AttemptOutcome(
            channels.AttemptStatus.FAILED,
            error_code="internal_error",
            error_message=f"{type(exc).__name__}: {exc}"[:500],
        )


def _record(delivery: Delivery, outcome: channels.AttemptOutcome, now: datetime, rng=None) -> str:
    status = Delivery.Status.PENDING
    next_at = None
    if outcome.delivered:
        status = Delivery.Status.DELIVERED
    elif outcome.error_code == "dry_run":
        status = Delivery.Status.SKIPPED
    elif outcome.retryable:
        next_at = channels.next_attempt_at(delivery.attempts + 1, now, rng=rng)
        if outcome.retry_after_seconds and next_at is not None:
            next_at = max(next_at, now + timedelta(seconds=outcome.retry_after_seconds))
        if next_at is None:
            status = Delivery.Status.FAILED
    else:
        status = Delivery.Status.FAILED
    error = outcome.error_message or (
        f"HTTP {outcome.status_code}" if outcome.status_code and not outcome.delivered else ""
    )
    with transaction.atomic():
        # Attempts are numbered over the delivery's life; ``attempts`` counts the current
        # schedule (a replay starts a new one).
        number = DeliveryAttempt.objects.filter(delivery=delivery).count() + 1
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            attempted_at=now,
            status=outcome.status,
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
            error_code=outcome.error_code[:64],
            error_message=outcome.error_message[:500],
            response_excerpt=outcome.response_excerpt[:500],
        )
        Delivery.objects.filter(pk=delivery.pk).update(
            status=status,
            attempts=delivery.attempts + 1,
            next_attempt_at=next_at,
            claimed_until=None,
            last_status_code=outcome.status_code,
            last_error=error[:500],
            delivered_at=now if outcome.delivered else None,
        )
        if outcome.status == channels.AttemptStatus.ENDPOINT_GONE and delivery.endpoint_id:
            endpoints.endpoint_disable(
                delivery.endpoint, reason="The receiver answered 410 Gone.", now=now
            )
            Delivery.objects.filter(
                endpoint_id=delivery.endpoint_id, status=Delivery.Status.PENDING
            ).update(
                status=Delivery.Status.SKIPPED,
                next_attempt_at=None,
                last_error="The webhook endpoint is disabled (410 Gone).",
            )
    return status


def deliveries_sweep(*, now: datetime | None = None, limit: int = SWEEP_BATCH) -> int:
    """Send what is due and not held: retries whose time has come and deliveries whose
    wake-up never reached a worker. Returns how many were attempted here."""
    now = now or timezone.now()
    due = list(
        Delivery.objects.filter(
            Q(status=Delivery.Status.PENDING),
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for pk in due if delivery_send(pk, now=now) is not None)


@transaction.atomic
def delivery_replay(*, actor: Actor, delivery: Delivery, now: datetime | None = None) -> Delivery:
    """Send a failed or skipped delivery again from a fresh schedule (finance's replay in
    the admin); its earlier attempts stay on record. A disabled endpoint is not
    re-enabled here: that is the customer's call."""
    now = now or timezone.now()
    if delivery.status not in (Delivery.Status.FAILED, Delivery.Status.SKIPPED):
        from accounts.errors import InvalidInput

        raise InvalidInput(
            f"Only failed or skipped deliveries can be replayed; this one is {delivery.status}.",
            code="delivery_not_replayable",
        )
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.PENDING, next_attempt_at=now, claimed_until=None, attempts=0
    )
    audit_record(
        actor=actor,
        action="delivery.replayed",
        obj=delivery,
        customer=delivery.alert.customer,
        before={"status": delivery.status, "attempts": delivery.attempts},
    )
    transaction.on_commit(lambda: _wake([delivery.pk]))
    delivery.refresh_from_db()
    return delivery


# --- The budget view, for finance, procurement and executives ---------------------------------


def budget_for(alert: Alert) -> dict:
    """The projected invoice with its range, the commitment position and the plans that
    would cost less, read once per alert and kept in its evidence so every finance
    message of the alert tells the same story."""
    if "budget" in (alert.evidence or {}):
        return alert.evidence["budget"]
    from ..selectors import outlook

    now = alert.triggered_at
    budget: dict = {}
    spend = outlook.spend_forecast(customer=alert.customer, now=now)
    if spend is not None:
        currency = spend.currency
        budget = {
            "currency": currency,
            "so_far": format_money(spend.so_far_minor, currency),
            "projected_p10": format_money(spend.total.p10, currency),
            "projected_p50": format_money(spend.total.p50, currency),
            "projected_p90": format_money(spend.total.p90, currency),
            "options": [
                {
                    "title": option.plan.name
                    + (
                        f": saves {format_money(option.saving_minor, currency)}"
                        if option.saving_minor > 0
                        else ""
                    ),
                    "description": option.description,
                    "saving_minor": option.saving_minor,
                }
                for option in outlook.plan_options(customer=alert.customer, now=now, spend=spend)[
                    :3
                ]
            ],
        }
        if spend.commitment is not None:
            position = spend.commitment
            budget["commitment"] = (
                f"{format_money(position.available_minor, currency)} prepaid balance; "
                f"{format_money(position.charges.p50, currency)} projected to draw on it"
                + (
                    f", {format_money(position.overage.p50, currency)} over it"
                    if position.overage.p50
                    else ""
                )
            )
            budget["commitment_text"] = budget["commitment"]
    evidence = {**(alert.evidence or {}), "budget": budget}
    Alert.objects.filter(pk=alert.pk).update(evidence=evidence)
    alert.evidence = evidence
    return budget

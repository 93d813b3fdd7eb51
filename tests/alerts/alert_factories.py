"""Alerts, deliveries and attempts made directly with the ORM (the firing engine is tested
on its own): for the history, the notification center and the banner."""

from datetime import datetime, timedelta

from django.utils import timezone

from accounts.models import Customer
from alerts.models import Alert, Delivery, DeliveryAttempt
from metering.models import Meter


def make_alert(
    customer: Customer,
    *,
    title: str = "API calls passed 80% of the included units",
    kind: str = "threshold",
    severity: str = Alert.Severity.WARNING,
    status: str = Alert.Status.OPEN,
    meter: Meter | None = None,
    level: str | None = None,
    triggered_at: datetime | None = None,
    evidence: dict | None = None,
    **fields,
) -> Alert:
    triggered_at = triggered_at or timezone.now()
    return Alert.objects.create(
        customer=customer,
        kind=kind,
        meter=meter,
        severity=severity,
        status=status,
        level=level or f"{Alert.objects.count() + 1}",
        title=title,
        summary=fields.pop("summary", f"{title}. Usage so far: 80,000 of 100,000."),
        evidence=evidence if evidence is not None else {"usage": "80000", "level": "80000"},
        period_start=fields.pop("period_start", triggered_at - timedelta(days=10)),
        period_end=fields.pop("period_end", triggered_at + timedelta(days=20)),
        triggered_at=triggered_at,
        **fields,
    )


def make_delivery(
    alert: Alert,
    *,
    channel: str = Delivery.Channel.WEBHOOK,
    target: str = "https://hooks.example.com/meterbook",
    status: str = Delivery.Status.DELIVERED,
    attempts: list[tuple[str, int | None]] = (("delivered", 200),),
    persona: str = "developer",
    **fields,
) -> Delivery:
    """A delivery with its attempts, given as (status, HTTP status code) in order."""
    now = timezone.now()
    delivery = Delivery.objects.create(
        alert=alert,
        event=Delivery.Event.TRIGGERED,
        channel=channel,
        persona=persona,
        target=target,
        status=status,
        attempts=len(attempts),
        last_status_code=attempts[-1][1] if attempts else None,
        created_at=now,
        delivered_at=now if status == Delivery.Status.DELIVERED else None,
        **fields,
    )
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            delivery=delivery,
            number=number,
            attempted_at=now + timedelta(minutes=number),
            status=attempt_status,
            status_code=code,
            duration_ms=40 + number,
            error_code="" if attempt_status == "delivered" else "http_status",
            response_excerpt="ok" if attempt_status == "delivered" else "Service Unavailable",
        )
        for number, (attempt_status, code) in enumerate(attempts, start=1)
    )
    return delivery

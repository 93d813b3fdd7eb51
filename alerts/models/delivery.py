"""The outbox: who hears about an alert, on which channel, and every attempt to tell them.

A ``Delivery`` is written in the same transaction as its alert (or its resolution), so an
alert can never exist without its deliveries, and a broker that is down only delays them:
the Celery task is a wake-up call, and a Beat sweep sends whatever is due either way.
Sending claims the row with a short lease first, so two workers given the same delivery
(a duplicated task, the sweep racing the task) send it once.
"""

from django.db import models
from django.db.models import Q

from accounts.models import Contact, Customer, Persona

from .rules import Alert


class WebhookEndpoint(models.Model):
    """A URL of the customer's that receives every alert as a signed Standard Webhook."""

    TENANT_PATH = "customer"

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    # Alerts for these personas' rules; empty: every alert.
    personas = models.JSONField(default=list, blank=True)
    # Made for a contact's webhook URL rather than through the API or the page.
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "url"], name="webhook_endpoint_unique_url")
        ]

    def __str__(self):
        return self.url


class WebhookSecret(models.Model):
    """A signing secret. During a rotation the old one keeps signing until it expires, so
    receivers see two valid signatures and can switch over at their own pace."""

    TENANT_PATH = "endpoint__customer"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="secrets")
    # Kept in clear: signing needs it. (Encrypting it at rest needs a key service.)
    secret = models.CharField(max_length=120)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        until = f" until {self.expires_at:%Y-%m-%d %H:%M}" if self.expires_at else ""
        return f"{self.secret[:10]}…{until}"


class Delivery(models.Model):
    TENANT_PATH = "alert__customer"

    class Event(models.TextChoices):
        TRIGGERED = "alert.triggered", "Alert triggered"
        RESOLVED = "alert.resolved", "Alert resolved"

    class Channel(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        SLACK = "slack", "Slack"
        TEAMS = "teams", "Microsoft Teams"
        EMAIL = "email", "Email"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"  # gave up: permanent error, schedule spent, endpoint gone
        SKIPPED = "skipped", "Skipped"  # not sent: endpoint disabled, or demo data

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16, choices=Event.choices)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    persona = models.CharField(max_length=16, choices=Persona.choices)
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    target = models.CharField(max_length=500, help_text="The URL or email address.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Attempts in the current retry schedule (a replay starts a new one; the attempt log
    # keeps every attempt ever made).
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker sending it holds it until then; a crashed worker's claim simply lapses.
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="delivery_due"
            )
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "event", "channel", "target"], name="delivery_once_per_target"
            )
        ]

    def __str__(self):
        return f"{self.event} to {self.target} ({self.channel})"


class DeliveryAttempt(models.Model):
    TENANT_PATH = "delivery__alert__customer"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    attempted_at = models.DateTimeField()
    status = models.CharField(max_length=16)  # channels.AttemptStatus
    status_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="delivery_attempt_number")
        ]

    def __str__(self):
        return f"attempt {self.number}: {self.status}"

"""Subscriptions: which plan version a customer is on, and since when.

Periods run on an anniversary schedule from ``billing_anchor`` at the plan version's
interval (``invoicing.periods``). A plan change mid-period ends the current phase and
starts a new one at the second of the change: flat fees prorate by the second and usage
splits at the change. ``billed_through`` is the end of the last period closed into an
invoice; the period-close job claims a subscription by moving it forward with a
compare-and-swap, so two workers never bill one period twice. The commitment balance
lives on the invoices (each one's balance after it), not here.
"""

from django.db import models
from django.db.models import Q

from accounts.models import Customer

from .catalog import PlanVersion


class Subscription(models.Model):
    TENANT_PATH = "customer"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CANCELED = "canceled", "Canceled"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    plan_version = models.ForeignKey(
        PlanVersion, on_delete=models.PROTECT, related_name="subscriptions"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField()
    billing_anchor = models.DateTimeField(help_text="Periods start at its anniversaries (UTC).")
    # Set when canceled: now, or the end of the current period.
    ends_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    billed_through = models.DateTimeField(help_text="End of the last period closed.")
    # End of the period after billed_through (stored so due periods are one indexed query);
    # empty once the last period of an ended subscription is closed.
    current_period_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer", "-started_at"]
        indexes = [models.Index(fields=["current_period_end"], name="subscription_period_due")]
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=Q(status="active"),
                name="subscription_one_active_per_customer",
            ),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gte=models.F("started_at")),
                name="subscription_ends_after_start",
            ),
        ]

    def __str__(self):
        return f"{self.customer} on {self.plan_version}"

    @property
    def interval(self) -> str:
        return self.plan_version.interval


class SubscriptionPhase(models.Model):
    """A stretch of a subscription on one plan version: ``[starts_at, ends_at)``."""

    TENANT_PATH = "subscription__customer"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="phases")
    plan_version = models.ForeignKey(PlanVersion, on_delete=models.PROTECT, related_name="+")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["subscription", "starts_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "starts_at"], name="subscription_phase_start_unique"
            ),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="subscription_phase_not_empty",
            ),
        ]

    def __str__(self):
        return f"{self.plan_version} from {self.starts_at:%Y-%m-%d %H:%M}"

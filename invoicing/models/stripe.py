"""What Meterbook knows of Stripe: its customer per tenant, and webhooks already handled."""

from django.db import models

from accounts.models import Customer


class StripeCustomer(models.Model):
    TENANT_PATH = "customer"

    customer = models.OneToOneField(Customer, on_delete=models.PROTECT, related_name="stripe")
    stripe_customer_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.stripe_customer_id


class StripeWebhookEvent(models.Model):
    """Each Stripe event is processed once: its id is the primary key."""

    event_id = models.CharField(max_length=64, primary_key=True)
    type = models.CharField(max_length=100)
    stripe_created = models.DateTimeField(help_text="When Stripe created the event.")
    received_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=200, blank=True)
    payload = models.JSONField()

    class Meta:
        ordering = ["-received_at"]

    def __str__(self):
        return f"{self.type} {self.event_id}"

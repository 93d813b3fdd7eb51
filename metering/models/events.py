"""Raw usage events, their exactly-once keys, and each customer's closed-through time.

``metering_usageevent`` is a PostgreSQL table partitioned by month on the event time,
created by raw SQL in the migrations (Django cannot declare partitioning). Writes go
through ``metering.ingest`` only.
"""

from django.db import models

from accounts.models import Customer


class UsageEvent(models.Model):
    """One raw event as sent; immutable except for being flagged void."""

    TENANT_PATH = "customer"

    # The real primary key is (timestamp, id); id alone is unique (an identity column).
    id = models.BigAutoField(primary_key=True)
    customer = models.ForeignKey(Customer, on_delete=models.DO_NOTHING, related_name="+")
    idempotency_key = models.TextField()
    event_name = models.TextField()
    timestamp = models.DateTimeField(help_text="When the usage happened (event time).")
    received_at = models.DateTimeField(help_text="When Meterbook stored it (ingest time).")
    properties = models.JSONField(default=dict)
    late = models.BooleanField(
        default=False, help_text="Arrived for a period already closed; billed as an adjustment."
    )
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.TextField(blank=True)

    class Meta:
        # Managed so test flushes truncate it; the migration creates the table by raw SQL.
        db_table = "metering_usageevent"
        ordering = ["-timestamp", "-id"]

    def __str__(self):
        return f"{self.event_name} {self.idempotency_key} @ {self.timestamp:%Y-%m-%d %H:%M:%S}"


class EventKey(models.Model):
    """(customer, idempotency key) seen, ever: the exactly-once guard.

    The events table is partitioned by time, so it cannot carry a unique constraint on the
    key alone; this table does, for the event's whole life.
    """

    pk = models.CompositePrimaryKey("customer_id", "idempotency_key")
    # No database foreign key: ingest resolves customer ids itself, customers are never
    # deleted (only suspended), and a per-event check at commit costs ingest throughput.
    # The primary key's leading column serves lookups by customer: no second index to
    # maintain on every claim.
    customer = models.ForeignKey(
        Customer, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False, db_index=False
    )
    idempotency_key = models.TextField()
    event_timestamp = models.DateTimeField()

    class Meta:
        db_table = "metering_eventkey"

    def __str__(self):
        return f"{self.customer_id}/{self.idempotency_key}"


class CustomerUsageState(models.Model):
    """Per customer: usage before ``closed_through`` belongs to invoiced periods.

    Invoicing advances it when it closes a period (metering never imports invoicing);
    events older than it are stored flagged ``late`` and left out of the rollups.
    """

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, primary_key=True, related_name="usage_state"
    )
    closed_through = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.customer} closed through {self.closed_through}"

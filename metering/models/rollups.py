"""The real-time track: hourly rollups, kept exact for every aggregation.

* count and sum add up across hours;
* max keeps the hour's maximum (a void recomputes the hour from raw events);
* latest keeps the hour's last value with its event time and id, so the latest of a
  range is the value of its latest hour;
* unique_count keeps the distinct values seen per hour (``UsageUniqueValue``), so a
  range's count is a ``COUNT(DISTINCT value)`` over its hours, never a sum.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models

from accounts.models import Customer

from .meters import Meter

QUANTITY = {"max_digits": 38, "decimal_places": 12}


class UsageRollup(models.Model):
    TENANT_PATH = "customer"

    # The unique key leads with the customer: it serves lookups by customer, and a
    # second index would cost every ingest upsert that inserts a row.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="rollups")
    hour = models.DateTimeField()
    # Values of the meter's group_by properties, in order ('' when an event lacks one).
    dimensions = ArrayField(models.TextField(), default=list)
    event_count = models.BigIntegerField(default=0)
    value_sum = models.DecimalField(**QUANTITY, null=True)
    value_max = models.DecimalField(**QUANTITY, null=True)
    latest_value = models.DecimalField(**QUANTITY, null=True)
    latest_at = models.DateTimeField(null=True)
    latest_event_id = models.BigIntegerField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "meter", "hour", "dimensions"], name="usage_rollup_key"
            ),
        ]

    def __str__(self):
        return f"{self.customer_id}/{self.meter_id} {self.hour:%Y-%m-%d %H}:00 {self.dimensions}"


class UsageUniqueValue(models.Model):
    TENANT_PATH = "customer"

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    dimensions = ArrayField(models.TextField(), default=list)
    value = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "meter", "hour", "dimensions", "value"],
                name="usage_unique_value_key",
            ),
        ]

    def __str__(self):
        return f"{self.customer_id}/{self.meter_id} {self.hour:%Y-%m-%d %H}:00 {self.value}"


class UsageDiscrepancy(models.Model):
    """A difference the batch track found between a real-time rollup and the raw events.

    The batch value is authoritative: the rollup is corrected when this is recorded.
    """

    TENANT_PATH = "customer"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="discrepancies")
    hour = models.DateTimeField()
    dimensions = ArrayField(models.TextField(), default=list)
    realtime_value = models.JSONField(null=True, help_text="The rollup as it was (null: missing).")
    batch_value = models.JSONField(null=True, help_text="Recomputed from raw events (null: none).")
    found_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-found_at", "-id"]
        verbose_name_plural = "usage discrepancies"

    def __str__(self):
        return f"{self.customer_id}/{self.meter_id} {self.hour:%Y-%m-%d %H}:00"

"""Caps: the customer's hard limits on a meter's usage, or on its total usage spend, per
billing period.

A ``Cap`` is the customer's setting. What it has let through in one billing period lives in
one ``CapWindow`` row — the limit in force, recorded usage and live reservations — which
``authorize``, ingestion and a cap change each update with one statement, so concurrent
requests can never take more than the cap between them and a lowered cap holds for every
request after it (they all queue on that row's lock). A ``CapReservation`` is one
authorized quantity not yet consumed; it expires if no usage consumes it.

A cap without a meter is the customer's *total spend* cap: it holds the period's usage
charges (every usage price of the plan; flat fees, commitments and discounts are fixed, not
usage) to a money limit. Its window and reservations count money in the plan's currency.
"""

from decimal import Decimal

from django.db import models
from django.db.models import F, Q

from accounts.models import Customer
from metering.models import Meter
from metering.models.rollups import QUANTITY


class Cap(models.Model):
    TENANT_PATH = "customer"

    class OnExceed(models.TextChoices):
        REJECT = "reject", "Reject the events past the cap"
        FLAG = "flag", "Accept the events past the cap and flag them"

    class Measure(models.TextChoices):
        UNITS = "units", "Units of the meter"
        MONEY = "money", "Spend on the meter, in the plan's currency"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="caps")
    # None: the cap is on the total spend of all usage (always in money).
    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, related_name="caps", null=True, blank=True
    )
    measure = models.CharField(max_length=8, choices=Measure.choices, default=Measure.UNITS)
    limit = models.DecimalField(
        **QUANTITY, help_text="Units of the meter, or spend on it, per billing period."
    )
    on_exceed = models.CharField(max_length=8, choices=OnExceed.choices, default=OnExceed.REJECT)
    # Set while the cap is the customer's copy of its plan's default; the customer's own
    # change detaches it, and the plan's default no longer overrides it.
    plan_default = models.ForeignKey(
        "PlanCapDefault", null=True, blank=True, on_delete=models.SET_NULL, related_name="caps"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "meter"], name="cap_one_per_meter"),
            models.UniqueConstraint(
                fields=["customer"],
                condition=Q(meter__isnull=True),
                name="cap_one_total_per_customer",
            ),
            models.CheckConstraint(
                condition=Q(meter__isnull=False) | Q(measure="money"), name="cap_total_is_money"
            ),
            models.CheckConstraint(condition=Q(limit__gte=0), name="cap_limit_not_negative"),
        ]

    def __str__(self):
        return f"{self.customer}: {self.subject} capped at {self.limit.normalize():f}"

    @property
    def is_total(self) -> bool:
        return self.meter_id is None

    @property
    def subject(self) -> str:
        """What the cap holds, for lists and messages: a meter's code, or total spend."""
        return "total spend" if self.is_total else self.meter.code


class CapWindow(models.Model):
    """A cap's billing period: what ingestion recorded and what ``authorize`` reserved."""

    TENANT_PATH = "cap__customer"

    cap = models.ForeignKey(Cap, on_delete=models.CASCADE, related_name="windows")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # In units: a money cap's limit converted with the plan's price for the meter. A total
    # spend cap's window (and its reservations) count money, in the plan's currency.
    limit = models.DecimalField(**QUANTITY, help_text="The cap's limit, as of its last change.")
    used = models.DecimalField(**QUANTITY, default=Decimal(0))
    reserved = models.DecimalField(**QUANTITY, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cap", "period_start"], name="cap_window_per_period"),
            models.CheckConstraint(
                condition=Q(used__gte=0) & Q(reserved__gte=0), name="cap_window_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=F("period_start")), name="cap_window_period_order"
            ),
        ]

    def __str__(self):
        return f"{self.cap} from {self.period_start:%Y-%m-%d}"


class CapReservation(models.Model):
    """An authorized quantity; ``remaining`` of it is held until consumed or expired."""

    TENANT_PATH = "window__cap__customer"

    window = models.ForeignKey(CapWindow, on_delete=models.CASCADE, related_name="reservations")
    quantity = models.DecimalField(**QUANTITY)
    remaining = models.DecimalField(**QUANTITY)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=Q(released_at__isnull=True),
                name="cap_reservation_live",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0) & Q(remaining__gte=0) & Q(remaining__lte=F("quantity")),
                name="cap_reservation_bounds",
            )
        ]

    def __str__(self):
        return f"{self.quantity.normalize():f} reserved until {self.expires_at:%Y-%m-%d %H:%M}"


class PlanCapDefault(models.Model):
    """An operator's default cap for every subscriber of a plan that has not set its own."""

    plan = models.ForeignKey(
        "invoicing.Plan", on_delete=models.CASCADE, related_name="cap_defaults"
    )
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="+")
    measure = models.CharField(max_length=8, choices=Cap.Measure.choices, default=Cap.Measure.UNITS)
    limit = models.DecimalField(**QUANTITY)
    on_exceed = models.CharField(
        max_length=8, choices=Cap.OnExceed.choices, default=Cap.OnExceed.REJECT
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "meter"], name="plan_cap_default_per_meter"),
            models.CheckConstraint(condition=Q(limit__gte=0), name="plan_cap_default_not_negative"),
        ]

    def __str__(self):
        return f"{self.plan}: {self.meter.code} capped at {self.limit.normalize():f}"

"""The catalog: plans, their immutable versions, and the price components of each version.

A price change is a new ``PlanVersion``; subscriptions stay on the version they were put
on until moved. A version and its components never change once created (a database
trigger refuses it; see the migration), so every invoice can be explained by the exact
prices it was rated with.
"""

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from accounts.currencies import CURRENCY_CHOICES
from metering.models import Meter

# Unit prices keep up to 12 decimal places (e.g. $0.000001234567 per token).
PRICE = {"max_digits": 30, "decimal_places": 12}


class Interval(models.TextChoices):
    MONTH = "month", "Monthly"
    QUARTER = "quarter", "Quarterly"
    YEAR = "year", "Yearly"


class Plan(models.Model):
    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    is_active = models.BooleanField(default=True, help_text="Offered to new subscriptions.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.currency})"


class PlanVersion(models.Model):
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    # Prices are per billing period, so the period's length belongs to the version (a
    # subscription bills at its version's interval).
    interval = models.CharField(max_length=8, choices=Interval.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    notes = models.TextField(blank=True, help_text="What changed from the previous version.")

    class Meta:
        ordering = ["plan", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "version"], name="plan_version_unique"),
        ]

    def __str__(self):
        return f"{self.plan.code} v{self.version}"


class PriceComponent(models.Model):
    """One price of a plan version; which fields matter depends on ``kind``.

    Amounts (``amount``) are in the plan's currency, in major units with up to 12
    decimal places; invoice lines round them once, to the currency's minor unit.
    """

    class Kind(models.TextChoices):
        FLAT_FEE = "flat_fee", "Recurring flat fee"
        USAGE = "usage", "Usage (per meter)"
        MINIMUM_SPEND = "minimum_spend", "Minimum spend (true-up)"
        COMMITMENT = "commitment", "Prepaid commitment"
        PERCENT_DISCOUNT = "percent_discount", "Percentage discount"
        FIXED_DISCOUNT = "fixed_discount", "Fixed discount"
        MAXIMUM = "maximum", "Maximum per period (spend cap)"

    class Model(models.TextChoices):
        PER_UNIT = "per_unit", "Per unit"
        GRADUATED = "graduated", "Graduated tiers"
        VOLUME = "volume", "Volume tiers"
        PACKAGE = "package", "Package (per N units, rounded up)"

    plan_version = models.ForeignKey(
        PlanVersion, on_delete=models.PROTECT, related_name="components"
    )
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    description = models.CharField(max_length=200, blank=True)
    # Usage components:
    meter = models.ForeignKey(
        Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    pricing_model = models.CharField(max_length=12, choices=Model.choices, blank=True)
    unit_price = models.DecimalField(**PRICE, null=True, blank=True)
    # [{"up_to": "1000" | null, "unit_price": "0.002", "flat_fee": "0"}], ascending.
    tiers = models.JSONField(default=list, blank=True)
    package_size = models.DecimalField(**PRICE, null=True, blank=True)
    included_units = models.DecimalField(
        **PRICE, default=0, validators=[MinValueValidator(0)], help_text="Free allowance."
    )
    # Flat fee, minimum, commitment, fixed discount, maximum:
    amount = models.DecimalField(**PRICE, null=True, blank=True)
    percent = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    commitment_months = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Length of a commitment term (e.g. 12)."
    )

    class Meta:
        ordering = ["plan_version", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan_version", "position"], name="price_component_position_unique"
            ),
            # One usage price per meter per version: usage is rated once.
            models.UniqueConstraint(
                fields=["plan_version", "meter"],
                condition=Q(kind="usage"),
                name="price_component_one_usage_per_meter",
            ),
            models.CheckConstraint(
                condition=Q(kind="usage", meter__isnull=False) | ~Q(kind="usage"),
                name="price_component_usage_has_meter",
            ),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0),
                name="price_component_amount_not_negative",
            ),
        ]

    def __str__(self):
        return self.description or self.get_kind_display()

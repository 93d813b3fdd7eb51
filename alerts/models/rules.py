"""Alert rules, the alerts they fire, and the signals they leave for the account team.

A rule watches one meter (or, for money, the customer's total spend) in each billing
period. An ``Alert`` is one firing: unique per (rule, period, level), so a level crossed
twice in a period — by two concurrent batches, a retried task or the scheduled backstop —
fires once. It stays open until its condition clears (velocity, anomaly, predictive) or its
period ends (a threshold crossed stays crossed), and is kept as history either way.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from accounts.models import Customer, Persona
from metering.models import Meter
from metering.models.rollups import QUANTITY


def all_personas() -> list[str]:
    return list(Persona.values)


class AlertRule(models.Model):
    TENANT_PATH = "customer"

    class Kind(models.TextChoices):
        THRESHOLD = "threshold", "Threshold"
        VELOCITY = "velocity", "Velocity"
        ANOMALY = "anomaly", "Anomaly"
        PREDICTIVE = "predictive", "Predictive"

    class Basis(models.TextChoices):
        UNITS = "units", "Units"
        MONEY = "money", "Spend (plan currency)"
        PERCENT_INCLUDED = "percent_included", "Percent of included units"
        PERCENT_COMMITMENT = "percent_commitment", "Percent of commitment"
        PERCENT_CAP = "percent_cap", "Percent of the hard cap"

    # A rule belongs to a customer, or is an operator's default for a plan's subscribers
    # (materialized as a customer rule pointing back at it; see services.plan_defaults).
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules"
    )
    plan = models.ForeignKey(
        "invoicing.Plan",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_rule_defaults",
    )
    plan_default = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="copies"
    )
    name = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # None: the customer's total spend (money and commitment bases only).
    meter = models.ForeignKey(
        Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="alert_rules"
    )
    basis = models.CharField(max_length=20, choices=Basis.choices, default=Basis.UNITS)
    # Threshold: every level, ascending. Predictive: the one level to forecast against.
    levels = ArrayField(models.DecimalField(**QUANTITY), default=list, blank=True)
    # Predictive: "``confidence`` likely to pass the level within ``within_days`` days".
    confidence = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    within_days = models.PositiveSmallIntegerField(null=True, blank=True)
    # Velocity: the recent window's daily rate against the baseline window's, by ``factor``.
    factor = models.DecimalField(max_digits=8, decimal_places=3, null=True, blank=True)
    recent_days = models.PositiveSmallIntegerField(null=True, blank=True)
    baseline_days = models.PositiveSmallIntegerField(null=True, blank=True)
    # Anomaly: how many robust standard deviations (1.4826 MAD) from the weekday baseline.
    sensitivity = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    # Velocity and anomaly: days below this daily volume are noise, never an alert.
    min_volume = models.DecimalField(**QUANTITY, null=True, blank=True)
    audience = ArrayField(
        models.CharField(max_length=16, choices=Persona.choices), default=all_personas
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["customer", "meter"], name="alert_rule_customer_meter")]
        constraints = [
            models.CheckConstraint(
                condition=(Q(customer__isnull=False) & Q(plan__isnull=True))
                | (Q(customer__isnull=True) & Q(plan__isnull=False)),
                name="alert_rule_customer_or_plan",
            ),
            models.CheckConstraint(
                condition=Q(meter__isnull=False) | Q(basis__in=["money", "percent_commitment"]),
                name="alert_rule_total_spend_is_money",
            ),
        ]

    def __str__(self):
        subject = self.meter.code if self.meter_id else "total spend"
        return self.name or f"{self.get_kind_display()} on {subject}"


class Alert(models.Model):
    """One firing of a rule in one billing period at one level."""

    TENANT_PATH = "customer"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="alerts")
    # History outlives the rule: a deleted rule leaves its alerts, described by their own
    # copies of kind, meter and level.
    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    kind = models.CharField(max_length=12, choices=AlertRule.Kind.choices)
    meter = models.ForeignKey(
        Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # What fired, as a key unique within the rule's period: a threshold's level
    # ("50000", "80%"), a velocity's direction ("rising"), an anomaly's day ("2026-11-03").
    level = models.CharField(max_length=64)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.WARNING)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    title = models.CharField(max_length=200)
    summary = models.TextField()
    # The figures behind it, for every audience's message and the API: usage, level,
    # rate, probability, projected invoice, options...
    evidence = models.JSONField(default=dict)
    audience = ArrayField(models.CharField(max_length=16), default=all_personas)
    triggered_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-triggered_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "-triggered_at"], name="alert_customer_recent"),
            models.Index(
                fields=["customer"], condition=Q(status="open"), name="alert_customer_open"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "period_start", "level"], name="alert_once_per_rule_period_level"
            )
        ]

    def __str__(self):
        return self.title


class AlertSeen(models.Model):
    """A portal user has seen an alert in the notification center (the banner skips it)."""

    TENANT_PATH = "alert__customer"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="seen_by")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["alert", "user"], name="alert_seen_once_per_user")
        ]

    def __str__(self):
        return f"{self.user} saw {self.alert}"


class ExpansionSignal(models.Model):
    """Growth an account manager should act on, with the alert that showed it."""

    TENANT_PATH = "customer"

    class Kind(models.TextChoices):
        TIER_TRENDING = "tier_trending", "Trending past the top of the current tier"
        CAP_PRESSURE = "cap_pressure", "Consistently hitting caps"
        FAST_GROWTH = "fast_growth", "A module growing fast"

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="expansion_signals"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    alert = models.OneToOneField(
        Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="expansion_signal"
    )
    meter = models.ForeignKey(
        Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    evidence = models.JSONField(default=dict)
    # Added revenue per billing period if the customer moves as the evidence suggests.
    currency = models.CharField(max_length=3, blank=True)
    estimated_revenue_impact_minor = models.BigIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.customer}: {self.get_kind_display()}"

"""Meters: how raw usage events become a billable quantity."""

from django.contrib.postgres.fields import ArrayField
from django.core.validators import RegexValidator
from django.db import models

EVENT_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$"
PROPERTY_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class Meter(models.Model):
    """A vendor-wide definition: which events count (``code`` is their event name, plus
    optional property filters), how they aggregate, and which properties break usage down.

    ``filters`` is normalized to ``[{"property": "region", "values": ["eu", "us"]}]``: an
    event matches when, for every filter, its property's text is one of the values.
    """

    class Aggregation(models.TextChoices):
        COUNT = "count", "Count of events"
        SUM = "sum", "Sum of a property"
        MAX = "max", "Maximum of a property"
        UNIQUE_COUNT = "unique_count", "Distinct values of a property"
        LATEST = "latest", "Latest value of a property (gauge)"

    class RebuildStatus(models.TextChoices):
        IDLE = "idle", "Up to date"
        QUEUED = "queued", "Rebuild queued"
        RUNNING = "running", "Rebuilding"
        FAILED = "failed", "Rebuild failed"

    code = models.CharField(
        max_length=128,
        unique=True,
        validators=[
            RegexValidator(EVENT_NAME_PATTERN, "Start with a letter; use letters, digits, _ . : -")
        ],
        help_text="The event name this meter counts.",
    )
    name = models.CharField(max_length=200)
    unit_label = models.CharField(max_length=40, help_text="e.g. calls, GB, seats")
    aggregation = models.CharField(max_length=16, choices=Aggregation.choices)
    value_property = models.CharField(
        max_length=64,
        blank=True,
        validators=[RegexValidator(PROPERTY_PATTERN)],
        help_text="The event property carrying the value (not used by count).",
    )
    filters = models.JSONField(default=list, blank=True)
    group_by = ArrayField(
        models.CharField(max_length=64, validators=[RegexValidator(PROPERTY_PATTERN)]),
        size=3,
        default=list,
        blank=True,
        help_text="Up to three properties that break usage down (e.g. region, model).",
    )
    is_active = models.BooleanField(default=True)
    # Bumped by every definition change; a rebuild records the version it built.
    definition_version = models.PositiveIntegerField(default=1)
    rebuild_status = models.CharField(
        max_length=8, choices=RebuildStatus.choices, default=RebuildStatus.IDLE
    )
    rebuild_progress = models.PositiveSmallIntegerField(default=100, help_text="Percent done.")
    rebuilt_version = models.PositiveIntegerField(default=1)
    rebuild_error = models.TextField(blank=True)
    rebuild_started_at = models.DateTimeField(null=True, blank=True)
    rebuild_finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    # Count and sum meters add up: a period's usage is the sum of its days' and events'
    # (a month's distinct users are not the sum of each day's, nor is a gauge). Only these
    # are capped, forecast as a running total, and adjusted by late events.
    ADDITIVE = (Aggregation.COUNT, Aggregation.SUM)

    def __str__(self):
        return f"{self.name} ({self.code})"

    @property
    def is_additive(self) -> bool:
        return self.aggregation in self.ADDITIVE

    @property
    def needs_value(self) -> bool:
        return self.aggregation != self.Aggregation.COUNT

    @property
    def is_numeric(self) -> bool:
        return self.aggregation in (
            self.Aggregation.SUM,
            self.Aggregation.MAX,
            self.Aggregation.LATEST,
        )

"""Runs of the batch track: which hours each reconciliation checked and what it found."""

from django.db import models


class UsageReconciliationRun(models.Model):
    """One scheduled comparison of the real-time rollups with the raw events.

    A run checks the recent window ``[window_start, window_end)`` for every customer, plus
    the "late-touched" hours: hours before the window holding events received, or voided,
    since ``scanned_since``. The next run scans from this run's ``started_at`` (less a
    safety margin), so a succeeded run is where the batch track left off.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.RUNNING)
    window_start = models.DateTimeField(help_text="Start of the recent hours checked.")
    window_end = models.DateTimeField(help_text="End (exclusive) of the recent hours checked.")
    scanned_since = models.DateTimeField(
        help_text="Events received or voided since then had their hours checked too."
    )
    hours_checked = models.PositiveIntegerField(
        default=0, help_text="Recent hours plus late-touched (customer, hour) pairs."
    )
    late_hours_checked = models.PositiveIntegerField(
        default=0, help_text="Late-touched (customer, hour) pairs outside the recent window."
    )
    discrepancies_found = models.PositiveIntegerField(default=0)
    rollups_corrected = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-started_at"], name="usage_recon_status_started")
        ]

    def __str__(self):
        return f"Reconciliation {self.started_at:%Y-%m-%d %H:%M} ({self.status})"

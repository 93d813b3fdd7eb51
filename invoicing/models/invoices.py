"""Invoices, their lines, credit notes and disputes.

Amounts are integers in the currency's minor unit (``*_minor``): each line was rounded
once when rated, and totals are sums of lines. Once finalized, an invoice and its lines
never change — the database refuses it (see the migration's triggers) — and corrections
are credit notes. Invoice and credit note numbers come from a per-year counter row that
finalization increments inside its own transaction, so a rollback returns the number and
the sequence has no gaps; a unique constraint backs it.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.currencies import CURRENCY_CHOICES
from accounts.models import Customer
from metering.models import Meter

from .catalog import PRICE, PriceComponent
from .subscriptions import Subscription

QUANTITY = {"max_digits": 38, "decimal_places": 12}


class Invoice(models.Model):
    TENANT_PATH = "customer"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        HELD = "held", "Held for review"
        OPEN = "open", "Finalized, awaiting payment"
        PAID = "paid", "Paid"
        PAYMENT_FAILED = "payment_failed", "Payment failed"
        UNCOLLECTIBLE = "uncollectible", "Uncollectible"
        VOID = "void", "Void"

    EDITABLE = (Status.DRAFT, Status.HELD)
    # Finalized and not void: what was billed (and stays billed). Credit notes and
    # disputes apply to these; late usage adjusts their lines.
    BILLED = (Status.OPEN, Status.PAID, Status.PAYMENT_FAILED, Status.UNCOLLECTIBLE)
    # Finalized and never paid: what finance may void.
    NEVER_PAID = (Status.OPEN, Status.PAYMENT_FAILED, Status.UNCOLLECTIBLE)

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    number = models.CharField(max_length=32, null=True, blank=True, unique=True)
    number_year = models.PositiveSmallIntegerField(null=True, blank=True)
    number_seq = models.PositiveIntegerField(null=True, blank=True)
    subtotal_minor = models.BigIntegerField(default=0)
    total_minor = models.BigIntegerField(default=0)
    commitment_balance_after_minor = models.BigIntegerField(null=True, blank=True)
    # Late events received before this were carried (by this invoice or earlier ones).
    late_usage_through = models.DateTimeField(null=True, blank=True)
    rated_at = models.DateTimeField(null=True, blank=True)
    # Drafts wait for stragglers until then, and are re-rated before they finalize.
    finalize_after = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=500, blank=True)
    # Stripe: one Stripe invoice per invoice, whatever happens to the sync.
    stripe_invoice_id = models.CharField(max_length=64, blank=True)
    stripe_synced_at = models.DateTimeField(null=True, blank=True)
    stripe_sync_attempts = models.PositiveIntegerField(default=0)
    stripe_last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            # Two period-close workers can never bill one period twice.
            models.UniqueConstraint(
                fields=["subscription", "period_start"], name="invoice_one_per_period"
            ),
            models.UniqueConstraint(
                fields=["number_year", "number_seq"], name="invoice_number_unique"
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")), name="invoice_period_order"
            ),
            models.CheckConstraint(
                condition=Q(total_minor__gte=0), name="invoice_total_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "held"]) | Q(number__isnull=False),
                name="invoice_finalized_has_number",
            ),
            # One Stripe invoice per invoice, and the index a webhook finds its invoice by.
            models.UniqueConstraint(
                fields=["stripe_invoice_id"],
                condition=~Q(stripe_invoice_id=""),
                name="invoice_stripe_invoice_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "finalize_after"], name="invoice_due_finalize"),
            models.Index(fields=["customer", "-period_start"], name="invoice_customer_recent"),
        ]

    def __str__(self):
        return self.number or f"Draft {self.pk} ({self.customer})"

    @property
    def is_editable(self) -> bool:
        return self.status in self.EDITABLE


class InvoiceLine(models.Model):
    TENANT_PATH = "invoice__customer"

    class Kind(models.TextChoices):
        FLAT_FEE = "flat_fee", "Flat fee"
        USAGE = "usage", "Usage"
        MINIMUM_TRUE_UP = "minimum_true_up", "Minimum spend true-up"
        COMMITMENT_FEE = "commitment_fee", "Prepaid commitment"
        COMMITMENT_DRAWDOWN = "commitment_drawdown", "Drawn from commitment"
        DISCOUNT = "discount", "Discount"
        MAXIMUM_ADJUSTMENT = "maximum_adjustment", "Maximum (spend cap)"
        LATE_USAGE = "late_usage", "Adjustment: late usage of an earlier period"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=24, choices=Kind.choices)
    description = models.CharField(max_length=300)
    meter = models.ForeignKey(
        Meter, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    price_component = models.ForeignKey(
        PriceComponent, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The span this line charges for: a phase of the period, or (adjustments) an earlier one.
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    quantity = models.DecimalField(**QUANTITY, default=0)
    included_units = models.DecimalField(**QUANTITY, default=0)
    unit_price = models.DecimalField(**PRICE, null=True, blank=True)
    amount_minor = models.BigIntegerField()
    # Tier by tier: [{tier, first_unit, up_to, quantity, unit_price, flat_fee, amount}]
    tiers = models.JSONField(default=list, blank=True)
    # A late-usage adjustment names the earlier invoice's usage line it tops up.
    adjusts_line = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="adjustments"
    )

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position"),
        ]

    def __str__(self):
        return self.description


class InvoiceUsageCheck(models.Model):
    """The reconciliation gate's evidence, per meter: the period's usage from the raw events
    (batch track, what is billed), from the real-time rollups, and as the portal shows it."""

    TENANT_PATH = "invoice__customer"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="usage_checks")
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    batch_quantity = models.DecimalField(**QUANTITY)
    realtime_quantity = models.DecimalField(**QUANTITY)
    portal_quantity = models.DecimalField(**QUANTITY)
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["invoice", "meter", "period_start"]

    def __str__(self):
        return f"{self.meter.code}: batch {self.batch_quantity}, real-time {self.realtime_quantity}"

    @property
    def matches(self) -> bool:
        return self.batch_quantity == self.realtime_quantity == self.portal_quantity


class DocumentSequence(models.Model):
    """The last number issued per series and year. Finalization increments the row inside
    its own transaction (the row lock orders concurrent finalizations; a rollback gives the
    number back), so numbers are gap-free; never computed as "max + 1"."""

    pk = models.CompositePrimaryKey("series", "year")
    series = models.CharField(max_length=4)  # "INV", "CN"
    year = models.PositiveSmallIntegerField()
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"{self.series}-{self.year}: {self.last_number}"


class CreditNote(models.Model):
    TENANT_PATH = "customer"

    class Reason(models.TextChoices):
        DUPLICATE = "duplicate", "Duplicate charge"
        BILLING_ERROR = "billing_error", "Billing error"
        DISPUTE_ACCEPTED = "dispute_accepted", "Dispute accepted"
        INVOICE_VOIDED = "invoice_voided", "Invoice voided"
        GOODWILL = "goodwill", "Goodwill"
        OTHER = "other", "Other"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=32, unique=True)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    memo = models.TextField()
    total_minor = models.BigIntegerField()
    issued_at = models.DateTimeField()
    issued_by = models.CharField(max_length=200, help_text="Who, as it read at the time.")
    stripe_credit_note_id = models.CharField(max_length=64, blank=True)
    stripe_synced_at = models.DateTimeField(null=True, blank=True)
    # Why the last push failed: a refusal or conflict waits for a person (the sweep skips it).
    stripe_last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-issued_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(total_minor__gt=0), name="credit_note_positive"),
        ]

    def __str__(self):
        return self.number


class CreditNoteLine(models.Model):
    TENANT_PATH = "credit_note__customer"

    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    invoice_line = models.ForeignKey(
        InvoiceLine, on_delete=models.PROTECT, related_name="credit_note_lines"
    )
    description = models.CharField(max_length=300)
    amount_minor = models.BigIntegerField()

    class Meta:
        ordering = ["credit_note", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_minor__gt=0), name="credit_note_line_positive"
            ),
        ]

    def __str__(self):
        return self.description


class Dispute(models.Model):
    TENANT_PATH = "customer"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACCEPTED = "accepted", "Accepted (credited)"
        REJECTED = "rejected", "Rejected"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="disputes")
    invoice_line = models.ForeignKey(InvoiceLine, on_delete=models.PROTECT, related_name="disputes")
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    message = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    resolution = models.TextField(blank=True, help_text="Shown to the customer.")
    resolved_by = models.CharField(max_length=200, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    credit_note = models.OneToOneField(
        CreditNote, null=True, blank=True, on_delete=models.PROTECT, related_name="dispute"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice_line"],
                condition=Q(status="open"),
                name="dispute_one_open_per_line",
            ),
        ]

    def __str__(self):
        return f"Dispute on {self.invoice_line} ({self.get_status_display()})"

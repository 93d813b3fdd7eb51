"""Tenants (customers), the people in them, their stakeholders, API keys and the audit log."""

import zoneinfo

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator
from django.db import models
from django.db.models import Q

from .currencies import CURRENCY_CHOICES
from .roles import Role

EXTERNAL_ID_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$",
    "Use 1-128 letters, digits or . _ : @ - (starting with a letter or digit).",
    code="invalid_external_id",
)


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            "%(value)s is not an IANA time zone (e.g. Europe/Berlin).",
            code="invalid_time_zone",
            params={"value": value},
        )


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("A user needs an email address.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    """A person who logs in: a customer's user (through a membership) or vendor staff."""

    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []

    objects = UserManager()

    class Meta:
        ordering = ["email"]

    def __str__(self):
        return self.email


class Customer(models.Model):
    """The vendor's customer account: the tenant every customer-facing row belongs to."""

    TENANT_PATH = "pk"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    name = models.CharField(max_length=200)
    external_id = models.CharField(
        max_length=128,
        unique=True,
        validators=[EXTERNAL_ID_VALIDATOR],
        help_text="The vendor's own id for this customer; events name the customer by it.",
    )
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, default="USD")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    billing_email = models.EmailField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.external_id})"


class Membership(models.Model):
    """A user's seat in one customer, with the role that decides what they may change.

    ``accepted_at`` is empty while the invitation is pending.
    """

    TENANT_PATH = "customer"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    invited_at = models.DateTimeField(null=True, blank=True)
    invitation_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    accepted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer", "user__email"]
        indexes = [models.Index(fields=["customer", "role"])]

    def __str__(self):
        return f"{self.user} · {self.get_role_display()} at {self.customer.name}"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None


# Webhooks are delivered over HTTP(S) only; Django's default would also admit ftp(s).
WEBHOOK_URL_VALIDATOR = URLValidator(schemes=["https", "http"])


class Persona(models.TextChoices):
    DEVELOPER = "developer", "Developer"
    FINANCE = "finance", "Finance"
    PROCUREMENT = "procurement", "Procurement"
    EXECUTIVE = "executive", "Executive"


class Contact(models.Model):
    """A stakeholder to notify, with a persona and the channels that reach them.

    A contact may or may not be a user of the portal.
    """

    TENANT_PATH = "customer"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="contacts")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="contacts",
    )
    name = models.CharField(max_length=200)
    persona = models.CharField(max_length=16, choices=Persona.choices)
    email = models.EmailField(blank=True)
    slack_webhook_url = models.URLField(
        blank=True, max_length=500, validators=[WEBHOOK_URL_VALIDATOR]
    )
    teams_webhook_url = models.URLField(
        blank=True, max_length=500, validators=[WEBHOOK_URL_VALIDATOR]
    )
    webhook_url = models.URLField(
        blank=True,
        max_length=500,
        validators=[WEBHOOK_URL_VALIDATOR],
        help_text="Generic webhook endpoint.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "email"],
                condition=~Q(email=""),
                name="contact_unique_email_per_customer",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.get_persona_display()})"

    @property
    def channels(self) -> list[str]:
        names = {
            "email": self.email,
            "slack": self.slack_webhook_url,
            "teams": self.teams_webhook_url,
            "webhook": self.webhook_url,
        }
        return [name for name, value in names.items() if value]


class ApiKey(models.Model):
    """A bearer credential. Only a SHA-256 digest of the secret is kept.

    The token reads ``mb_<environment>_<kind>_<key_id>_<secret>``; everything before the
    secret is its visible prefix, which tells kind and environment at a glance.
    """

    TENANT_PATH = "customer"

    class Kind(models.TextChoices):
        OPERATOR = "op", "Operator (vendor-wide)"
        CUSTOMER = "cu", "Customer (one customer)"

    class Environment(models.TextChoices):
        LIVE = "live", "Live"
        TEST = "test", "Test"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=2, choices=Kind.choices)
    environment = models.CharField(
        max_length=4, choices=Environment.choices, default=Environment.LIVE
    )
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    key_id = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=40), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="op", customer__isnull=True) | Q(kind="cu", customer__isnull=False)
                ),
                name="api_key_customer_matches_kind",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def prefix(self) -> str:
        return f"mb_{self.environment}_{self.kind}_{self.key_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_operator(self) -> bool:
        return self.kind == self.Kind.OPERATOR


class AuditLog(models.Model):
    """Append-only record of every change that touches money, caps, keys or membership.

    The references are plain ids (no foreign-key constraints) with a readable copy beside
    them, so the record outlives what it describes; a database trigger refuses UPDATE and
    DELETE (see the migration).
    """

    TENANT_PATH = "customer"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_api_key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200, help_text="Who, as it read at the time.")
    customer = models.ForeignKey(
        Customer,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self):
        when = f"{self.created_at:%Y-%m-%d %H:%M:%S}"
        return f"{when} {self.actor_label} {self.action} {self.object_repr}"

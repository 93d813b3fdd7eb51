"""Reads for the customer's webhook endpoints and the secrets that sign for them."""

from datetime import datetime

from django.db.models import F, Prefetch, Q, QuerySet
from django.utils import timezone

from accounts.models import Customer
from accounts.tenancy import scoped

from ..models import WebhookEndpoint, WebhookSecret


def _live_secrets(now: datetime) -> QuerySet[WebhookSecret]:
    """Secrets that still sign at ``now``: the current one (no expiry) first, then the
    previous ones in their overlap, newest first."""
    return WebhookSecret.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    ).order_by(F("expires_at").desc(nulls_first=True), "-created_at", "-id")


def endpoint_signing_secrets(endpoint: WebhookEndpoint, now: datetime | None = None) -> list[str]:
    """The secrets to sign a message for ``endpoint`` with at ``now``, current first. During
    a rotation's overlap that is two, so receivers on either secret verify."""
    return list(
        _live_secrets(now or timezone.now())
        .filter(endpoint=endpoint)
        .values_list("secret", flat=True)
    )


def endpoint_list(
    *, principal, customer: Customer | None = None, now: datetime | None = None
) -> QuerySet[WebhookEndpoint]:
    """The endpoints the principal may see, oldest first, each with ``live_secrets``
    (current first) prefetched."""
    endpoints = scoped(WebhookEndpoint.objects.select_related("customer", "contact"), principal)
    if customer is not None:
        endpoints = endpoints.filter(customer=customer)
    secrets = Prefetch("secrets", _live_secrets(now or timezone.now()), to_attr="live_secrets")
    return endpoints.prefetch_related(secrets).order_by("pk")


def endpoint_current_secret(endpoint: WebhookEndpoint) -> WebhookSecret | None:
    """The secret signing first (from ``endpoint_list``'s prefetch when there is one)."""
    live = getattr(endpoint, "live_secrets", None)
    if live is None:
        live = list(_live_secrets(timezone.now()).filter(endpoint=endpoint))
    return live[0] if live and live[0].expires_at is None else None


def endpoint_previous_secret(endpoint: WebhookEndpoint) -> WebhookSecret | None:
    """The secret still signing in a rotation's overlap, if any."""
    live = getattr(endpoint, "live_secrets", None)
    if live is None:
        live = list(_live_secrets(timezone.now()).filter(endpoint=endpoint))
    return next((s for s in live if s.expires_at is not None), None)

"""Writes for the customer's webhook endpoints: the URLs that receive every alert as a
signed Standard Webhook, and their signing secrets.

A URL is checked for form and for internal addresses when it is saved, so the customer
hears at once that ``http://10.0.0.5/`` cannot work; the real guard stays at connect
time (``alerts.channels.safe_post``), since a name can resolve anywhere later. Secrets are
never written to the audit log.
"""

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.errors import Conflict, InvalidInput
from accounts.models import Contact, Customer, Persona
from accounts.services import Actor, actor_label, audit_record, snapshot
from accounts.services.audit import changed_fields
from alerts.channels import OutboundRefused, generate_webhook_secret, parse_outbound_url
from alerts.channels.addresses import check_address

from ..models import WebhookEndpoint, WebhookSecret

ENDPOINT_FIELDS = ("url", "description", "personas", "enabled", "disabled_reason")
URL_MAX_LENGTH = WebhookEndpoint._meta.get_field("url").max_length
DESCRIPTION_MAX_LENGTH = WebhookEndpoint._meta.get_field("description").max_length
REASON_MAX_LENGTH = WebhookEndpoint._meta.get_field("disabled_reason").max_length
# Endpoints a customer adds itself (contacts' URLs are not counted): enough for every
# team's receiver, few enough that one alert never fans out into hundreds of requests.
MAX_ENDPOINTS = 20
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)


def endpoint_url(url) -> str:
    """A URL we may post alerts to, or InvalidInput with the channel's own code
    (``invalid_url``, ``scheme_not_allowed``, ``blocked_private``...)."""
    if not isinstance(url, str):
        raise InvalidInput("The URL must be text.", field="url", code="invalid_url")
    url = url.strip()
    if len(url) > URL_MAX_LENGTH:
        raise InvalidInput(
            f"The URL is longer than {URL_MAX_LENGTH} characters.", field="url", code="url_too_long"
        )
    try:
        target = parse_outbound_url(url)
        # RFC 6761: these names are loopback wherever they are resolved.
        host = target.host.rstrip(".")
        if host == "localhost" or host.endswith(".localhost"):
            check_address("127.0.0.1")
    except OutboundRefused as exc:
        raise InvalidInput(_refusal_message(exc), field="url", code=exc.code) from exc
    return url


def _refusal_message(exc: OutboundRefused) -> str:
    """The channel's refusal as a sentence; an internal address says why it matters."""
    text = exc.message.rstrip(".")
    if exc.code.startswith("blocked_"):
        return f"Alerts cannot be sent to internal addresses: {text}."
    return f"{text[:1].upper()}{text[1:]}."


def _personas(personas) -> list[str]:
    if personas is None:
        return []
    if not isinstance(personas, list | tuple) or not all(isinstance(p, str) for p in personas):
        raise InvalidInput("personas must be a list of persona names.", field="personas")
    unknown = sorted(set(personas) - set(Persona.values))
    if unknown:
        raise InvalidInput(
            f"{unknown[0][:40]!r} is not a persona; use {', '.join(Persona.values)}.",
            field="personas",
            code="invalid_choice",
        )
    # In the personas' own order, once each: the stored list reads the same every time.
    return [p for p in Persona.values if p in personas]


def _description(description) -> str:
    if not isinstance(description, str):
        raise InvalidInput("description must be text.", field="description")
    description = description.strip()
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise InvalidInput(
            f"The description is longer than {DESCRIPTION_MAX_LENGTH} characters.",
            field="description",
        )
    if "\x00" in description:
        raise InvalidInput(
            "description cannot contain NUL characters.",
            field="description",
            code="null_characters_not_allowed",
        )
    return description


def _save(endpoint: WebhookEndpoint) -> None:
    try:
        with transaction.atomic():
            endpoint.save()
    except IntegrityError as exc:
        if "webhook_endpoint_unique_url" in str(exc):
            raise Conflict(
                "An endpoint with this URL already exists.", field="url", code="duplicate_url"
            ) from exc
        raise


def _state(endpoint: WebhookEndpoint) -> dict:
    return snapshot(endpoint, ENDPOINT_FIELDS)


@transaction.atomic
def endpoint_create(
    *,
    actor: Actor,
    customer: Customer,
    url,
    description="",
    personas=None,
    now: datetime | None = None,
) -> WebhookEndpoint:
    """A new endpoint with its first signing secret (``endpoint.secrets.get().secret``)."""
    endpoint = WebhookEndpoint(
        customer=customer,
        url=endpoint_url(url),
        description=_description(description),
        personas=_personas(personas),
    )
    # The customer's row serializes concurrent creations, so the limit holds.
    Customer.objects.select_for_update().filter(pk=customer.pk).first()
    own = WebhookEndpoint.objects.filter(customer=customer, contact__isnull=True)
    if own.count() >= MAX_ENDPOINTS:
        raise InvalidInput(
            f"A customer can have at most {MAX_ENDPOINTS} webhook endpoints; remove one first.",
            code="too_many_endpoints",
        )
    _save(endpoint)
    WebhookSecret.objects.create(
        endpoint=endpoint, secret=generate_webhook_secret(), created_at=now or timezone.now()
    )
    audit_record(
        actor=actor,
        action="webhook_endpoint.created",
        obj=endpoint,
        customer=customer,
        after=_state(endpoint),
    )
    return endpoint


@transaction.atomic
def endpoint_update(
    *, actor: Actor, endpoint: WebhookEndpoint, now: datetime | None = None, **changes
) -> WebhookEndpoint:
    """Change url, description, personas or enabled. Turning a disabled endpoint back on
    clears why it was disabled (a 410, or a person)."""
    allowed = ("url", "description", "personas", "enabled")
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"{unknown[0]} is not a webhook endpoint field you can set.",
            field=unknown[0],
            code="unknown_field",
        )
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    before = _state(endpoint)
    if "url" in changes:
        endpoint.url = endpoint_url(changes["url"])
    if "description" in changes:
        endpoint.description = _description(changes["description"])
    if "personas" in changes:
        endpoint.personas = _personas(changes["personas"])
    if "enabled" in changes:
        enabled = changes["enabled"]
        if not isinstance(enabled, bool):
            raise InvalidInput("enabled must be true or false.", field="enabled")
        if enabled and not endpoint.enabled:
            endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = True, "", None
        elif not enabled and endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_reason = f"Turned off by {actor_label(actor)}"[:REASON_MAX_LENGTH]
            endpoint.disabled_at = now or timezone.now()
    _save(endpoint)
    old, new = changed_fields(before, _state(endpoint))
    if new:
        audit_record(
            actor=actor,
            action="webhook_endpoint.changed",
            obj=endpoint,
            customer=endpoint.customer,
            before=old,
            after=new,
        )
    return endpoint


@transaction.atomic
def endpoint_delete(*, actor: Actor, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint; its past deliveries stay in the alert history."""
    audit_record(
        actor=actor,
        action="webhook_endpoint.removed",
        obj=endpoint,
        customer=endpoint.customer,
        before=_state(endpoint),
    )
    endpoint.delete()


@transaction.atomic
def endpoint_rotate_secret(
    *,
    actor: Actor,
    endpoint: WebhookEndpoint,
    overlap: timedelta = DEFAULT_OVERLAP,
    now: datetime | None = None,
) -> WebhookSecret:
    """A new current secret. The previous one keeps signing until ``now + overlap``, so
    during the overlap every message carries both signatures and the receiver can switch
    at its own pace. At most two secrets sign at once: rotating again within an overlap
    ends the older one's grace at once (after a leak, rotate with ``overlap=0``)."""
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise InvalidInput(
            f"The overlap must be between 0 and {MAX_OVERLAP.days} days.",
            field="overlap_hours",
            code="invalid_overlap",
        )
    now = now or timezone.now()
    # Rotations of one endpoint queue on its row: each sees the other's new secret.
    WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
    secrets = WebhookSecret.objects.filter(endpoint=endpoint)
    current = secrets.filter(expires_at__isnull=True).order_by("-created_at", "-id").first()
    older = secrets.exclude(pk=current.pk) if current else secrets
    older.delete()
    previous_expires_at = None
    if current is not None:
        previous_expires_at = now + overlap
        current.expires_at = previous_expires_at
        current.save(update_fields=["expires_at"])
    fresh = WebhookSecret.objects.create(
        endpoint=endpoint, secret=generate_webhook_secret(), created_at=now
    )
    audit_record(
        actor=actor,
        action="webhook_endpoint.secret_rotated",
        obj=endpoint,
        customer=endpoint.customer,
        after={
            "previous_secret_expires_at": previous_expires_at and previous_expires_at.isoformat()
        },
    )
    return fresh


@transaction.atomic
def endpoint_disable(endpoint: WebhookEndpoint, reason: str, now: datetime | None = None) -> bool:
    """Turn the endpoint off (the delivery worker, on HTTP 410 Gone). Idempotent: True only
    for the call that turned it off, which alone is audited (as the system)."""
    now = now or timezone.now()
    reason = (reason or "Disabled").strip()[:REASON_MAX_LENGTH]
    turned_off = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
        enabled=False, disabled_reason=reason, disabled_at=now
    )
    if turned_off:
        endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
        audit_record(
            actor=None,
            action="webhook_endpoint.disabled",
            obj=endpoint,
            customer=endpoint.customer,
            before={"enabled": True},
            after={"enabled": False, "disabled_reason": reason},
        )
    return bool(turned_off)


def endpoint_for_contact_url(customer: Customer, contact: Contact, url: str) -> WebhookEndpoint:
    """The endpoint that signs deliveries to a contact's webhook URL, made on first use.

    Idempotent and safe under concurrency (the (customer, url) constraint decides); not
    audited, as nobody changed anything: the contact's URL was audited when it was set.
    An endpoint the customer already made for the same URL is reused as it is."""
    endpoint, created = WebhookEndpoint.objects.get_or_create(
        customer=customer,
        url=url,
        defaults={"contact": contact, "personas": [contact.persona]},
    )
    if created or not endpoint.secrets.exists():
        with transaction.atomic():
            # Two first uses at once: the row lock lets one of them make the secret.
            WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
            if not endpoint.secrets.exists():
                WebhookSecret.objects.create(
                    endpoint=endpoint, secret=generate_webhook_secret(), created_at=timezone.now()
                )
    return endpoint

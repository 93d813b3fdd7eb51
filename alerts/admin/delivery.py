"""The outbox (deliveries with every attempt, and their replay) and customers' webhook
endpoints. Signing secrets never appear here: not their text, not a part of it."""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts.errors import DomainError
from invoicing.admin._shared import BR, ReadOnlyInline, ServiceAdmin, admin_link, changelist_url
from metering.admin import ReadOnlyAdmin

from ..models import Delivery, DeliveryAttempt, WebhookEndpoint, WebhookSecret
from ..services import outbox
from ._shared import counted, personas

REPLAYABLE = (Delivery.Status.FAILED, Delivery.Status.SKIPPED)


def delivery_label(delivery: Delivery) -> str:
    return f"#{delivery.pk} {delivery}"


# --- Deliveries -------------------------------------------------------------------------------


class DeliveryAttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = [
        "number",
        "attempted_at",
        "status",
        "status_code",
        "duration_ms",
        "error_code",
        "error_message",
        "response_excerpt",
    ]
    readonly_fields = fields
    ordering = ["number"]


@admin.register(Delivery)
class DeliveryAdmin(ServiceAdmin):
    """Read-only; "change" on deliveries unlocks the replay (finance)."""

    list_display = [
        "label",
        "customer",
        "alert_title",
        "event",
        "channel",
        "persona",
        "target",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "channel", "persona", "event"]
    list_select_related = ["alert__customer"]
    search_fields = [
        "target",
        "alert__title",
        "alert__customer__name",
        "alert__customer__external_id",
    ]
    search_help_text = "An address (URL or email), an alert's title, a customer's name or id."
    date_hierarchy = "created_at"
    show_facets = admin.ShowFacets.NEVER
    fields = [
        "alert_link",
        "customer",
        "event",
        "channel",
        "persona",
        "contact",
        "endpoint_link",
        "target",
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
    ]
    readonly_fields = fields
    inlines = [DeliveryAttemptInline]
    actions = ["replay"]

    @admin.display(description="Delivery", ordering="pk")
    def label(self, delivery):
        return f"#{delivery.pk}"

    @admin.display(description="Customer")
    def customer(self, delivery):
        return str(delivery.alert.customer)

    @admin.display(description="Alert")
    def alert_title(self, delivery):
        return delivery.alert.title

    @admin.display(description="Alert")
    def alert_link(self, delivery):
        return admin_link(delivery.alert)

    @admin.display(description="Webhook endpoint")
    def endpoint_link(self, delivery):
        return admin_link(delivery.endpoint) if delivery.endpoint_id else "—"

    def object_actions(self, request, delivery):
        return [("replay", "Replay")] if delivery.status in REPLAYABLE else []

    @admin.action(description="Replay selected deliveries", permissions=["change"])
    def replay(self, request, queryset):
        """Send failed or skipped deliveries again from a fresh schedule (the service
        refuses any other, and audits each replay)."""
        replayed, refused = [], []
        for delivery in queryset.select_related("alert__customer").order_by("pk"):
            try:
                outbox.delivery_replay(actor=request.user, delivery=delivery)
            except DomainError as exc:
                refused.append(f"{delivery_label(delivery)} ({exc.message})")
            else:
                replayed.append(f"#{delivery.pk}")
        if replayed:
            noun = "delivery" if len(replayed) == 1 else "deliveries"
            messages.success(request, f"Replayed {len(replayed)} {noun}: {', '.join(replayed)}.")
        if refused:
            messages.error(request, f"Not replayed: {'; '.join(refused)}.")
        return self.done(request)


# --- Webhook endpoints ------------------------------------------------------------------------


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    """Customers manage their endpoints (portal, API); staff look. No secret is shown."""

    list_display = ["url", "customer", "enabled", "disabled_reason", "contact", "created_at"]
    list_filter = ["enabled"]
    list_select_related = ["customer", "contact"]
    search_fields = ["url", "customer__name", "customer__external_id"]
    search_help_text = "A URL, a customer's name or external id."
    show_facets = admin.ShowFacets.NEVER
    fields = [
        "customer",
        "url",
        "description",
        "personas_text",
        "contact",
        "enabled",
        "disabled_reason",
        "disabled_at",
        "signing",
        "deliveries_link",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="Alerts for")
    def personas_text(self, endpoint):
        return personas(endpoint.personas)

    @admin.display(description="Signing secrets")
    def signing(self, endpoint):
        """When the live secrets were made and until when they sign: never their text
        (the secret column is not even read)."""
        live = (
            WebhookSecret.objects.filter(endpoint=endpoint)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
            .order_by("-created_at", "-pk")
            .values_list("created_at", "expires_at")
        )
        lines = [
            (
                f"{made:%Y-%m-%d %H:%M}",
                "current"
                if expires is None
                else f"previous, signs until {expires:%Y-%m-%d %H:%M} UTC",
            )
            for made, expires in live
        ]
        if not lines:
            return "none"
        return format_html_join(BR, "Made {} UTC: {}", lines)

    @admin.display(description="Deliveries")
    def deliveries_link(self, endpoint):
        url = f"{changelist_url(Delivery)}?endpoint={endpoint.pk}"
        deliveries = counted(endpoint.deliveries.count(), "delivery", "deliveries")
        return format_html('<a href="{}">{}</a>', url, deliveries)

"""Reads of the alert history: the API's list, the portal's notification center, history
and banner. Every one is scoped to the principal's customer and bounded in queries (the
deliveries come in one prefetch per page, never one query per alert)."""

from datetime import datetime

from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from accounts.models import Customer, Membership
from accounts.tenancy import scoped
from metering.models import Meter

from ..models import Alert, AlertSeen, Delivery, DeliveryAttempt

# Severities worth interrupting every page for; info waits in the notification center.
BANNER_SEVERITIES = (Alert.Severity.WARNING, Alert.Severity.CRITICAL)
# The badge says "99+" beyond this: counting further would read the whole history.
UNREAD_COUNT_LIMIT = 100


def alert_list(
    *,
    principal,
    customer: Customer | None = None,
    status: str | None = None,
    kind: str | None = None,
    meter: Meter | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Alert]:
    """Alerts the principal may see, newest first, filtered; ``since`` and ``until`` bound
    ``triggered_at`` as ``[since, until)``."""
    alerts = scoped(Alert.objects.select_related("customer", "meter"), principal)
    if customer is not None:
        alerts = alerts.filter(customer=customer)
    if status:
        alerts = alerts.filter(status=status)
    if kind:
        alerts = alerts.filter(kind=kind)
    if meter is not None:
        alerts = alerts.filter(meter=meter)
    if since is not None:
        alerts = alerts.filter(triggered_at__gte=since)
    if until is not None:
        alerts = alerts.filter(triggered_at__lt=until)
    return alerts.order_by("-triggered_at", "-id")


def with_deliveries(alerts: QuerySet[Alert], *, attempts: bool = False) -> QuerySet[Alert]:
    """Each alert's deliveries (oldest first) in ``delivery_list``, and with ``attempts``
    each delivery's attempts in ``attempt_list``: one query each for the whole page."""
    deliveries = Delivery.objects.order_by("created_at", "id")
    if attempts:
        deliveries = deliveries.prefetch_related(
            Prefetch(
                "attempt_log",
                DeliveryAttempt.objects.order_by("number"),
                to_attr="attempt_list",
            )
        )
    return alerts.prefetch_related(Prefetch("deliveries", deliveries, to_attr="delivery_list"))


def with_unread(alerts: QuerySet[Alert], *, user) -> QuerySet[Alert]:
    """Annotates ``unread``: the user has not seen the alert."""
    seen = AlertSeen.objects.filter(alert=OuterRef("pk"), user=user)
    return alerts.annotate(unread=~Exists(seen))


def _unseen(membership: Membership) -> QuerySet[Alert]:
    seen = AlertSeen.objects.filter(alert=OuterRef("pk"), user_id=membership.user_id)
    return Alert.objects.filter(customer_id=membership.customer_id).filter(~Exists(seen))


def unread_alert_count(*, membership: Membership) -> int:
    """How many of the customer's alerts this member has not seen, up to
    ``UNREAD_COUNT_LIMIT`` (one query, however long the history)."""
    return _unseen(membership).order_by()[:UNREAD_COUNT_LIMIT].count()


def banner_alert(*, membership: Membership) -> Alert | None:
    """The newest open warning or critical alert this member has not seen (one query)."""
    return (
        _unseen(membership)
        .filter(status=Alert.Status.OPEN, severity__in=BANNER_SEVERITIES)
        .select_related("meter")
        .order_by("-triggered_at", "-id")
        .first()
    )

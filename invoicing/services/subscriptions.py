"""Writes for subscriptions: start, change plan, cancel.

A subscription is a sequence of phases, one per plan version it was on. A plan change
ends the current phase at the second of the change and starts a new one, so the period
it falls in prorates the flat fees by the second and splits usage at the change.
"""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.errors import Conflict, InvalidInput
from accounts.models import Customer
from accounts.services import Actor, audit_record

from ..models import PlanVersion, Subscription, SubscriptionPhase
from ..periods import period_bounds, period_containing


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidInput(f"{field} must include a UTC offset.", field=field)
    return value


def period_end_after(subscription: Subscription, start: datetime) -> datetime | None:
    """End of the period that starts at ``start`` (cut short by the subscription's end);
    None when the subscription has ended by then."""
    if subscription.ends_at is not None and subscription.ends_at <= start:
        return None
    _, _, end = period_containing(subscription.billing_anchor, subscription.interval, start)
    if subscription.ends_at is not None:
        end = min(end, subscription.ends_at)
    return end


@transaction.atomic
def subscription_create(
    *,
    actor: Actor,
    customer: Customer,
    plan_version: PlanVersion,
    started_at: datetime | None = None,
    billing_anchor: datetime | None = None,
) -> Subscription:
    started_at = _aware(started_at or timezone.now(), "started_at")
    anchor = _aware(billing_anchor or started_at, "billing_anchor")
    if anchor > started_at:
        raise InvalidInput("billing_anchor cannot be after the start.", field="billing_anchor")
    if plan_version.plan.currency != customer.currency:
        raise InvalidInput(
            f"{plan_version.plan} bills in {plan_version.plan.currency}; "
            f"{customer.name} is billed in {customer.currency}.",
            field="plan",
            code="currency_mismatch",
        )
    # The first period runs from the start to the next anniversary of the anchor.
    _, _, first_end = period_containing(anchor, plan_version.interval, started_at)
    subscription = Subscription(
        customer=customer,
        plan_version=plan_version,
        started_at=started_at,
        billing_anchor=anchor,
        billed_through=started_at,
        current_period_end=first_end,
    )
    try:
        with transaction.atomic():
            subscription.save()
    except IntegrityError:
        raise Conflict(
            f"{customer.name} already has an active subscription.", code="already_subscribed"
        ) from None
    SubscriptionPhase.objects.create(
        subscription=subscription, plan_version=plan_version, starts_at=started_at
    )
    audit_record(
        actor=actor,
        action="subscription.created",
        obj=subscription,
        customer=customer,
        after={
            "plan_version": str(plan_version),
            "started_at": started_at.isoformat(),
            "billing_anchor": anchor.isoformat(),
        },
    )
    return subscription


def _locked(subscription: Subscription) -> Subscription:
    locked = (
        Subscription.objects.select_for_update()
        .select_related("plan_version__plan")
        .get(pk=subscription.pk)
    )
    if locked.status != Subscription.Status.ACTIVE or (
        locked.ends_at is not None and locked.ends_at <= timezone.now()
    ):
        raise Conflict("This subscription has ended.", code="subscription_ended")
    return locked


@transaction.atomic
def subscription_change_plan(
    *,
    actor: Actor,
    subscription: Subscription,
    plan_version: PlanVersion,
    at: datetime | None = None,
) -> Subscription:
    """Move to ``plan_version`` from ``at`` (now by default) to the end of the subscription."""
    subscription = _locked(subscription)
    at = _aware(at or timezone.now(), "at")
    if at < subscription.billed_through:
        raise InvalidInput("A plan change cannot reach into a period already invoiced.", field="at")
    if plan_version.pk == subscription.plan_version_id:
        raise Conflict("The subscription is already on this plan version.", code="same_plan")
    if plan_version.plan.currency != subscription.plan_version.plan.currency:
        raise InvalidInput(
            "A plan change cannot change the currency.", field="plan", code="currency_mismatch"
        )
    if plan_version.interval != subscription.interval:
        raise InvalidInput(
            "A plan change keeps the billing interval; cancel and subscribe anew to change it.",
            field="plan",
            code="interval_mismatch",
        )
    current = subscription.phases.get(ends_at__isnull=True)
    if at <= current.starts_at:
        raise InvalidInput("The change must come after the current plan started.", field="at")
    current.ends_at = at
    current.save(update_fields=["ends_at"])
    SubscriptionPhase.objects.create(
        subscription=subscription, plan_version=plan_version, starts_at=at
    )
    before = str(subscription.plan_version)
    subscription.plan_version = plan_version
    subscription.save(update_fields=["plan_version", "updated_at"])
    audit_record(
        actor=actor,
        action="subscription.plan_changed",
        obj=subscription,
        customer=subscription.customer,
        before={"plan_version": before},
        after={"plan_version": str(plan_version), "at": at.isoformat()},
    )
    return subscription


@transaction.atomic
def subscription_cancel(
    *, actor: Actor, subscription: Subscription, at_period_end: bool, now: datetime | None = None
) -> Subscription:
    """Cancel now (the current period is cut short and billed up to now) or at the end of
    the current period."""
    subscription = _locked(subscription)
    now = now or timezone.now()
    if at_period_end:
        index, _, _ = period_containing(subscription.billing_anchor, subscription.interval, now)
        ends_at = period_bounds(subscription.billing_anchor, subscription.interval, index)[1]
    else:
        ends_at = now
    ends_at = max(ends_at, subscription.billed_through)
    subscription.ends_at = ends_at
    subscription.canceled_at = now
    subscription.current_period_end = period_end_after(subscription, subscription.billed_through)
    if not at_period_end:
        # No longer active: the customer may subscribe anew at once.
        subscription.status = Subscription.Status.CANCELED
    subscription.save()
    subscription.phases.filter(starts_at__gte=ends_at).delete()
    subscription.phases.filter(ends_at__isnull=True).update(ends_at=ends_at)
    audit_record(
        actor=actor,
        action="subscription.canceled",
        obj=subscription,
        customer=subscription.customer,
        after={"ends_at": ends_at.isoformat(), "at_period_end": at_period_end},
    )
    return subscription

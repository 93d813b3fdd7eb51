from datetime import datetime

from django.apps import AppConfig


def current_billing_period(customer, now: datetime) -> tuple[datetime, datetime] | None:
    """The subscription's period containing ``now``: ``[billed_through, current_period_end)``,
    or — in the minutes between a period's end and the close job — the one after it.
    ``None`` without a subscription still billing (metering then shows the calendar month)."""
    from .selectors import subscription_current
    from .services.subscriptions import period_end_after

    subscription = subscription_current(customer=customer)
    if subscription is None:
        return None
    start, end = subscription.billed_through, subscription.current_period_end
    if end <= now:
        following = period_end_after(subscription, end)
        if following is None:
            return None
        start, end = end, following
    if not start <= now < end:
        return None
    return start, end


def dashboard_spend(customer, now: datetime):
    """metering's spend provider: the usage dashboard shows the invoice so far and its
    projection, the same figures as the billing page."""
    from metering.hooks import SpendOutlook

    from .currency import format_money
    from .selectors import projected_invoice

    projection = projected_invoice(customer=customer, now=now)
    if projection is None:
        return None
    currency = projection.currency
    return SpendOutlook(
        so_far=format_money(projection.upcoming.total_minor, currency),
        projected=format_money(projection.projected_minor, currency),
        likely_range=projection.range_text,
        by_forecast=projection.by_forecast,
    )


class InvoicingConfig(AppConfig):
    name = "invoicing"
    verbose_name = "Invoicing"

    def ready(self):
        from metering import hooks

        hooks.register_billing_period(current_billing_period)
        hooks.register_spend_outlook(dashboard_spend)

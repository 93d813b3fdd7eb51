"""What a customer's usage costs, for its cap on total spend: the current plan version's
usage prices, an event's cost after the period's usage so far, and the period's usage
charges. Flat fees, commitments and discounts are fixed amounts, not usage, and do not
count.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, localcontext

from accounts.models import Customer
from invoicing import selectors as invoicing
from invoicing.rating import UsagePrice, usage_amount
from metering import selectors as metering
from metering.models import Meter


@dataclass(frozen=True)
class SpendTerms:
    """What the customer's current plan version charges for usage: a total spend cap's
    prices (additive meters only: their usage grows event by event) and currency."""

    prices: dict[int, UsagePrice]  # meter id -> its usage price
    meters: dict[int, Meter]
    currency: str


def spend_terms(customer: Customer) -> SpendTerms | None:
    """The customer's usage prices, or ``None`` when no subscription prices any usage."""
    subscription = invoicing.subscription_current(customer=customer)
    if subscription is None:
        return None
    prices = invoicing.plan_version_terms(subscription.plan_version).prices
    meters = {m.pk: m for m in Meter.objects.filter(pk__in=prices) if m.is_additive}
    if not meters:
        return None
    return SpendTerms(
        prices={pk: prices[pk] for pk in meters},
        meters=meters,
        currency=subscription.plan_version.plan.currency,
    )


_MONEY_STEP = Decimal("1e-12")  # the window columns' scale


def usage_cost(price: UsagePrice, before: Decimal, quantity: Decimal) -> Decimal:
    """What ``quantity`` more units cost after ``before`` units this period: rounded up to
    the columns' 12 decimals (the cap never counts less than the charge), never negative."""
    with localcontext(prec=80):
        cost = usage_amount(price, before + quantity) - usage_amount(price, before)
        return max(cost, Decimal(0)).quantize(_MONEY_STEP, rounding=ROUND_CEILING)


def usage_charges(customer: Customer, terms: SpendTerms, start: datetime, end: datetime) -> Decimal:
    """What the customer's usage of ``[start, end)`` costs at ``terms``' prices."""
    return sum(
        (
            usage_cost(
                terms.prices[pk],
                Decimal(0),
                metering.usage_total(customer=customer, meter=meter, start=start, end=end),
            )
            for pk, meter in terms.meters.items()
        ),
        Decimal(0),
    )


def spend_so_far(customer: Customer, *, now: datetime) -> Decimal | None:
    """The usage charges of the customer's billing period at ``now`` (what a total spend
    cap counts), or ``None`` when its plan prices no usage."""
    terms = spend_terms(customer)
    if terms is None:
        return None
    period = metering.current_period(customer, now)
    return usage_charges(customer, terms, period.start, period.end)

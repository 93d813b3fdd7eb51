"""Pure helpers for the spend outlook (alerts.selectors.outlook): how forecast growth is
shared among a period's plan phases, whole units for counts, which plans are worth
offering and how an option is put in words. No database, no clock."""

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from invoicing.currency import format_money

# A plan that costs at most this much more than the current one is still shown: a few
# percent buys headroom (a bigger allowance, a cap), and the customer may value it.
NEAR_PERCENT = Decimal(3)

_MICROSECOND = timedelta(microseconds=1)
INTERVAL_WORDS = {"month": "month", "quarter": "quarter", "year": "year"}
INTERVAL_ADVERBS = {"month": "monthly", "quarter": "quarterly", "year": "yearly"}


def growth_share(
    *, span_start: datetime, span_end: datetime, as_of: datetime, period_end: datetime
) -> Fraction:
    """The share of the period's remaining usage that falls in ``[span_start, span_end)``:
    the part of ``[as_of, period_end)`` it covers, by time (one phase: all of it)."""
    remaining = period_end - as_of
    if remaining.total_seconds() <= 0:
        return Fraction(0)
    overlap = min(span_end, period_end) - max(span_start, as_of)
    if overlap.total_seconds() <= 0:
        return Fraction(0)
    if overlap >= remaining:
        return Fraction(1)
    return Fraction(overlap // _MICROSECOND, remaining // _MICROSECOND)


def projected_quantity(
    *, so_far: Decimal, growth: Decimal, share: Fraction, whole_units: bool
) -> Decimal:
    """Usage so far plus its share of the growth still to come; counts in whole units
    (half-up), never below what was already used."""
    if share == 1:
        quantity = so_far + growth
    else:
        added = Fraction(growth) * share
        quantity = so_far + Decimal(added.numerator) / Decimal(added.denominator)
    if whole_units:
        quantity = quantity.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return max(quantity, so_far)


def worth_offering(*, cost_minor: int, current_minor: int) -> bool:
    """A plan that saves money, or costs at most NEAR_PERCENT more."""
    return cost_minor * 100 <= current_minor * (100 + NEAR_PERCENT)


def describe_option(
    *,
    plan_name: str,
    currency: str,
    cost_minor: int,
    current_minor: int,
    usage_interval: str,
    plan_interval: str,
    commitment_minor: int | None = None,
    commitment_months: int | None = None,
) -> str:
    """One line a person reads: ``Scale plan: 4,210.00 EUR at your forecast usage instead
    of 5,030.00 EUR — saves 820.00 EUR this period``."""
    name = plan_name if plan_name.lower().endswith("plan") else f"{plan_name} plan"
    saving = current_minor - cost_minor
    if plan_interval == usage_interval:
        per = "this period"
        cost = format_money(cost_minor, currency)
    else:
        per = f"a {INTERVAL_WORDS.get(usage_interval, usage_interval)}"
        cost = (
            f"{format_money(cost_minor, currency)} a "
            f"{INTERVAL_WORDS.get(usage_interval, usage_interval)} on average "
            f"(billed {INTERVAL_ADVERBS.get(plan_interval, plan_interval)})"
        )
    if saving > 0:
        verdict = f"saves {format_money(saving, currency)} {per}"
    elif saving == 0:
        verdict = f"costs the same {per}"
    else:
        verdict = f"costs {format_money(-saving, currency)} more {per}"
    line = (
        f"{name}: {cost} at your forecast usage instead of "
        f"{format_money(current_minor, currency)} — {verdict}"
    )
    if commitment_minor:
        line += (
            f" (with a {commitment_months}-month prepaid commitment of "
            f"{format_money(commitment_minor, currency)})"
        )
    return line

"""Properties of the rating engine, checked by Hypothesis over random prices and usage.

The oracles here are written from the definitions in the rating module's docstring, with
exact ``Fraction`` arithmetic, and share no code with the engine beyond its data classes.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from invoicing.currency import to_minor
from invoicing.periods import INTERVAL_MONTHS, period_bounds, proration_fraction
from invoicing.rating import (
    LineKind,
    PeriodPricing,
    Tier,
    UsagePrice,
    rate_flat_fee,
    rate_period,
    rate_usage,
    usage_amount,
)

CURRENCIES = st.sampled_from(["USD", "JPY", "KWD", "EUR"])


def decimals(max_value, places):
    return st.decimals(min_value=0, max_value=max_value, places=places)


unit_prices = st.integers(0, 12).flatmap(lambda places: decimals(100, places))
fees = decimals(1000, 2)
quantities = st.integers(0, 6).flatmap(lambda places: decimals(10**7, places))


@st.composite
def tier_lists(draw, max_tiers=5):
    bounds = draw(
        st.lists(
            decimals(10**6, 3).filter(lambda bound: bound > 0),
            max_size=max_tiers - 1,
            unique=True,
        )
    )
    uppers = [*sorted(bounds), None]
    return tuple(
        Tier(up_to=upper, unit_price=draw(unit_prices), flat_fee=draw(st.one_of(st.just(0), fees)))
        for upper in uppers
    )


@st.composite
def tiered_prices(draw, model):
    return UsagePrice(model=model, tiers=draw(tier_lists()), included_units=draw(decimals(1000, 2)))


def exact_minor(amount, currency):
    """The one rounding, done independently: half-up on the exact rational amount."""
    scaled = Fraction(amount) * 10 ** {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}[currency]
    magnitude = abs(scaled)
    rounded = int(magnitude + Fraction(1, 2))  # floor for non-negative values
    return rounded if scaled >= 0 else -rounded


def billable(price, quantity):
    return max(Fraction(0), Fraction(quantity) - Fraction(price.included_units))


# --- Usage models -------------------------------------------------------------------------


@given(price=tiered_prices("graduated"), quantity=quantities, currency=CURRENCIES)
def test_graduated_is_the_sum_of_its_tier_slices(price, quantity, currency):
    line = rate_usage(price, quantity, currency=currency)
    units = billable(price, quantity)

    assert sum(Fraction(row.quantity) for row in line.tiers) == units
    assert [row.tier for row in line.tiers] == list(range(1, len(line.tiers) + 1))

    # Oracle straight from the definition: each tier covers (previous up_to, up_to].
    expected = Fraction(0)
    lower = Fraction(0)
    for tier in price.tiers:
        upper = units if tier.up_to is None else min(units, Fraction(tier.up_to))
        if units > lower:
            expected += (upper - lower) * Fraction(tier.unit_price) + Fraction(tier.flat_fee)
        if tier.up_to is None:
            break
        lower = Fraction(tier.up_to)

    exact = usage_amount(price, quantity)
    assert Fraction(exact) == expected == sum(Fraction(row.amount) for row in line.tiers)
    assert line.amount_minor == exact_minor(expected, currency)  # rounded once, half-up
    for row in line.tiers:
        assert row.quantity > 0
        assert Fraction(row.amount) == Fraction(row.quantity) * Fraction(row.unit_price) + Fraction(
            row.flat_fee
        )


@given(price=tiered_prices("volume"), quantity=quantities, currency=CURRENCIES)
def test_volume_prices_every_unit_at_one_tier(price, quantity, currency):
    line = rate_usage(price, quantity, currency=currency)
    units = billable(price, quantity)
    if units == 0:
        assert (line.tiers, line.amount_minor) == ((), 0)
        return
    (row,) = line.tiers
    tier = price.tiers[row.tier - 1]
    # The quantity falls in this tier: above the previous bound, at or below its own.
    assert Fraction(row.first_unit) < units
    assert tier.up_to is None or units <= Fraction(tier.up_to)
    assert row.tier == 1 or Fraction(price.tiers[row.tier - 2].up_to) == Fraction(row.first_unit)
    expected = units * Fraction(tier.unit_price) + Fraction(tier.flat_fee)
    assert Fraction(usage_amount(price, quantity)) == expected
    assert line.amount_minor == exact_minor(expected, currency)
    assert line.unit_price == tier.unit_price


@given(
    unit_price=unit_prices,
    flat_fee=st.one_of(st.just(Decimal(0)), fees),
    included=decimals(1000, 2),
    quantity=quantities,
    currency=CURRENCIES,
)
def test_graduated_and_volume_agree_on_a_single_tier(
    unit_price, flat_fee, included, quantity, currency
):
    tiers = (Tier(up_to=None, unit_price=unit_price, flat_fee=flat_fee),)
    graduated = UsagePrice(model="graduated", tiers=tiers, included_units=included)
    volume = UsagePrice(model="volume", tiers=tiers, included_units=included)
    assert usage_amount(graduated, quantity) == usage_amount(volume, quantity)
    assert (
        rate_usage(graduated, quantity, currency=currency).amount_minor
        == rate_usage(volume, quantity, currency=currency).amount_minor
    )


@given(
    unit_price=unit_prices,
    included=decimals(1000, 2),
    quantities=st.lists(quantities, min_size=2, max_size=2),
    currency=CURRENCIES,
)
def test_per_unit_is_monotonic_in_quantity(unit_price, included, quantities, currency):
    price = UsagePrice(model="per_unit", unit_price=unit_price, included_units=included)
    low, high = sorted(quantities)
    low_line = rate_usage(price, low, currency=currency)
    high_line = rate_usage(price, high, currency=currency)
    assert 0 <= low_line.amount_minor <= high_line.amount_minor
    expected = billable(price, high) * Fraction(unit_price)
    assert high_line.amount_minor == exact_minor(expected, currency)


@given(price=tiered_prices("graduated"), quantities=st.lists(quantities, min_size=2, max_size=2))
def test_graduated_is_monotonic_in_quantity(price, quantities):
    low, high = sorted(quantities)
    assert usage_amount(price, low) <= usage_amount(price, high)


@given(
    unit_price=fees,
    size=st.integers(1, 10_000).map(Decimal),
    quantity=quantities,
)
def test_package_charges_whole_packages(unit_price, size, quantity):
    price = UsagePrice(model="package", unit_price=unit_price, package_size=size)
    (row,) = rate_usage(price, quantity, currency="USD").tiers or (None,)
    packages = -(-Fraction(quantity) // Fraction(size))  # ceil
    if quantity == 0:
        assert row is None
    else:
        assert row.quantity == packages
        assert (packages - 1) * size < quantity <= packages * size
    assert Fraction(usage_amount(price, quantity)) == packages * Fraction(unit_price)


# --- Proration ----------------------------------------------------------------------------

anchors = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2080, 1, 1), timezones=st.just(UTC)
)


@given(
    anchor=anchors,
    interval=st.sampled_from(sorted(INTERVAL_MONTHS)),
    index=st.integers(0, 60),
    seconds=st.integers(min_value=0),
    amount=st.integers(0, 12).flatmap(lambda places: decimals(10**6, places)),
    currency=CURRENCIES,
)
def test_splitting_a_period_moves_a_flat_fee_by_at_most_one_minor_unit(
    anchor, interval, index, seconds, amount, currency
):
    start, end = period_bounds(anchor, interval, index)
    split = start + timedelta(seconds=seconds % int((end - start).total_seconds() + 1))
    before = proration_fraction(start, end, start, split)
    after = proration_fraction(start, end, split, end)
    assert before + after == 1
    parts = [
        rate_flat_fee(amount, currency=currency, fraction=share).amount_minor
        for share in (before, after)
    ]
    whole = rate_flat_fee(amount, currency=currency).amount_minor
    assert abs(sum(parts) - whole) <= 1
    assert all(part >= 0 for part in parts)


# --- Whole periods ------------------------------------------------------------------------

optional_amounts = st.one_of(st.none(), fees)


@st.composite
def pricings(draw):
    prices = draw(
        st.lists(
            st.one_of(
                tiered_prices("graduated"),
                tiered_prices("volume"),
                st.builds(UsagePrice, model=st.just("per_unit"), unit_price=unit_prices),
                st.builds(
                    UsagePrice,
                    model=st.just("package"),
                    unit_price=fees,
                    package_size=st.integers(1, 1000).map(Decimal),
                ),
            ),
            max_size=3,
        )
    )
    return PeriodPricing(
        currency=draw(CURRENCIES),
        flat_fees=tuple((f"fee{i}", draw(fees)) for i in range(draw(st.integers(0, 2)))),
        usage=tuple((f"meter{i}", price) for i, price in enumerate(prices)),
        minimum_spend=draw(optional_amounts),
        commitment=draw(optional_amounts),
        percent_discount=draw(st.one_of(st.none(), decimals(100, 2))),
        fixed_discount=draw(optional_amounts),
        maximum=draw(optional_amounts),
    )


def usage_for(pricing):
    return st.fixed_dictionaries({key: quantities for key, _ in pricing.usage})


shares = st.fractions(min_value=0, max_value=1, max_denominator=10**7)


@given(data=st.data(), pricing=pricings(), fraction=shares, balance=st.integers(0, 10**8))
def test_a_period_total_is_the_sum_of_its_integer_lines_within_bounds(
    data, pricing, fraction, balance
):
    usage = data.draw(usage_for(pricing))
    starts = pricing.commitment is not None and data.draw(st.booleans())
    period = rate_period(
        pricing,
        usage,
        fraction=fraction,
        commitment_balance_minor=balance,
        starts_commitment_term=starts,
    )
    assert period.total_minor == sum(line.amount_minor for line in period.lines)
    assert all(isinstance(line.amount_minor, int) for line in period.lines)
    assert period.total_minor >= 0
    if pricing.maximum is not None:
        assert period.total_minor <= to_minor(pricing.maximum, pricing.currency)
    assert period.commitment_balance_minor >= 0

    by_kind = {}
    for line in period.lines:
        by_kind.setdefault(line.kind, []).append(line.amount_minor)
    for kind in (LineKind.COMMITMENT_DRAWDOWN, LineKind.DISCOUNT, LineKind.MAXIMUM_ADJUSTMENT):
        assert all(amount < 0 for amount in by_kind.get(kind, []))
    opening = sum(by_kind.get(LineKind.COMMITMENT_FEE, [])) if starts else balance
    drawn = -sum(by_kind.get(LineKind.COMMITMENT_DRAWDOWN, []))
    assert period.commitment_balance_minor == opening - drawn
    # Usage charges (with the true-up) bound the drawdown.
    usage_charges = sum(by_kind.get(LineKind.USAGE, [])) + sum(
        by_kind.get(LineKind.MINIMUM_TRUE_UP, [])
    )
    assert drawn <= usage_charges


@given(
    commitment=fees,
    usage=st.lists(decimals(10**5, 2), min_size=1, max_size=8),
    unit_price=unit_prices,
)
def test_commitment_balance_is_conserved_across_periods(commitment, usage, unit_price):
    pricing = PeriodPricing(
        currency="USD",
        usage=(("api", UsagePrice(model="per_unit", unit_price=unit_price)),),
        commitment=commitment,
    )
    balance, drawn, billed_usage, overage = 0, 0, 0, 0
    for number, quantity in enumerate(usage):
        period = rate_period(
            pricing,
            {"api": quantity},
            commitment_balance_minor=balance,
            starts_commitment_term=number == 0,
        )
        assert period.commitment_balance_minor >= 0
        kinds = {line.kind: line.amount_minor for line in period.lines}
        drawn -= kinds.get(LineKind.COMMITMENT_DRAWDOWN, 0)
        billed_usage += kinds[LineKind.USAGE]
        overage += period.total_minor - kinds.get(LineKind.COMMITMENT_FEE, 0)
        balance = period.commitment_balance_minor
    # Every prepaid unit is either drawn or still in the balance; the rest was overage.
    assert drawn + balance == to_minor(commitment, "USD")
    assert drawn + overage == billed_usage

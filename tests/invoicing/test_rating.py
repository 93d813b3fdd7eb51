"""The rating engine on hand-computed examples: every figure's arithmetic is in a comment."""

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from invoicing.periods import proration_fraction
from invoicing.rating import (
    LineKind,
    PeriodPricing,
    RatedLine,
    Tier,
    TierSlice,
    UsagePrice,
    rate_flat_fee,
    rate_period,
    rate_usage,
    usage_amount,
)

D = Decimal


def utc(*args):
    return datetime(*args, tzinfo=UTC)


# (0, 1000] at 0.10; (1000, 10000] at 0.08 plus 5.00 on entry; (10000, inf) at 0.05.
TIERS = (
    Tier(up_to=D(1000), unit_price=D("0.10")),
    Tier(up_to=D(10000), unit_price=D("0.08"), flat_fee=D("5.00")),
    Tier(up_to=None, unit_price=D("0.05")),
)
GRADUATED = UsagePrice(model="graduated", tiers=TIERS)
VOLUME = UsagePrice(model="volume", tiers=TIERS)


def usd(price, quantity):
    return rate_usage(price, D(quantity), currency="USD").amount_minor


# --- Graduated ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "minor"),
    [
        ("0", 0),  # nothing used: no tier, no flat fee
        ("1", 10),  # 1 * 0.10
        ("1000", 10000),  # exactly at the boundary: all in tier 1, 1000 * 0.10 = 100.00
        ("1001", 10508),  # 100.00 + 1 * 0.08 + 5.00 (tier 2 entered) = 105.08
        ("10000", 82500),  # 100.00 + 9000 * 0.08 + 5.00 = 825.00
        ("10001", 82505),  # 825.00 + 1 * 0.05 = 825.05
        ("10000.5", 82503),  # 825.00 + 0.5 * 0.05 = 825.025: half a cent, rounds up
        ("25000", 157500),  # 825.00 + 15000 * 0.05 = 1575.00
        ("999.99", 10000),  # 999.99 * 0.10 = 99.999 -> 100.00
    ],
)
def test_graduated(quantity, minor):
    assert usd(GRADUATED, quantity) == minor


def test_graduated_breakdown_one_unit_past_a_boundary():
    line = rate_usage(GRADUATED, D(1001), currency="USD", description="API calls", ref="pc_1")
    assert line == RatedLine(
        kind="usage",
        description="API calls",
        quantity=D(1001),
        unit_price=None,  # two prices apply
        amount_minor=10508,
        ref="pc_1",
        tiers=(
            TierSlice(1, D(0), D(1000), D(1000), D("0.10"), D(0), D("100.00")),
            TierSlice(2, D(1000), D(10000), D(1), D("0.08"), D("5.00"), D("5.08")),
        ),
    )


def test_graduated_zero_usage_has_no_slices():
    line = rate_usage(GRADUATED, D(0), currency="USD")
    assert (line.amount_minor, line.tiers) == (0, ())


# --- Volume -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "minor", "tier"),
    [
        ("0", 0, None),
        ("2.5", 25, 1),  # 2.5 * 0.10 = 0.25
        ("1000", 10000, 1),  # at the boundary: still tier 1, 1000 * 0.10
        ("1001", 8508, 2),  # all 1001 units at 0.08 = 80.08, + 5.00 = 85.08
        ("10000", 80500, 2),  # 10000 * 0.08 + 5.00 = 805.00
        ("10001", 50005, 3),  # 10001 * 0.05 = 500.05
        ("10000.1", 50001, 3),  # 10000.1 * 0.05 = 500.005 -> 500.01
    ],
)
def test_volume(quantity, minor, tier):
    line = rate_usage(VOLUME, D(quantity), currency="USD")
    assert line.amount_minor == minor
    assert [row.tier for row in line.tiers] == ([] if tier is None else [tier])


def test_volume_slice_carries_all_units_and_the_tier_bounds():
    line = rate_usage(VOLUME, D(1001), currency="USD")
    assert line.unit_price == D("0.08")
    row = TierSlice(2, D(1000), D(10000), D(1001), D("0.08"), D("5.00"), D("85.08"))
    assert line.tiers == (row,)


# --- Per unit -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit_price", "quantity", "minor"),
    [
        ("0.000001234567", "10000000", 1235),  # 12 places: 0.000001234567 * 10^7 = 12.34567
        ("0.10", "12.345", 123),  # fractional GB: 1.2345 -> 1.23
        ("0.005", "1", 1),  # exactly half a cent -> up
        ("0.015", "3", 5),  # 0.045: half-up gives 5 cents (banker's rounding would give 4)
        ("0.004999999999", "1", 0),  # just below half a cent
        ("0", "1000", 0),
    ],
)
def test_per_unit(unit_price, quantity, minor):
    price = UsagePrice(model="per_unit", unit_price=D(unit_price))
    assert usd(price, quantity) == minor


def test_per_unit_exact_amount_is_not_rounded():
    price = UsagePrice(model="per_unit", unit_price=D("0.000001234567"))
    assert usage_amount(price, D(10_000_000)) == D("12.34567")


@pytest.mark.parametrize(
    ("price", "quantity", "yen"),
    [
        (UsagePrice(model="per_unit", unit_price=D("0.5")), "1", 1),  # 0.5 yen -> 1 yen
        (UsagePrice(model="per_unit", unit_price=D("0.25")), "2", 1),  # 0.50 -> 1
        (UsagePrice(model="per_unit", unit_price=D("0.49")), "3", 1),  # 1.47 -> 1
        (UsagePrice(model="per_unit", unit_price=D("0.49")), "1", 0),  # 0.49 -> 0
        # Graduated in yen: 100 * 10 + 1 * 7.5 = 1007.5 -> 1008.
        (
            UsagePrice(
                model="graduated",
                tiers=(Tier(D(100), D(10)), Tier(None, D("7.5"))),
            ),
            "101",
            1008,
        ),
    ],
)
def test_zero_decimal_currency(price, quantity, yen):
    assert rate_usage(price, D(quantity), currency="JPY").amount_minor == yen


def test_three_decimal_currency():
    # 1.2345 KWD: half a fils -> 1.235 KWD = 1235 fils.
    price = UsagePrice(model="per_unit", unit_price=D("0.012345"))
    assert rate_usage(price, D(100), currency="KWD").amount_minor == 1235


# --- Included units -----------------------------------------------------------------------


def test_included_units_come_off_before_pricing():
    price = UsagePrice(model="per_unit", unit_price=D("0.02"), included_units=D(1000))
    line = rate_usage(price, D(1500), currency="USD")
    assert line.amount_minor == 1000  # (1500 - 1000) * 0.02 = 10.00
    assert (line.quantity, line.included_units) == (D(1500), D(1000))
    assert line.tiers[0].quantity == D(500)


def test_usage_within_the_allowance_is_free():
    price = UsagePrice(model="per_unit", unit_price=D("0.02"), included_units=D(1000))
    line = rate_usage(price, D(800), currency="USD")
    assert (line.amount_minor, line.included_units, line.tiers) == (0, D(800), ())


def test_included_units_shift_graduated_tiers():
    price = UsagePrice(model="graduated", tiers=TIERS, included_units=D(500))
    # 1600 - 500 = 1100 billable: 1000 * 0.10 + 100 * 0.08 + 5.00 = 113.00
    assert usd(price, 1600) == 11300


# --- Package ------------------------------------------------------------------------------

EMAILS = UsagePrice(model="package", unit_price=D("5.00"), package_size=D(1000))


@pytest.mark.parametrize(
    ("quantity", "minor"),
    [
        ("0", 0),  # no package
        ("1", 500),  # a started package is a whole package: 1 * 5.00
        ("1000", 500),  # exactly one package
        ("1000.001", 1000),  # just over: 2 packages = 10.00
        ("2500", 1500),  # ceil(2.5) = 3 packages = 15.00
    ],
)
def test_package_rounds_packages_up(quantity, minor):
    assert usd(EMAILS, quantity) == minor


def test_package_slice_counts_packages_after_included_units():
    price = UsagePrice(
        model="package", unit_price=D("5.00"), package_size=D(1000), included_units=D(100)
    )
    line = rate_usage(price, D(1100), currency="USD")  # 1000 billable: exactly 1 package
    assert line.amount_minor == 500
    assert line.tiers == (TierSlice(1, D(0), None, D(1), D("5.00"), D(0), D("5.00")),)


# --- Flat fees and proration --------------------------------------------------------------


def test_flat_fee_prorated_by_the_second_on_a_mid_period_plan_change():
    start, end = utc(2024, 1, 31, 10, 30), utc(2024, 2, 29, 10, 30)  # 29 days = 2,505,600 s
    change = utc(2024, 2, 15)  # 1,258,200 s in (14 days 13.5 h)
    old_share = proration_fraction(start, end, start, change)  # 1258200/2505600 = 233/464
    new_share = proration_fraction(start, end, change, end)  # 231/464
    assert (old_share, new_share) == (Fraction(233, 464), Fraction(231, 464))

    old = rate_flat_fee(D("99.00"), currency="USD", fraction=old_share, description="Starter")
    new = rate_flat_fee(D("199.00"), currency="USD", fraction=new_share, description="Growth")
    assert old.amount_minor == 4971  # 99 * 233/464 = 23067/464 = 49.7133... -> 49.71
    assert new.amount_minor == 9907  # 199 * 231/464 = 45969/464 = 99.0711... -> 99.07
    assert old.quantity == D("0.502155172414")  # 233/464 for display, 12 places
    assert (old.kind, old.unit_price) == ("flat_fee", D("99.00"))


def test_flat_fee_is_rounded_once_from_the_exact_fraction():
    assert rate_flat_fee(D(100), currency="USD", fraction=Fraction(1, 3)).amount_minor == 3333
    # 0.01 * 1/2 = half a cent -> 1 cent; 1000 yen * 1/3 = 333.33 -> 333.
    assert rate_flat_fee(D("0.01"), currency="USD", fraction=Fraction(1, 2)).amount_minor == 1
    assert rate_flat_fee(D(1000), currency="JPY", fraction=Fraction(1, 3)).amount_minor == 333
    full = rate_flat_fee(D("49.99"), currency="USD")
    assert (full.amount_minor, full.quantity) == (4999, D(1))


@pytest.mark.parametrize("fraction", [Fraction(3, 2), Fraction(-1, 2)])
def test_flat_fee_fraction_must_be_a_share(fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        rate_flat_fee(D(10), currency="USD", fraction=fraction)


def test_flat_fee_refuses_float_fraction():
    with pytest.raises(TypeError, match="Fraction"):
        rate_flat_fee(D(10), currency="USD", fraction=0.5)


# --- A whole period -----------------------------------------------------------------------

API = UsagePrice(model="per_unit", unit_price=D("0.10"))


def kinds(period):
    return [line.kind for line in period.lines]


def amounts(period):
    return [line.amount_minor for line in period.lines]


def test_prepaid_commitment_drawn_down_over_three_periods_then_overage():
    pricing = PeriodPricing(currency="USD", usage=(("api", API),), commitment=D("1000.00"))

    # Period 1 opens the term: 4000 * 0.10 = 400.00 drawn from 1000.00 -> 600.00 left.
    first = rate_period(pricing, {"api": D(4000)}, starts_commitment_term=True)
    assert kinds(first) == ["usage", "commitment_fee", "commitment_drawdown"]
    assert amounts(first) == [40000, 100000, -40000]
    assert (first.total_minor, first.commitment_balance_minor) == (100000, 60000)

    # Period 2: 3500 * 0.10 = 350.00, all covered -> 250.00 left, nothing to pay.
    second = rate_period(
        pricing, {"api": D(3500)}, commitment_balance_minor=first.commitment_balance_minor
    )
    assert amounts(second) == [35000, -35000]
    assert (second.total_minor, second.commitment_balance_minor) == (0, 25000)

    # Period 3: 400.00 of usage, 250.00 covered, 150.00 overage billed.
    third = rate_period(
        pricing, {"api": D(4000)}, commitment_balance_minor=second.commitment_balance_minor
    )
    assert amounts(third) == [40000, -25000]
    assert (third.total_minor, third.commitment_balance_minor) == (15000, 0)

    # Period 4: the balance is gone, usage is billed in full.
    fourth = rate_period(pricing, {"api": D(1000)}, commitment_balance_minor=0)
    assert kinds(fourth) == ["usage"]
    assert (fourth.total_minor, fourth.commitment_balance_minor) == (10000, 0)


def test_a_new_commitment_term_replaces_the_old_balance():
    pricing = PeriodPricing(currency="USD", usage=(("api", API),), commitment=D(500))
    # The 123.45 left over expires; the balance becomes 500.00, less 10.00 of usage.
    period = rate_period(
        pricing, {"api": D(100)}, commitment_balance_minor=12345, starts_commitment_term=True
    )
    assert amounts(period) == [1000, 50000, -1000]
    assert (period.total_minor, period.commitment_balance_minor) == (50000, 49000)


def test_minimum_true_up_tops_usage_up_to_the_minimum():
    pricing = PeriodPricing(
        currency="USD",
        flat_fees=(("Platform", D(10)),),
        usage=(("api", UsagePrice(model="per_unit", unit_price=D("0.02"))),),
        minimum_spend=D(50),
    )
    # Usage 1000 * 0.02 = 20.00 < 50.00: true-up 30.00; total 10 + 20 + 30 = 60.00.
    period = rate_period(pricing, {"api": D(1000)})
    assert kinds(period) == ["flat_fee", "usage", "minimum_true_up"]
    assert amounts(period) == [1000, 2000, 3000]
    assert period.total_minor == 6000

    # Half a period: flat 5.00, minimum 25.00, usage 20.00 -> true-up 5.00; total 30.00.
    half = rate_period(pricing, {"api": D(1000)}, fraction=Fraction(1, 2))
    assert amounts(half) == [500, 2000, 500]

    # Usage exactly at the minimum: 2500 * 0.02 = 50.00, no true-up line.
    assert kinds(rate_period(pricing, {"api": D(2500)})) == ["flat_fee", "usage"]

    # Usage above the minimum: no true-up line. 3000 * 0.02 = 60.00.
    above = rate_period(pricing, {"api": D(3000)})
    assert kinds(above) == ["flat_fee", "usage"]
    assert above.total_minor == 7000


def test_missing_usage_key_is_zero_usage_and_the_minimum_still_applies():
    pricing = PeriodPricing(currency="USD", usage=(("api", API),), minimum_spend=D(25))
    period = rate_period(pricing, {"other_meter": D(10**6)})  # unpriced keys are ignored
    assert kinds(period) == ["usage", "minimum_true_up"]
    assert amounts(period) == [0, 2500]


def test_minimum_true_up_is_drawn_from_the_commitment():
    pricing = PeriodPricing(
        currency="USD", usage=(("api", API),), minimum_spend=D(100), commitment=D(300)
    )
    # usage 10.00 + true-up 90.00 = 100.00 of usage charges, all from the 300.00 balance.
    period = rate_period(pricing, {"api": D(100)}, commitment_balance_minor=30000)
    assert amounts(period) == [1000, 9000, -10000]
    assert (period.total_minor, period.commitment_balance_minor) == (0, 20000)


def test_maximum_caps_the_invoice():
    pricing = PeriodPricing(
        currency="USD",
        flat_fees=(("Platform", D(100)),),
        usage=(("api", API),),
        maximum=D(450),
    )
    # 100.00 + 5000 * 0.10 = 600.00 > 450.00: adjustment -150.00.
    period = rate_period(pricing, {"api": D(5000)})
    assert kinds(period) == ["flat_fee", "usage", "maximum_adjustment"]
    assert amounts(period) == [10000, 50000, -15000]
    assert period.total_minor == 45000
    # Below the cap: no adjustment.
    assert kinds(rate_period(pricing, {"api": D(100)})) == ["flat_fee", "usage"]


def test_maximum_edges_to_the_minor_unit():
    pricing = PeriodPricing(
        currency="USD",
        flat_fees=(("Platform", D(100)),),
        usage=(("api", UsagePrice(model="per_unit", unit_price=D("0.01"))),),
        maximum=D(100),
    )
    # Exactly at the maximum: 100.00, nothing to take off.
    assert kinds(rate_period(pricing, {"api": D(0)})) == ["flat_fee", "usage"]
    # One cent over: 100.00 + 1 * 0.01 = 100.01 -> -0.01.
    over = rate_period(pricing, {"api": D(1)})
    assert amounts(over) == [10000, 1, -1]
    assert over.total_minor == 10000


def test_percent_then_fixed_discount():
    pricing = PeriodPricing(
        currency="USD",
        flat_fees=(("Platform", D(100)),),
        usage=(("api", API),),
        percent_discount=D(10),
        fixed_discount=D(20),
    )
    # 100.00 + 333 * 0.10 = 133.30; 10 % = 13.33 -> 119.97; minus 20.00 -> 99.97.
    period = rate_period(pricing, {"api": D(333)})
    assert kinds(period) == ["flat_fee", "usage", "discount", "discount"]
    assert amounts(period) == [10000, 3330, -1333, -2000]
    assert period.total_minor == 9997
    assert period.lines[2].description == "Discount 10 %"


def test_percent_discount_rounds_half_up():
    pricing = PeriodPricing(
        currency="USD", flat_fees=(("Platform", D("13.35")),), percent_discount=D(10)
    )
    # 10 % of 1335 cents = 133.5 cents -> 134.
    assert amounts(rate_period(pricing, {})) == [1335, -134]


def test_fixed_discount_is_prorated_and_never_goes_below_zero():
    pricing = PeriodPricing(currency="USD", flat_fees=(("Platform", D(100)),), fixed_discount=D(20))
    # Half a period: flat 50.00, discount 10.00.
    assert amounts(rate_period(pricing, {}, fraction=Fraction(1, 2))) == [5000, -1000]
    small = PeriodPricing(currency="USD", flat_fees=(("Platform", D(10)),), fixed_discount=D(25))
    period = rate_period(small, {})
    assert amounts(period) == [1000, -1000]  # 25.00 off a 10.00 subtotal: only 10.00
    assert period.total_minor == 0


def test_every_step_in_order():
    pricing = PeriodPricing(
        currency="USD",
        flat_fees=(("Platform", D(200)), ("Support", D(50))),
        usage=(("api", API), ("storage", UsagePrice(model="per_unit", unit_price=D("0.023")))),
        minimum_spend=D(500),
        commitment=D(400),
        percent_discount=D("12.5"),
        fixed_discount=D(30),
        maximum=D(600),
    )
    period = rate_period(
        pricing, {"api": D(1000), "storage": D("123.45")}, starts_commitment_term=True
    )
    # flat 200.00 + 50.00; api 1000 * 0.10 = 100.00; storage 123.45 * 0.023 = 2.83935 -> 2.84
    # usage 102.84 < 500.00: true-up 397.16; commitment fee 400.00, drawdown -400.00
    # (usage charges 500.00 > balance 400.00: 100.00 overage)
    # subtotal 250 + 102.84 + 397.16 + 400 - 400 = 750.00; 12.5 % = 93.75 -> 656.25
    # fixed 30.00 -> 626.25; above the 600.00 maximum: -26.25.
    assert [(line.kind, line.amount_minor) for line in period.lines] == [
        ("flat_fee", 20000),
        ("flat_fee", 5000),
        ("usage", 10000),
        ("usage", 284),
        ("minimum_true_up", 39716),
        ("commitment_fee", 40000),
        ("commitment_drawdown", -40000),
        ("discount", -9375),
        ("discount", -3000),
        ("maximum_adjustment", -2625),
    ]
    assert period.total_minor == 60000 == sum(amounts(period))
    assert period.commitment_balance_minor == 0
    assert [line.ref for line in period.lines[:4]] == ["Platform", "Support", "api", "storage"]


def test_line_kinds_are_the_documented_strings():
    assert {kind.value for kind in LineKind} == {
        "flat_fee",
        "usage",
        "minimum_true_up",
        "commitment_fee",
        "commitment_drawdown",
        "discount",
        "maximum_adjustment",
    }


# --- Validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: UsagePrice(model="tiered"), "unknown price model"),
        (lambda: UsagePrice(model="graduated"), "needs at least one tier"),
        (lambda: UsagePrice(model="volume", tiers=()), "needs at least one tier"),
        (
            lambda: UsagePrice(model="graduated", tiers=(Tier(D(10), D(1)),)),
            "last tier must be unbounded",
        ),
        (
            lambda: UsagePrice(model="graduated", tiers=(Tier(None, D(1)), Tier(None, D(2)))),
            "only the last tier may be unbounded",
        ),
        (
            lambda: UsagePrice(
                model="graduated",
                tiers=(Tier(D(10), D(1)), Tier(D(10), D(1)), Tier(None, D(1))),
            ),
            "strictly increasing",
        ),
        (
            lambda: UsagePrice(
                model="volume", tiers=(Tier(D(100), D(1)), Tier(D(10), D(1)), Tier(None, D(1)))
            ),
            "strictly increasing",
        ),
        (lambda: Tier(D(0), D(1)), "up_to must be positive"),
        (lambda: Tier(D(10), D(-1)), "unit_price must not be negative"),
        (lambda: Tier(D(10), D(1), flat_fee=D("-0.01")), "flat_fee must not be negative"),
        (lambda: Tier(D(10), D("0.0000000000001")), "more than 12 decimal places"),
        (
            lambda: UsagePrice(model="per_unit", unit_price=D("0.0000000000001")),
            "more than 12 decimal places",
        ),
        (lambda: UsagePrice(model="per_unit", unit_price=D(-1)), "must not be negative"),
        (
            lambda: UsagePrice(model="per_unit", included_units=D(-1)),
            "included_units must not be negative",
        ),
        (lambda: UsagePrice(model="package", unit_price=D(5)), "positive package_size"),
        (
            lambda: UsagePrice(model="package", unit_price=D(5), package_size=D(0)),
            "positive package_size",
        ),
        (
            lambda: UsagePrice(model="per_unit", unit_price=D(1), package_size=D(10)),
            "package_size only applies",
        ),
        (
            lambda: UsagePrice(model="per_unit", tiers=(Tier(None, D(1)),)),
            "has no tiers",
        ),
        (
            lambda: UsagePrice(model="graduated", unit_price=D(1), tiers=(Tier(None, D(1)),)),
            "unit_price must be 0",
        ),
        (lambda: PeriodPricing(currency="usd"), "unknown currency"),
        (
            lambda: PeriodPricing(currency="USD", usage=(("api", API), ("api", API))),
            "priced twice",
        ),
        (lambda: PeriodPricing(currency="USD", percent_discount=D(101)), "at most 100"),
        (lambda: PeriodPricing(currency="USD", maximum=D(-1)), "maximum must not be negative"),
        (
            lambda: PeriodPricing(currency="USD", flat_fees=(("Platform", D(-5)),)),
            "must not be negative",
        ),
        (lambda: rate_usage(API, D(-1), currency="USD"), "quantity must not be negative"),
        (lambda: rate_usage(API, D(1), currency="XYZ"), "unknown currency"),
        (
            lambda: rate_period(PeriodPricing(currency="USD"), {}, starts_commitment_term=True),
            "needs a pricing with a commitment",
        ),
        (
            lambda: rate_period(PeriodPricing(currency="USD"), {}, commitment_balance_minor=-1),
            "must not be negative",
        ),
    ],
)
def test_invalid_input_is_refused_with_a_specific_message(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: UsagePrice(model="per_unit", unit_price=0.1),
        lambda: Tier(up_to=10.0, unit_price=D(1)),
        lambda: rate_usage(API, 1.5, currency="USD"),
        lambda: rate_usage(API, "1.5", currency="USD"),
        lambda: PeriodPricing(currency="USD", flat_fees=(("Platform", 9.99),)),
        lambda: rate_period(PeriodPricing(currency="USD"), {}, commitment_balance_minor=1.0),
    ],
)
def test_floats_and_text_are_refused(make):
    with pytest.raises(TypeError):
        make()


def test_trailing_zeros_do_not_count_as_decimal_places():
    price = UsagePrice(model="per_unit", unit_price=D("0.100000000000000000"))
    assert usd(price, 10) == 100


def test_int_amounts_are_taken_exactly():
    price = UsagePrice(model="graduated", tiers=(Tier(10, 1), Tier(None, D("0.5"))))
    assert price.tiers[0].up_to == D(10) and isinstance(price.tiers[0].up_to, Decimal)
    assert rate_usage(price, 12, currency="USD").amount_minor == 1100  # 10 * 1 + 2 * 0.5

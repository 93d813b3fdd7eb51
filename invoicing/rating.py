"""The rating engine: prices and quantities in, integer invoice lines out.

Pure functions over frozen dataclasses: no database, no Django models, no clock. Amounts
are ``Decimal`` (exact ``Fraction`` for prorations) computed in a Decimal context that
refuses to round (:func:`invoicing.currency.exact_context`); each line is rounded **once**,
half-up, to the currency's minor unit, and everything after that is integer arithmetic on
minor units, so an invoice total is always exactly the sum of its lines.

Usage models (``billable = max(0, quantity - included_units)``):

``per_unit``
    billable * unit_price.
``graduated``
    tier *i* covers ``(previous up_to, up_to]``; the units in it * its unit price, plus its
    flat fee once the billable quantity reaches into it (exceeds the previous bound).
``volume``
    all billable units at the unit price of the one tier the billable quantity falls in (a
    quantity exactly at a tier's ``up_to`` is in that tier), plus that tier's flat fee.
``package``
    ``ceil(billable / package_size)`` packages * unit_price (the price of one package).

Zero billable units cost nothing in every model: no flat fee either.

:func:`rate_period` builds one period's lines in this order:

1. flat fees, each prorated by ``fraction`` (the share of the period the plan was active);
2. usage lines, one per usage price, in the pricing's order (a missing key is zero usage);
3. minimum true-up: if the usage lines add up to less than the prorated minimum spend, a
   line for the difference;
4. commitment: when ``starts_commitment_term``, a ``commitment_fee`` line for the full
   commitment (never prorated), and the balance *becomes* the commitment (an unused balance
   from the previous term expires); then a negative ``commitment_drawdown`` line of
   ``min(usage charges incl. true-up, balance)``. What the balance does not cover stays on
   the invoice as overage;
5. percent discount on the subtotal so far (rounded once, half-up), then the fixed discount
   (prorated like the flat fees), which never takes the subtotal below zero;
6. maximum: if the total exceeds the maximum (a spend cap, never prorated), a negative
   ``maximum_adjustment`` line brings it down to the maximum.

Steps 3-6 work on the already-rounded integer amounts of the lines before them.
Adjustment lines (3-6) that would be zero are left out; flat fee and usage lines are always
present, even at zero, so the invoice shows every price that applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext
from enum import StrEnum
from fractions import Fraction

from invoicing.currency import (
    ensure_decimal,
    exact_context,
    minor_unit_exponent,
    round_half_up,
    to_minor,
)

#: Unit prices (and flat fees) keep at most this many decimal places (DESIGN.md).
PRICE_DECIMAL_PLACES = 12

ZERO = Decimal(0)
ONE = Decimal(1)


class PriceModel(StrEnum):
    """How a usage price turns a quantity into an amount (see the module docstring)."""

    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"


class LineKind(StrEnum):
    """What an invoice line is; a ``str``, so it compares and serializes as its value."""

    FLAT_FEE = "flat_fee"
    USAGE = "usage"
    MINIMUM_TRUE_UP = "minimum_true_up"
    COMMITMENT_FEE = "commitment_fee"
    COMMITMENT_DRAWDOWN = "commitment_drawdown"
    DISCOUNT = "discount"
    MAXIMUM_ADJUSTMENT = "maximum_adjustment"


_PRICE_MODELS = frozenset(model.value for model in PriceModel)


# --- Validation helpers ------------------------------------------------------------------


def _decimal_field(instance: object, name: str) -> Decimal:
    """Read a dataclass field as a finite Decimal, storing the exact conversion of an int."""
    value = ensure_decimal(getattr(instance, name), name=name)
    object.__setattr__(instance, name, value)  # frozen: the one sanctioned write
    return value


def _non_negative(value: Decimal, name: str) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def _at_most_12_places(value: Decimal, name: str) -> None:
    # Exact test on the value, so 0.100000000000000 (trailing zeros) still passes.
    if (Fraction(value) * 10**PRICE_DECIMAL_PLACES).denominator != 1:
        raise ValueError(f"{name} has more than {PRICE_DECIMAL_PLACES} decimal places: {value}")


def _fraction(value: object, name: str) -> Fraction:
    if isinstance(value, float | bool) or not isinstance(value, Fraction | int):
        raise TypeError(f"{name} must be a Fraction, not {type(value).__name__}")
    result = Fraction(value)
    if not 0 <= result <= 1:
        raise ValueError(f"{name} must be between 0 and 1, got {result}")
    return result


# --- Prices ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    """One tier of a graduated or volume price."""

    up_to: Decimal | None  # inclusive upper bound in units; None = unbounded (last tier only)
    unit_price: Decimal  # up to 12 decimal places
    flat_fee: Decimal = ZERO  # charged once when the quantity reaches into this tier

    def __post_init__(self) -> None:
        if self.up_to is not None:
            up_to = _decimal_field(self, "up_to")
            if up_to <= 0:
                raise ValueError(f"tier up_to must be positive, got {up_to}")
        for name in ("unit_price", "flat_fee"):
            value = _decimal_field(self, name)
            _non_negative(value, f"tier {name}")
            _at_most_12_places(value, f"tier {name}")


@dataclass(frozen=True)
class UsagePrice:
    """How one meter's quantity is priced. Invalid combinations raise ``ValueError``."""

    model: str  # a PriceModel value
    unit_price: Decimal = ZERO  # per_unit: per unit; package: per package
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    included_units: Decimal = ZERO  # free allowance, taken off the quantity before pricing

    def __post_init__(self) -> None:
        for name in ("unit_price", "included_units"):
            _decimal_field(self, name)
        if self.package_size is not None:
            _decimal_field(self, "package_size")
        if not isinstance(self.tiers, tuple):
            object.__setattr__(self, "tiers", tuple(self.tiers))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` saying what is wrong with this price, if anything."""
        if self.model not in _PRICE_MODELS:
            raise ValueError(
                f"unknown price model {self.model!r} (one of: {', '.join(sorted(_PRICE_MODELS))})"
            )
        _non_negative(self.unit_price, "unit_price")
        _at_most_12_places(self.unit_price, "unit_price")
        _non_negative(self.included_units, "included_units")

        tiered = self.model in (PriceModel.GRADUATED, PriceModel.VOLUME)
        if tiered:
            self._validate_tiers()
            if self.unit_price != 0:
                raise ValueError(
                    f"a {self.model} price takes its unit prices from its tiers; "
                    f"unit_price must be 0, got {self.unit_price}"
                )
        elif self.tiers:
            raise ValueError(f"a {self.model} price has no tiers")

        if self.model == PriceModel.PACKAGE:
            if self.package_size is None or self.package_size <= 0:
                raise ValueError(
                    f"a package price needs a positive package_size, got {self.package_size}"
                )
        elif self.package_size is not None:
            raise ValueError(f"package_size only applies to package prices, not {self.model}")

    def _validate_tiers(self) -> None:
        if not self.tiers:
            raise ValueError(f"a {self.model} price needs at least one tier")
        for position, tier in enumerate(self.tiers, start=1):
            if not isinstance(tier, Tier):
                raise TypeError(f"tier {position} must be a Tier, not {type(tier).__name__}")
        *bounded, last = self.tiers
        if last.up_to is not None:
            raise ValueError(
                f"the last tier must be unbounded (up_to=None), got up_to={last.up_to}"
            )
        previous = ZERO
        for position, tier in enumerate(bounded, start=1):
            if tier.up_to is None:
                raise ValueError(
                    f"only the last tier may be unbounded; tier {position} "
                    f"of {len(self.tiers)} has up_to=None"
                )
            if tier.up_to <= previous:
                raise ValueError(
                    f"tier bounds must be strictly increasing: tier {position} "
                    f"up_to={tier.up_to} is not above {previous}"
                )
            previous = tier.up_to


# --- Results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TierSlice:
    """One row of a line's breakdown; ``amount`` is exact and unrounded.

    Graduated: one slice per tier reached, ``quantity`` = units in that tier.
    Volume: the one tier that applies, ``quantity`` = all billable units.
    Per unit: one slice of all billable units. Package: one slice whose ``quantity`` is
    the number of packages and ``unit_price`` the price of one package.
    """

    tier: int  # 1-based
    first_unit: Decimal  # exclusive lower bound of the tier, e.g. 0, 1000
    up_to: Decimal | None
    quantity: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal


@dataclass(frozen=True)
class RatedLine:
    """One invoice line, its amount already rounded to integer minor units.

    For usage lines ``quantity`` is the metered quantity and ``included_units`` the part
    of it the allowance covered, so ``quantity - included_units`` is what was priced.
    For prorated flat fees ``quantity`` is the share of the period (for display only,
    rounded to 12 places; the amount comes from the exact fraction).
    """

    kind: str  # a LineKind value
    description: str
    quantity: Decimal
    unit_price: Decimal | None
    amount_minor: int  # negative for drawdown, discount and maximum adjustment
    ref: str | None = None  # the caller's reference (e.g. a price component id)
    tiers: tuple[TierSlice, ...] = ()
    included_units: Decimal = ZERO


_OPTIONAL_AMOUNTS = ("minimum_spend", "commitment", "percent_discount", "fixed_discount", "maximum")


@dataclass(frozen=True)
class PeriodPricing:
    """Everything that prices one subscription period. See the module docstring for order."""

    currency: str
    flat_fees: tuple[tuple[str, Decimal], ...] = ()  # (ref/description, amount per full period)
    usage: tuple[tuple[str, UsagePrice], ...] = ()  # (meter key, price)
    minimum_spend: Decimal | None = None  # per full period, on usage charges; prorated
    commitment: Decimal | None = None  # prepaid amount per commitment term
    percent_discount: Decimal | None = None  # Decimal("10") = 10 % off
    fixed_discount: Decimal | None = None  # per full period; prorated; never below zero
    maximum: Decimal | None = None  # the invoice never exceeds it; not prorated

    def __post_init__(self) -> None:
        minor_unit_exponent(self.currency)
        flat_fees: list[tuple[str, Decimal]] = []
        for ref, amount in self.flat_fees:
            value = ensure_decimal(amount, name=f"flat fee {ref!r}")
            _non_negative(value, f"flat fee {ref!r}")
            flat_fees.append((ref, value))
        object.__setattr__(self, "flat_fees", tuple(flat_fees))
        object.__setattr__(self, "usage", tuple(self.usage))
        seen: set[str] = set()
        for key, price in self.usage:
            if not isinstance(price, UsagePrice):
                raise TypeError(f"usage {key!r} needs a UsagePrice, not {type(price).__name__}")
            if key in seen:
                raise ValueError(f"usage key {key!r} is priced twice")
            seen.add(key)
        for name in _OPTIONAL_AMOUNTS:
            if getattr(self, name) is not None:
                _non_negative(_decimal_field(self, name), name)
        if self.percent_discount is not None and self.percent_discount > 100:
            raise ValueError(f"percent_discount must be at most 100, got {self.percent_discount}")


@dataclass(frozen=True)
class RatedPeriod:
    """A rated period: ``total_minor == sum(line.amount_minor for line in lines) >= 0``."""

    lines: tuple[RatedLine, ...]
    total_minor: int
    commitment_balance_minor: int  # balance after this period


# --- Usage -------------------------------------------------------------------------------


def _slices(price: UsagePrice, billable: Decimal) -> tuple[tuple[TierSlice, ...], Decimal | None]:
    """The exact breakdown of ``billable`` units and the line's unit price (None if mixed)."""
    if billable == 0:
        flat_rate = price.model in (PriceModel.PER_UNIT, PriceModel.PACKAGE)
        return (), (price.unit_price if flat_rate else None)

    if price.model == PriceModel.PER_UNIT:
        amount = billable * price.unit_price
        row = TierSlice(1, ZERO, None, billable, price.unit_price, ZERO, amount)
        return (row,), price.unit_price

    if price.model == PriceModel.PACKAGE:
        assert price.package_size is not None  # validated
        # Integer division and remainder are exact in Decimal; a remainder starts a package.
        whole, remainder = divmod(billable, price.package_size)
        packages = whole + (1 if remainder else 0)
        amount = packages * price.unit_price
        row = TierSlice(1, ZERO, None, packages, price.unit_price, ZERO, amount)
        return (row,), price.unit_price

    if price.model == PriceModel.VOLUME:
        lower = ZERO
        for position, tier in enumerate(price.tiers, start=1):
            if tier.up_to is None or billable <= tier.up_to:
                amount = billable * tier.unit_price + tier.flat_fee
                row = TierSlice(
                    position, lower, tier.up_to, billable, tier.unit_price, tier.flat_fee, amount
                )
                return (row,), tier.unit_price
            lower = tier.up_to
        raise AssertionError("validated tiers end unbounded")  # pragma: no cover

    # Graduated: walk the tiers until the quantity is used up.
    rows = []
    lower = ZERO
    for position, tier in enumerate(price.tiers, start=1):
        if billable <= lower:
            break
        top = billable if tier.up_to is None else min(billable, tier.up_to)
        units = top - lower
        amount = units * tier.unit_price + tier.flat_fee
        rows.append(
            TierSlice(position, lower, tier.up_to, units, tier.unit_price, tier.flat_fee, amount)
        )
        if tier.up_to is None:
            break
        lower = tier.up_to
    return tuple(rows), None


def usage_amount(price: UsagePrice, quantity: Decimal) -> Decimal:
    """The exact, unrounded charge for ``quantity`` units (the sum of the line's slices)."""
    return _rate_exact(price, quantity)[3]


# Units beyond this are not a usage allowance anyone can reach (quantity columns hold 26
# integer digits); a price that never charges this much leaves a money cap unbounded.
_UNITS_CEILING = Decimal("1e24")
_UNITS_PLACES = 12


def units_within(price: UsagePrice, amount: Decimal) -> Decimal | None:
    """The most units whose exact charge stays within ``amount``, up to where the charge
    first exceeds it (a volume price can fall again past a tier bound; a money cap stops at
    the first crossing). ``None`` when no quantity ever costs more than ``amount``.

    The charge is non-decreasing inside each tier, so the first tier whose top costs more
    than ``amount`` holds the answer, found by bisection to 12 places and then rounded to
    the fewest places that still fit (5000, not 4999.999999999999)."""
    amount = ensure_decimal(amount, name="amount")
    _non_negative(amount, "amount")

    def fits(quantity: Decimal) -> bool:
        return _rate_exact(price, quantity)[3] <= amount

    # Midpoints round (to 12 places); each charge is computed exactly by _rate_exact.
    with localcontext(prec=60):
        bounds = [price.included_units + t.up_to for t in price.tiers if t.up_to is not None]
        lower = ZERO
        for upper in [*bounds, _UNITS_CEILING]:
            if not fits(upper):
                break
            lower = upper
        else:
            return None
        step = Decimal(1).scaleb(-_UNITS_PLACES)
        while upper - lower > step:
            middle = ((lower + upper) / 2).quantize(step)
            if fits(middle):
                lower = middle
            else:
                upper = middle
        for places in range(_UNITS_PLACES + 1):
            shorter = lower.quantize(Decimal(1).scaleb(-places), rounding=ROUND_CEILING)
            if shorter < upper and fits(shorter):
                return shorter
        return lower


def _rate_exact(
    price: UsagePrice, quantity: Decimal
) -> tuple[Decimal, tuple[TierSlice, ...], Decimal | None, Decimal]:
    """``(included units used, slices, line unit price, exact amount)``."""
    if not isinstance(price, UsagePrice):
        raise TypeError(f"price must be a UsagePrice, not {type(price).__name__}")
    quantity = ensure_decimal(quantity, name="quantity")
    _non_negative(quantity, "quantity")
    with localcontext(exact_context()):
        included = min(quantity, price.included_units)
        rows, unit_price = _slices(price, quantity - included)
        exact = sum((row.amount for row in rows), ZERO)
    return included, rows, unit_price, exact


def rate_usage(
    price: UsagePrice,
    quantity: Decimal,
    *,
    currency: str,
    description: str = "",
    ref: str | None = None,
) -> RatedLine:
    """Price ``quantity`` units with ``price``: one usage line, rounded once."""
    minor_unit_exponent(currency)
    included, rows, unit_price, exact = _rate_exact(price, quantity)
    return RatedLine(
        kind=LineKind.USAGE,
        description=description,
        quantity=ensure_decimal(quantity, name="quantity"),
        unit_price=unit_price,
        amount_minor=to_minor(exact, currency),
        ref=ref,
        tiers=rows,
        included_units=included,
    )


# --- Flat fees ---------------------------------------------------------------------------


def _display_fraction(fraction: Fraction) -> Decimal:
    """A proration share as a Decimal for display: exact when it fits 12 places."""
    ctx = exact_context()
    rounded = Decimal(round_half_up(fraction * 10**PRICE_DECIMAL_PLACES))
    return rounded.scaleb(-PRICE_DECIMAL_PLACES, context=ctx).normalize(ctx)


def rate_flat_fee(
    amount: Decimal,
    *,
    currency: str,
    fraction: Fraction = Fraction(1),
    description: str = "",
    ref: str | None = None,
) -> RatedLine:
    """A recurring fee for ``fraction`` of a period: ``amount * fraction``, rounded once.

    The product stays an exact ``Fraction`` until the rounding, so 100.00 over a third of
    a period is 33.33 and not the rounding of an already-rounded 33.333...
    """
    amount = ensure_decimal(amount, name="amount")
    _non_negative(amount, "flat fee amount")
    share = _fraction(fraction, "fraction")
    return RatedLine(
        kind=LineKind.FLAT_FEE,
        description=description,
        quantity=_display_fraction(share),
        unit_price=amount,
        amount_minor=to_minor(Fraction(amount) * share, currency),
        ref=ref,
    )


# --- A whole period ----------------------------------------------------------------------


def _adjustment(kind: LineKind, description: str, amount_minor: int) -> RatedLine:
    return RatedLine(
        kind=kind, description=description, quantity=ONE, unit_price=None, amount_minor=amount_minor
    )


def rate_period(
    pricing: PeriodPricing,
    usage: Mapping[str, Decimal],
    *,
    fraction: Fraction = Fraction(1),
    commitment_balance_minor: int = 0,
    starts_commitment_term: bool = False,
) -> RatedPeriod:
    """Rate one period: its lines, total and the commitment balance carried forward.

    ``usage`` maps meter keys to quantities; keys the pricing does not price are ignored
    (the plan decides what is billable). ``fraction`` prorates the flat fees, the minimum
    spend and the fixed discount. ``commitment_balance_minor`` is the prepaid balance left
    before this period; it is drawn down even if the pricing no longer has a commitment
    (money already paid stays usable until a new term replaces it).
    """
    if not isinstance(pricing, PeriodPricing):
        raise TypeError(f"pricing must be a PeriodPricing, not {type(pricing).__name__}")
    share = _fraction(fraction, "fraction")
    if isinstance(commitment_balance_minor, bool) or not isinstance(commitment_balance_minor, int):
        raise TypeError("commitment_balance_minor must be an int of minor units")
    if commitment_balance_minor < 0:
        raise ValueError(
            f"commitment_balance_minor must not be negative, got {commitment_balance_minor}"
        )
    if starts_commitment_term and pricing.commitment is None:
        raise ValueError("starts_commitment_term needs a pricing with a commitment")
    currency = pricing.currency
    lines: list[RatedLine] = []

    # 1. Flat fees, prorated.
    for ref, amount in pricing.flat_fees:
        lines.append(
            rate_flat_fee(amount, currency=currency, fraction=share, description=ref, ref=ref)
        )

    # 2. Usage: usage prices are never prorated; the quantity already reflects the time.
    usage_lines = [
        rate_usage(price, usage.get(key, ZERO), currency=currency, description=key, ref=key)
        for key, price in pricing.usage
    ]
    lines.extend(usage_lines)
    usage_charges = sum(line.amount_minor for line in usage_lines)

    # 3. Minimum spend on usage, prorated like the flat fees.
    if pricing.minimum_spend is not None:
        minimum_minor = to_minor(Fraction(pricing.minimum_spend) * share, currency)
        if usage_charges < minimum_minor:
            true_up = minimum_minor - usage_charges
            lines.append(_adjustment(LineKind.MINIMUM_TRUE_UP, "Minimum spend true-up", true_up))
            usage_charges += true_up

    # 4. Prepaid commitment: a new term resets the balance; usage draws it down.
    balance = commitment_balance_minor
    if starts_commitment_term:
        assert pricing.commitment is not None  # checked above
        fee = to_minor(pricing.commitment, currency)
        lines.append(
            RatedLine(
                kind=LineKind.COMMITMENT_FEE,
                description="Prepaid commitment",
                quantity=ONE,
                unit_price=pricing.commitment,
                amount_minor=fee,
            )
        )
        balance = fee
    drawdown = min(usage_charges, balance)
    if drawdown > 0:
        lines.append(
            _adjustment(LineKind.COMMITMENT_DRAWDOWN, "Drawn from prepaid commitment", -drawdown)
        )
        balance -= drawdown

    # 5. Discounts on the subtotal so far: percent first, then fixed.
    subtotal = sum(line.amount_minor for line in lines)
    if pricing.percent_discount is not None and subtotal > 0:
        # The subtotal is already in minor units: round the share of it to a whole one.
        percent_off = round_half_up(Fraction(subtotal) * Fraction(pricing.percent_discount) / 100)
        if percent_off:
            label = f"Discount {pricing.percent_discount.normalize(exact_context()):f} %"
            lines.append(_adjustment(LineKind.DISCOUNT, label, -percent_off))
            subtotal -= percent_off
    if pricing.fixed_discount is not None and subtotal > 0:
        fixed_off = min(subtotal, to_minor(Fraction(pricing.fixed_discount) * share, currency))
        if fixed_off:
            lines.append(_adjustment(LineKind.DISCOUNT, "Fixed discount", -fixed_off))
            subtotal -= fixed_off

    # 6. Spend cap.
    if pricing.maximum is not None:
        maximum_minor = to_minor(pricing.maximum, currency)
        if subtotal > maximum_minor:
            lines.append(
                _adjustment(
                    LineKind.MAXIMUM_ADJUSTMENT,
                    "Maximum spend adjustment",
                    maximum_minor - subtotal,
                )
            )
            subtotal = maximum_minor

    total = sum(line.amount_minor for line in lines)
    if total != subtotal or total < 0 or balance < 0:  # pragma: no cover - a bug, not input
        raise AssertionError(f"rating invariant broken: total={total} balance={balance}")
    return RatedPeriod(lines=tuple(lines), total_minor=total, commitment_balance_minor=balance)

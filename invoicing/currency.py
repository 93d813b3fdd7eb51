"""Currencies and money rounding: the one place an amount becomes integer minor units.

Rules (see DESIGN.md, "Rules of the domain"):

* Money is ``Decimal`` (or an exact ``Fraction`` for prorations), never ``float``; a float
  argument is a ``TypeError`` so a binary approximation can never reach an invoice.
* An amount is rounded **once**, half-up (ties away from zero, negatives included), to the
  currency's ISO 4217 minor unit, and from then on handled as an ``int`` of minor units.
* Exponents are ISO 4217's. Payment providers' own quirks (Stripe wants HUF and TWD as
  whole units in some places) belong to the code that talks to them, not here.
"""

from __future__ import annotations

from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from fractions import Fraction

from accounts.currencies import CURRENCIES

#: Precision for money arithmetic: far beyond any real amount (12 decimal places on a
#: quantity below 10^18 still leaves room), so nothing is rounded except on purpose.
MONEY_PRECISION = 60


def exact_context() -> Context:
    """A Decimal context that refuses to round: any inexact result raises ``decimal.Inexact``.

    Used where an amount must stay exact until the single, deliberate rounding step.
    """
    return Context(
        prec=MONEY_PRECISION,
        rounding=ROUND_HALF_UP,
        traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
    )


def _rounding_context() -> Context:
    # Rounding is wanted here, but only by quantize: an amount whose result would not fit
    # the precision raises InvalidOperation instead of being truncated.
    return Context(
        prec=MONEY_PRECISION,
        rounding=ROUND_HALF_UP,
        traps=[InvalidOperation, DivisionByZero, Overflow],
    )


def minor_unit_exponent(code: str) -> int:
    """The number of decimal places of ``code``'s minor unit (USD 2, JPY 0, KWD 3).

    Only upper-case ISO 4217 codes from the table are accepted: a lower-case code is more
    likely a bug upstream than a currency, so it is refused rather than silently fixed.
    """
    if not isinstance(code, str):
        raise TypeError(f"currency code must be a str, not {type(code).__name__}")
    try:
        return CURRENCIES[code][0]
    except KeyError:
        hint = f" (codes are upper case: {code.upper()!r})" if code.upper() in CURRENCIES else ""
        raise ValueError(f"unknown currency code {code!r}{hint}") from None


def ensure_decimal(value: object, *, name: str = "amount") -> Decimal:
    """``value`` as a finite Decimal; ints are converted exactly, floats refused.

    ``bool`` is refused too: ``True`` as a quantity is always a bug.
    """
    if isinstance(value, float):
        raise TypeError(f"{name} must be a Decimal, not a float (floats are inexact)")
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"{name} must be a finite number, not {result}")
    return result


def round_half_up(value: Fraction | Decimal | int) -> int:
    """``value`` rounded to the nearest integer, ties away from zero, exactly."""
    if isinstance(value, Decimal):
        value = Fraction(ensure_decimal(value, name="value"))
    elif isinstance(value, float | bool):
        raise TypeError("value must be a Fraction, Decimal or int, not a float or bool")
    elif not isinstance(value, Fraction | int):
        raise TypeError(f"value must be a Fraction, Decimal or int, not {type(value).__name__}")
    value = Fraction(value)
    magnitude = abs(value)
    # floor(|x| + 1/2) in integer arithmetic: (2n + d) // 2d.
    rounded = (2 * magnitude.numerator + magnitude.denominator) // (2 * magnitude.denominator)
    return -rounded if value < 0 else rounded


def to_minor(amount: Decimal | Fraction | int, currency: str) -> int:
    """``amount`` (in major units) as an int of minor units, rounded once, half-up.

    ``to_minor(Decimal("12.345"), "USD") == 1235``; ``to_minor(Decimal("-0.5"), "JPY") == -1``.
    A ``Fraction`` (a prorated amount) is rounded exactly, without passing through a
    decimal approximation first.
    """
    exponent = minor_unit_exponent(currency)
    if isinstance(amount, Fraction):
        return round_half_up(amount * 10**exponent)
    amount = ensure_decimal(amount)
    ctx = _rounding_context()
    # quantize rounds the exact operand once; the shift to minor units is then exact.
    rounded = amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP, context=ctx)
    return int(rounded.scaleb(exponent, context=exact_context()))


def from_minor(minor: int, currency: str) -> Decimal:
    """Minor units back to an exact Decimal in major units: 1234 USD -> ``Decimal("12.34")``."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"minor units must be an int, not {type(minor).__name__}")
    exponent = minor_unit_exponent(currency)
    # Built from text so the context's precision can never round a large amount.
    return Decimal(f"{minor}E-{exponent}")


def format_money(minor: int, currency: str) -> str:
    """Display text, locale-independent: ``format_money(123450, "USD") == "1,234.50 USD"``."""
    exponent = minor_unit_exponent(currency)
    return f"{from_minor(minor, currency):,.{exponent}f} {currency}"

"""Currencies: ISO 4217 exponents, rounding once half-up to minor units, no floats."""

from decimal import Decimal
from fractions import Fraction

import pytest

from accounts.currencies import CURRENCY_CHOICES
from invoicing.currency import (
    ensure_decimal,
    format_money,
    from_minor,
    minor_unit_exponent,
    round_half_up,
    to_minor,
)

TWO_PLACES = (
    *("USD", "EUR", "GBP", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF"),
    *("INR", "BRL", "MXN", "SGD", "HKD", "CNY", "ZAR"),
)


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        *[(c, 2) for c in TWO_PLACES],
        *[(c, 0) for c in ("JPY", "KRW", "CLP", "VND", "ISK")],
        *[(c, 3) for c in ("BHD", "KWD", "JOD", "OMR", "TND")],
    ],
)
def test_minor_unit_exponents_follow_iso_4217(code, exponent):
    assert minor_unit_exponent(code) == exponent


@pytest.mark.parametrize("code", ["usd", "Usd", "XXX", "US", "USDD", ""])
def test_unknown_or_lower_case_codes_are_refused(code):
    with pytest.raises(ValueError, match="unknown currency code"):
        minor_unit_exponent(code)


def test_lower_case_code_error_names_the_upper_case_one():
    with pytest.raises(ValueError, match="'EUR'"):
        minor_unit_exponent("eur")


def test_choices_cover_the_table_sorted_by_code():
    codes = [code for code, _ in CURRENCY_CHOICES]
    assert codes == sorted(codes)
    assert {"USD", "JPY", "KWD"} <= set(codes)
    assert all(minor_unit_exponent(code) in (0, 2, 3) for code in codes)
    assert dict(CURRENCY_CHOICES)["USD"] == "USD (US dollar)"


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.34", "USD", 1234),
        ("12.345", "USD", 1235),  # exactly half a cent: up
        ("12.3449999999", "USD", 1234),  # just below half: down (rounded once, not twice)
        ("-12.345", "USD", -1235),  # ties away from zero on negatives too
        ("-12.344", "USD", -1234),
        ("0.5", "JPY", 1),  # JPY has no minor unit: half a yen rounds up to one
        ("0.49", "JPY", 0),
        ("-0.5", "JPY", -1),
        ("1234", "JPY", 1234),
        ("1.0005", "KWD", 1001),  # three places: half a fils up
        ("1.0004", "KWD", 1000),
        ("0", "EUR", 0),
        ("1E+3", "USD", 100000),
        ("123456789012345678901234567890.125", "USD", 12345678901234567890123456789013),
    ],
)
def test_to_minor_rounds_once_half_up(amount, currency, minor):
    assert to_minor(Decimal(amount), currency) == minor


def test_to_minor_rounds_fractions_exactly():
    # 100 / 3 = 33.333... -> 3333 cents; 1/8 of a dollar = 12.5 cents -> 13.
    assert to_minor(Fraction(100, 3), "USD") == 3333
    assert to_minor(Fraction(1, 8), "USD") == 13
    assert to_minor(Fraction(-1, 8), "USD") == -13
    assert to_minor(Fraction(1, 2), "JPY") == 1


def test_to_minor_accepts_int():
    assert to_minor(7, "USD") == 700


@pytest.mark.parametrize("bad", [1.5, 0.1, True, "1.00", None])
def test_to_minor_refuses_floats_and_non_numbers(bad):
    with pytest.raises(TypeError):
        to_minor(bad, "USD")


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_to_minor_refuses_non_finite_decimals(bad):
    with pytest.raises(ValueError, match="finite"):
        to_minor(Decimal(bad), "USD")


def test_ensure_decimal_names_the_argument_in_its_error():
    with pytest.raises(TypeError, match="quantity must be a Decimal, not a float"):
        ensure_decimal(2.0, name="quantity")
    assert ensure_decimal(3) == Decimal(3)


@pytest.mark.parametrize(
    ("value", "rounded"),
    [
        (Fraction(5, 2), 3),
        (Fraction(-5, 2), -3),
        (Fraction(7, 3), 2),
        (Fraction(-7, 3), -2),
        (Decimal("2.5"), 3),
        (Decimal("-0.5"), -1),
        (4, 4),
    ],
)
def test_round_half_up_ties_go_away_from_zero(value, rounded):
    assert round_half_up(value) == rounded


def test_round_half_up_refuses_floats():
    with pytest.raises(TypeError):
        round_half_up(2.5)


@pytest.mark.parametrize(
    ("minor", "currency", "amount"),
    [
        (1234, "USD", "12.34"),
        (1234, "JPY", "1234"),
        (-5, "KWD", "-0.005"),
        (0, "USD", "0.00"),
        (10**40 + 1, "USD", "100000000000000000000000000000000000000.01"),
    ],
)
def test_from_minor_is_exact(minor, currency, amount):
    result = from_minor(minor, currency)
    assert result == Decimal(amount)
    assert str(result) == amount


@pytest.mark.parametrize("code", [c for c, _ in CURRENCY_CHOICES])
def test_minor_units_round_trip_for_every_currency(code):
    for minor in (0, 1, -1, 99, 123456789):
        assert to_minor(from_minor(minor, code), code) == minor


def test_from_minor_refuses_non_integers():
    with pytest.raises(TypeError):
        from_minor(12.5, "USD")
    with pytest.raises(TypeError):
        from_minor(Decimal(12), "USD")


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (123450, "USD", "1,234.50 USD"),
        (-123450, "USD", "-1,234.50 USD"),
        (5, "USD", "0.05 USD"),
        (1234567, "JPY", "1,234,567 JPY"),
        (1234, "KWD", "1.234 KWD"),
        (0, "EUR", "0.00 EUR"),
    ],
)
def test_format_money_is_deterministic(minor, currency, text):
    assert format_money(minor, currency) == text

"""ISO 4217 currencies the product bills in, with their minor units.

The minor unit decides rounding of invoice lines and the integer amounts sent to Stripe
and the ledger (JPY has none, KWD has three).
"""

MINOR_UNITS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CAD": 2,
    "AUD": 2,
    "NZD": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "SGD": 2,
    "HKD": 2,
    "INR": 2,
    "BRL": 2,
    "MXN": 2,
    "ZAR": 2,
    "ILS": 2,
    "CNY": 2,
    "JPY": 0,
    "KRW": 0,
    "CLP": 0,
    "KWD": 3,
    "BHD": 3,
}

CURRENCY_CHOICES = [(code, code) for code in sorted(MINOR_UNITS)]

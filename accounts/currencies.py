"""ISO 4217 currencies the product bills in, with their minor units.

The minor unit decides rounding of invoice lines and the integer amounts sent to Stripe
and the ledger (JPY has none, KWD has three). The one table: ``invoicing.currency``
rounds with it, and every currency field chooses from it.
"""

# code -> (minor-unit exponent, English name). Upper-case ISO 4217 codes only.
CURRENCIES: dict[str, tuple[int, str]] = {
    # Two decimal places.
    "AED": (2, "UAE dirham"),
    "ARS": (2, "Argentine peso"),
    "AUD": (2, "Australian dollar"),
    "BGN": (2, "Bulgarian lev"),
    "BRL": (2, "Brazilian real"),
    "CAD": (2, "Canadian dollar"),
    "CHF": (2, "Swiss franc"),
    "CNY": (2, "Chinese yuan"),
    "COP": (2, "Colombian peso"),
    "CZK": (2, "Czech koruna"),
    "DKK": (2, "Danish krone"),
    "EGP": (2, "Egyptian pound"),
    "EUR": (2, "Euro"),
    "GBP": (2, "Pound sterling"),
    "HKD": (2, "Hong Kong dollar"),
    "HUF": (2, "Hungarian forint"),
    "IDR": (2, "Indonesian rupiah"),
    "ILS": (2, "Israeli new shekel"),
    "INR": (2, "Indian rupee"),
    "KES": (2, "Kenyan shilling"),
    "MXN": (2, "Mexican peso"),
    "MYR": (2, "Malaysian ringgit"),
    "NGN": (2, "Nigerian naira"),
    "NOK": (2, "Norwegian krone"),
    "NZD": (2, "New Zealand dollar"),
    "PEN": (2, "Peruvian sol"),
    "PHP": (2, "Philippine peso"),
    "PKR": (2, "Pakistani rupee"),
    "PLN": (2, "Polish zloty"),
    "QAR": (2, "Qatari riyal"),
    "RON": (2, "Romanian leu"),
    "SAR": (2, "Saudi riyal"),
    "SEK": (2, "Swedish krona"),
    "SGD": (2, "Singapore dollar"),
    "THB": (2, "Thai baht"),
    "TRY": (2, "Turkish lira"),
    "TWD": (2, "New Taiwan dollar"),
    "USD": (2, "US dollar"),
    "ZAR": (2, "South African rand"),
    # No minor unit.
    "CLP": (0, "Chilean peso"),
    "ISK": (0, "Icelandic krona"),
    "JPY": (0, "Japanese yen"),
    "KRW": (0, "South Korean won"),
    "PYG": (0, "Paraguayan guarani"),
    "UGX": (0, "Ugandan shilling"),
    "VND": (0, "Vietnamese dong"),
    "XAF": (0, "Central African CFA franc"),
    "XOF": (0, "West African CFA franc"),
    # Three decimal places.
    "BHD": (3, "Bahraini dinar"),
    "IQD": (3, "Iraqi dinar"),
    "JOD": (3, "Jordanian dinar"),
    "KWD": (3, "Kuwaiti dinar"),
    "LYD": (3, "Libyan dinar"),
    "OMR": (3, "Omani rial"),
    "TND": (3, "Tunisian dinar"),
}


MINOR_UNITS: dict[str, int] = {code: exponent for code, (exponent, _) in CURRENCIES.items()}

CURRENCY_CHOICES = [(code, f"{code} ({name})") for code, (_, name) in sorted(CURRENCIES.items())]

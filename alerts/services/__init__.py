"""Writes of the alerts app, one module per subject; import from here."""

from .caps import (
    MAX_QUANTITY,
    RESERVATION_TTL,
    Authorization,
    authorize,
    cap_describe,
    cap_remove,
    cap_set,
    cap_units,
    caps_guard,
    parse_quantity,
    reservations_release_expired,
)

__all__ = [
    "MAX_QUANTITY",
    "RESERVATION_TTL",
    "Authorization",
    "authorize",
    "cap_describe",
    "cap_remove",
    "cap_set",
    "cap_units",
    "caps_guard",
    "parse_quantity",
    "reservations_release_expired",
]

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
from .endpoints import (
    endpoint_create,
    endpoint_delete,
    endpoint_disable,
    endpoint_for_contact_url,
    endpoint_rotate_secret,
    endpoint_update,
)
from .history import alerts_mark_seen

__all__ = [
    "MAX_QUANTITY",
    "RESERVATION_TTL",
    "Authorization",
    "alerts_mark_seen",
    "authorize",
    "cap_describe",
    "cap_remove",
    "cap_set",
    "cap_units",
    "caps_guard",
    "endpoint_create",
    "endpoint_delete",
    "endpoint_disable",
    "endpoint_for_contact_url",
    "endpoint_rotate_secret",
    "endpoint_update",
    "parse_quantity",
    "reservations_release_expired",
]

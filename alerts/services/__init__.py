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
from .plan_defaults import (
    PlanDefaultsApplied,
    plan_cap_default_remove,
    plan_cap_default_set,
    plan_defaults_apply,
)
from .rules import meter_lookup, rule_create, rule_delete, rule_update
from .spend import spend_so_far, spend_terms

__all__ = [
    "MAX_QUANTITY",
    "RESERVATION_TTL",
    "Authorization",
    "PlanDefaultsApplied",
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
    "meter_lookup",
    "parse_quantity",
    "plan_cap_default_remove",
    "plan_cap_default_set",
    "plan_defaults_apply",
    "reservations_release_expired",
    "rule_create",
    "rule_delete",
    "rule_update",
    "spend_so_far",
    "spend_terms",
]

"""API key scopes: what each one allows and which kind of key may hold it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    name: str
    description: str
    operator_only: bool = False


SCOPES: dict[str, Scope] = {
    s.name: s
    for s in (
        Scope("customers:read", "Read customer accounts"),
        Scope("customers:write", "Create and update customer accounts", operator_only=True),
        Scope("contacts:read", "Read contacts"),
        Scope("contacts:write", "Create, update and remove contacts"),
        Scope("events:write", "Send usage events", operator_only=True),
        Scope("usage:read", "Read usage and meter definitions"),
        Scope("meters:write", "Define and change meters", operator_only=True),
        Scope("caps:write", "Set hard caps and alert rules"),
        Scope("alerts:read", "Read alerts and forecasts"),
        Scope("webhooks:write", "Manage webhook endpoints and rotate their secrets"),
        Scope("invoices:read", "Read invoices and credit notes"),
        Scope(
            "invoices:write",
            "Finalize and void invoices, issue credit notes",
            operator_only=True,
        ),
        Scope("plans:write", "Publish plans and plan versions", operator_only=True),
        Scope(
            "subscriptions:write",
            "Create, change and cancel subscriptions",
            operator_only=True,
        ),
    )
}

ALL_SCOPES = tuple(SCOPES)
CUSTOMER_KEY_SCOPES = tuple(name for name, s in SCOPES.items() if not s.operator_only)

"""The staff's admin for alerts: every write goes through the services.

Nothing here saves a model. Customers' caps, rules and webhook endpoints are theirs (the
portal, the API): staff look. The operator's defaults per plan (rules and caps) are
created, changed and removed through ``alerts.services.rules``, which copies them onto the
plan's subscribers and audits every change. Alerts, deliveries and expansion signals are
the system's records; "change" on deliveries only unlocks the replay action, which calls
``outbox.delivery_replay``. Signing secrets are never shown.
"""

from .caps import CapAdmin, PlanCapDefaultAdmin
from .delivery import DeliveryAdmin, WebhookEndpointAdmin
from .rules import AlertAdmin, AlertRuleAdmin, ExpansionSignalAdmin

__all__ = [
    "AlertAdmin",
    "AlertRuleAdmin",
    "CapAdmin",
    "DeliveryAdmin",
    "ExpansionSignalAdmin",
    "PlanCapDefaultAdmin",
    "WebhookEndpointAdmin",
]

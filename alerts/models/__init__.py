from .caps import Cap, CapReservation, CapWindow, PlanCapDefault
from .delivery import Delivery, DeliveryAttempt, WebhookEndpoint, WebhookSecret
from .rules import Alert, AlertRule, AlertSeen, ExpansionSignal

__all__ = [
    "Alert",
    "AlertRule",
    "AlertSeen",
    "Cap",
    "CapReservation",
    "CapWindow",
    "Delivery",
    "DeliveryAttempt",
    "ExpansionSignal",
    "PlanCapDefault",
    "WebhookEndpoint",
    "WebhookSecret",
]

"""Celery tasks of the alerts app: thin, idempotent calls into ``alerts.services``."""

from celery import shared_task

from . import services
from .services import evaluation, outbox, plan_defaults


@shared_task(acks_late=True)
def reservations_release_expired() -> int:
    """Give back the units of cap reservations no usage consumed in time (safe twice)."""
    return services.reservations_release_expired()


@shared_task(acks_late=True)
def delivery_send(delivery_id: int) -> str | None:
    """One attempt at one delivery. A duplicate of this task finds the delivery claimed
    or done and sends nothing."""
    return outbox.delivery_send(delivery_id)


@shared_task(acks_late=True)
def deliveries_sweep() -> int:
    """Send due retries and deliveries whose wake-up was lost (a broker outage)."""
    return outbox.deliveries_sweep()


@shared_task(acks_late=True)
def thresholds_evaluate(pairs: list[list[int]]) -> int:
    """Fire the thresholds an ingest reached, for its (customer id, meter id) pairs, and
    send their deliveries; safe twice (each level fires once per rule and period, and a
    delivery is claimed before it is sent)."""
    return len(evaluation.thresholds_evaluate({(c, m) for c, m in pairs}, send=True))


@shared_task(acks_late=True)
def rules_evaluate() -> int:
    """Velocity, anomaly and predictive rules; the threshold backstop; ended periods."""
    return evaluation.rules_evaluate_scheduled()


@shared_task(acks_late=True)
def plan_defaults_apply() -> None:
    """Bring new subscribers and plan changes in line with their plans' default rules and
    caps (idempotent)."""
    plan_defaults.plan_defaults_apply()

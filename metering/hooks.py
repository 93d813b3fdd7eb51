"""How the layers above metering act on usage without metering importing them.

* An *ingest guard* runs inside the ingest transaction with the batch's new events and
  may refuse some of them, or flag them (hard caps). It returns ``{index: GuardVerdict}``:
  refused events are not stored and their keys stay free; flagged ones are stored and
  their result carries the verdict's code and message.
* A *usage recorded* listener runs after commit with the set of (customer_id, meter_id)
  pairs whose usage changed (alerts evaluate thresholds from it).
* A *billing period* provider says which ``[start, end)`` a customer is billed for at a
  moment (invoicing: the subscription's current period), or ``None`` when it does not
  know; the usage dashboard shows that period, else the calendar month.
* A *usage forecast* provider gives a meter's running total to the period's end as a
  band (alerts: the forecast from the customer's daily usage), or ``None`` when it has
  none; the dashboard draws it on the cumulative chart and prints the projected range.

Register each from an ``AppConfig.ready()``.
"""

import logging
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from accounts.models import Customer

    from .models import Meter

logger = logging.getLogger(__name__)


class NewEvent(NamedTuple):
    """An event about to be stored: what a guard sees."""

    index: int
    customer_id: int
    event_name: str
    timestamp: datetime
    properties: dict
    meter_id: int | None
    late: bool  # for a closed period: stored, but no longer usage of any open period


class GuardVerdict(NamedTuple):
    code: str
    message: str
    refuse: bool = True  # else accepted, flagged with the code and message


class BandPoint(NamedTuple):
    """The forecast running total of the period at the end of ``day`` (customer's zone);
    floats: for drawing only."""

    day: date
    p10: float
    p50: float
    p90: float


class UsageOutlook(NamedTuple):
    """A meter's forecast for one period: the band day by day, and the period-end usage."""

    points: tuple[BandPoint, ...]  # from the last complete day to the period's last day
    p10: Decimal
    p50: Decimal
    p90: Decimal


class SpendOutlook(NamedTuple):
    """The current billing period's invoice as display text (metering formats no money):
    what it comes to so far, where it is heading, and the likely range if known."""

    so_far: str
    projected: str
    likely_range: str | None
    by_forecast: bool


IngestGuard = Callable[[list[NewEvent]], dict[int, GuardVerdict]]
UsageListener = Callable[[set[tuple[int, int]]], None]
# (customer, now) -> (start, end) of the billing period containing now, aware, or None.
BillingPeriodProvider = Callable[["Customer", datetime], tuple[datetime, datetime] | None]
# (customer, meter, now, (start, end) of the period shown) -> its outlook, or None.
ForecastProvider = Callable[
    ["Customer", "Meter", datetime, tuple[datetime, datetime]], UsageOutlook | None
]

_ingest_guards: list[IngestGuard] = []
_usage_listeners: list[UsageListener] = []
_billing_period_providers: list[BillingPeriodProvider] = []
_forecast_providers: list[ForecastProvider] = []
SpendProvider = Callable[["Customer", datetime], SpendOutlook | None]
_spend_providers: list[SpendProvider] = []


def register_ingest_guard(guard: IngestGuard) -> None:
    if guard not in _ingest_guards:
        _ingest_guards.append(guard)


def register_usage_recorded(listener: UsageListener) -> None:
    if listener not in _usage_listeners:
        _usage_listeners.append(listener)


def register_billing_period(provider: BillingPeriodProvider) -> None:
    if provider not in _billing_period_providers:
        _billing_period_providers.append(provider)


def register_spend_outlook(provider: SpendProvider) -> None:
    if provider not in _spend_providers:
        _spend_providers.append(provider)


def register_forecast_provider(provider: ForecastProvider) -> None:
    if provider not in _forecast_providers:
        _forecast_providers.append(provider)


def unregister(fn) -> None:
    """For tests: remove a guard, listener or provider."""
    for registry in (
        _ingest_guards,
        _usage_listeners,
        _billing_period_providers,
        _forecast_providers,
        _spend_providers,
    ):
        if fn in registry:
            registry.remove(fn)


def has_ingest_guards() -> bool:
    return bool(_ingest_guards)


def run_ingest_guards(events: list[NewEvent]) -> dict[int, GuardVerdict]:
    """Every guard's verdicts; a refused event is not shown to the guards after it, and a
    refusal wins over a flag."""
    verdicts: dict[int, GuardVerdict] = {}
    for guard in _ingest_guards:
        remaining = [e for e in events if not (e.index in verdicts and verdicts[e.index].refuse)]
        if not remaining:
            break
        for index, verdict in guard(remaining).items():
            if verdict.refuse or index not in verdicts:
                verdicts[index] = verdict
    return verdicts


def notify_usage_recorded(pairs: Iterable[tuple[int, int]]) -> None:
    """Tell listeners after commit. The usage is already stored, so a failing listener is
    logged and must not fail the request; the alert layer's scheduled evaluation is the
    backstop for anything missed here."""
    pairs = set(pairs)
    if not pairs:
        return
    for listener in _usage_listeners:
        try:
            listener(pairs)
        except Exception:
            logger.exception("usage-recorded listener %r failed", listener)


def billing_period(customer: "Customer", now: datetime) -> tuple[datetime, datetime] | None:
    """The billing period ``[start, end)`` containing ``now`` from the first provider that
    knows one; ``None`` when none does (no provider, or the customer has no subscription).
    A period that does not contain ``now`` is a provider's bug: logged and not used."""
    for provider in _billing_period_providers:
        period = provider(customer, now)
        if period is None:
            continue
        start, end = period
        if start <= now < end:
            return start, end
        logger.warning("billing period provider %r gave [%s, %s) for %s", provider, start, end, now)
    return None


def usage_forecast(
    customer: "Customer", meter: "Meter", now: datetime, period: tuple[datetime, datetime]
) -> UsageOutlook | None:
    """The first provider's outlook for ``meter`` over ``period``; ``None`` when none has
    one. A forecast only adds to the page: a failing provider is logged and the page shows
    usage without it, as it does with no provider at all."""
    for provider in _forecast_providers:
        try:
            outlook = provider(customer, meter, now, period)
        except Exception:
            logger.exception("forecast provider %r failed for meter %s", provider, meter.pk)
            continue
        if outlook is not None:
            return outlook
    return None


def spend_outlook(customer: "Customer", now: datetime) -> SpendOutlook | None:
    """The first provider's view of the current invoice (invoicing: the upcoming invoice
    and its projection); ``None`` without one. Like the forecast it only adds to the page,
    so a failing provider is logged and the page goes on without it."""
    for provider in _spend_providers:
        try:
            found = provider(customer, now)
        except Exception:
            logger.exception("spend provider %r failed", provider)
            continue
        if found is not None:
            return found
    return None

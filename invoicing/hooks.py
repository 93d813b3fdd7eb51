"""How the layers above invoicing add to its pages without invoicing importing them.

* A *projected cost* provider says what the customer's current billing period is likely
  to cost by its end, as a range (alerts: the period rated at the forecast usage), or
  ``None`` when it cannot tell. The billing page shows it instead of its straight-line
  projection, and falls back to that projection when no provider answers.

Register each from an ``AppConfig.ready()``.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from accounts.models import Customer

logger = logging.getLogger(__name__)


class ProjectedCost(NamedTuple):
    """The period's invoice total at its end, in minor units of ``currency``."""

    currency: str
    period_start: datetime
    period_end: datetime
    p10_minor: int
    p50_minor: int
    p90_minor: int


ProjectedCostProvider = Callable[["Customer", datetime], ProjectedCost | None]

_projected_cost_providers: list[ProjectedCostProvider] = []


def register_projected_cost(provider: ProjectedCostProvider) -> None:
    if provider not in _projected_cost_providers:
        _projected_cost_providers.append(provider)


def unregister(fn) -> None:
    """For tests: remove a provider."""
    if fn in _projected_cost_providers:
        _projected_cost_providers.remove(fn)


def projected_cost(
    customer: "Customer", now: datetime, *, period: tuple[datetime, datetime]
) -> ProjectedCost | None:
    """The first provider's projection for ``period``; ``None`` when none has one. An
    answer for another period is not used (the page shows one period). A projection only
    adds to the page: a failing provider is logged and the page falls back."""
    for provider in _projected_cost_providers:
        try:
            found = provider(customer, now)
        except Exception:
            logger.exception("projected cost provider %r failed", provider)
            continue
        if found is None:
            continue
        if (found.period_start, found.period_end) == period:
            return found
        logger.warning(
            "projected cost provider %r answered for [%s, %s), not [%s, %s)",
            provider,
            found.period_start,
            found.period_end,
            *period,
        )
    return None

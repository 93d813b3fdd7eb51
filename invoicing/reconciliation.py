"""The reconciliation gate's measurements: each billed period's usage three ways.

* **batch**: from the raw events (what is billed; metering's batch track);
* **real-time**: from the hourly rollups (what alerts and caps acted on);
* **portal**: the way the customer's dashboard arrives at it (its daily bars).

All three are read in one snapshot (a read-only, repeatable-read transaction when the
caller is not already inside one), so an event landing mid-measurement cannot make the
tracks look apart. For many periods the figures come from a few queries per meter
(``metering.selectors.usage_totals``, and ``usage_as_displayed_many`` which buckets days
in each customer's time zone the way the dashboard does).
"""

from collections import defaultdict
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from metering import selectors as metering
from metering.models import Meter

from .charges import Catalog, spans
from .models import PriceComponent, Subscription


@dataclass(frozen=True)
class GateFigures:
    batch: Decimal
    realtime: Decimal
    portal: Decimal


# (customer id, meter id, span start, span end)
WindowKey = tuple[int, int, datetime, datetime]


@contextmanager
def _snapshot():
    if connection.in_atomic_block:
        yield  # the caller's transaction is the snapshot it asked for
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def measure_periods(
    periods: Iterable[tuple[Subscription, datetime, datetime]], *, catalog: Catalog
) -> dict[WindowKey, GateFigures]:
    """Gate figures for every usage price of every span of the given periods.

    The subscriptions need ``customer`` loaded and their ``phases`` prefetched (with
    ``plan_version``) for this to stay a handful of queries.
    """
    windows: dict[int, list[WindowKey]] = defaultdict(list)
    meters: dict[int, Meter] = {}
    customers = {}
    for subscription, start, end in periods:
        customers[subscription.customer_id] = subscription.customer
        for span in spans(subscription, start, end):
            for component in catalog.components(span.plan_version):
                if component.kind == PriceComponent.Kind.USAGE:
                    meters[component.meter_id] = component.meter
                    key = (subscription.customer_id, component.meter_id, span.start, span.end)
                    if key not in windows[component.meter_id]:
                        windows[component.meter_id].append(key)
    figures: dict[WindowKey, GateFigures] = {}
    with _snapshot():
        for meter_id, keys in windows.items():
            meter = meters[meter_id]
            usage_windows = [metering.UsageWindow(c, start, end) for c, _, start, end in keys]
            batch = metering.usage_totals(meter=meter, windows=usage_windows, track="batch")
            realtime = metering.usage_totals(meter=meter, windows=usage_windows)
            portal = metering.usage_as_displayed_many(
                meter=meter,
                windows=usage_windows,
                zones=[customers[customer_id].timezone for customer_id, *_ in keys],
            )
            for i, key in enumerate(keys):
                figures[key] = GateFigures(batch[i], realtime[i], portal[i])
    return figures

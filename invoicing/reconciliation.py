"""The reconciliation gate's measurements: each billed period's usage three ways.

* **batch**: from the raw events (what is billed; metering's batch track);
* **real-time**: from the hourly rollups (what alerts and caps acted on);
* **portal**: the way the customer's dashboard arrives at it (its daily bars).

All three are read in one snapshot (a read-only, repeatable-read transaction when the
caller is not already inside one), so an event landing mid-measurement cannot make the
tracks look apart. For many periods the figures come from a few queries per meter
(``metering.selectors.usage_totals`` for the batch track, and
``usage_realtime_and_displayed``, which buckets days in each customer's time zone the way
the dashboard does).
"""

from collections import defaultdict
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from metering import selectors as metering
from metering.models import Meter

from .charges import Carried, Catalog, carried_from_previous, spans
from .models import PriceComponent, Subscription

# An ingest batch commits within seconds of its receive time: events received more than
# this long before a measurement are all visible to it, so a late event is never skipped.
LATE_EVENTS_MARGIN = timedelta(minutes=5)


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


@dataclass
class Measured:
    """What a run reads ahead for its periods, so closing each one is little more than
    writes: the gate figures, what each period carries from the invoice before it, and the
    customers' late events received before ``late_before``."""

    catalog: Catalog
    figures: dict[WindowKey, GateFigures]
    carried: dict[tuple[int, datetime], Carried]
    late: dict[int, list[tuple[str, datetime, datetime]]]
    late_before: datetime


def measure_periods(
    periods: Iterable[tuple[Subscription, datetime, datetime]],
    *,
    catalog: Catalog | None = None,
    now: datetime | None = None,
) -> Measured:
    """Read ahead for the given periods (subscription, start, end).

    The subscriptions need ``customer`` loaded and their ``phases`` prefetched (with
    ``plan_version``) for this to stay a handful of queries whatever their number.
    """
    catalog = catalog or Catalog()
    periods = list(periods)
    late_before = (now or timezone.now()) - LATE_EVENTS_MARGIN
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
            realtime_and_portal = metering.usage_realtime_and_displayed(
                meter=meter,
                windows=usage_windows,
                zones=[customers[customer_id].timezone for customer_id, *_ in keys],
            )
            for i, key in enumerate(keys):
                figures[key] = GateFigures(batch[i], *realtime_and_portal[i])
        late = metering.late_events_by_customer(
            customer_ids=list(customers), received_before=late_before
        )
    return Measured(
        catalog=catalog,
        figures=figures,
        carried=carried_from_previous([(s.pk, start) for s, start, _ in periods]),
        late=late,
        late_before=late_before,
    )

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


# A run measures hundreds of periods per query: its sorts and hashes get the memory to
# stay off disk, and JIT (whose compile costs tens of milliseconds a query, for plans
# that are nested index lookups) and parallel workers (the lookups do not split) stay off.
_BULK_READ_SETTINGS = (
    "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off; "
    "SET LOCAL max_parallel_workers_per_gather = 0"
)


@contextmanager
def _snapshot():
    if connection.in_atomic_block:
        yield  # the caller's transaction is the snapshot it asked for
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(_BULK_READ_SETTINGS)
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
    # Per customer's span: the meters measured over it (all meters of a plan share its spans).
    spans_measured: dict[tuple[int, datetime, datetime], set[int]] = defaultdict(set)
    meters: dict[int, Meter] = {}
    customers = {}
    for subscription, start, end in periods:
        customers[subscription.customer_id] = subscription.customer
        for span in spans(subscription, start, end):
            for component in catalog.components(span.plan_version):
                if component.kind == PriceComponent.Kind.USAGE:
                    meters[component.meter_id] = component.meter
                    key = (subscription.customer_id, span.start, span.end)
                    spans_measured[key].add(component.meter_id)
    figures: dict[WindowKey, GateFigures] = {}
    with _snapshot():
        keys = list(spans_measured)
        usage_windows = [metering.UsageWindow(c, start, end) for c, start, end in keys]
        # The batch track reads each span's raw events once for all its meters: one query
        # per set of meters (a plan's), each over the spans that have them.
        batch: list[dict[int, Decimal]] = [{} for _ in keys]
        by_meter_set: dict[frozenset[int], list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            by_meter_set[frozenset(spans_measured[key])].append(i)
        for meter_ids, positions in by_meter_set.items():
            totals = metering.batch_usage_totals(
                meters=[meters[pk] for pk in sorted(meter_ids)],
                windows=[usage_windows[i] for i in positions],
            )
            for i, window_totals in zip(positions, totals, strict=True):
                batch[i] = window_totals
        for meter_id, meter in meters.items():
            positions = [i for i, key in enumerate(keys) if meter_id in spans_measured[key]]
            realtime_and_portal = metering.usage_realtime_and_displayed(
                meter=meter,
                windows=[usage_windows[i] for i in positions],
                zones=[customers[keys[i][0]].timezone for i in positions],
            )
            for i, both in zip(positions, realtime_and_portal, strict=True):
                customer_id, start, end = keys[i]
                figures[(customer_id, meter_id, start, end)] = GateFigures(
                    batch[i][meter_id], *both
                )
        carried = carried_from_previous([(s.pk, start) for s, start, _ in periods])
        # Each period takes the late events received since the invoice before it; a
        # customer's earliest such moment covers all its periods.
        since: dict[int, datetime | None] = {}
        for subscription, start, _ in periods:
            through = carried[(subscription.pk, start)].late_usage_through
            known = since.get(subscription.customer_id, through)
            since[subscription.customer_id] = (
                None if through is None or known is None else min(through, known)
            )
        late = metering.late_events_by_customer(received_since=since, received_before=late_before)
    return Measured(
        catalog=catalog,
        figures=figures,
        carried=carried,
        late=late,
        late_before=late_before,
    )

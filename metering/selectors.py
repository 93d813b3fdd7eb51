"""Reads for metering: usage totals, series and breakdowns, events, late events.

Usage over any ``[start, end)`` comes from the hourly rollups for the whole hours inside
it and from the raw events for the partial hours at its edges, so a billing period that
starts at 14:37 is still exact. Values are ``Decimal`` (counts too), never floats.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import QuerySet

from accounts.models import Customer
from accounts.tenancy import scoped

from . import hooks
from .measuring import (
    RAW_TOTAL_COLUMN,
    UsageWindow,
    buckets,
    cut_hours,
    hours_and_edges,
    measure,
    measure_query,
    raw_totals,
)
from .models import Meter, UsageEvent

GRANULARITIES = ("hour", "day", "month")
TRACKS = ("realtime", "batch")


@dataclass(frozen=True)
class UsagePoint:
    bucket: datetime | None  # start of the bucket, aware, in the customer's time zone
    group: str | None  # the dimension value, when broken down
    value: Decimal | None


def _check(meter: Meter, *, track: str, late_received_before) -> None:
    if track not in TRACKS:
        raise ValueError(f"track must be one of {TRACKS}")
    if late_received_before is not None and track != "batch":
        raise ValueError("late events are only in the batch track")


def usage_points(
    *,
    customer: Customer,
    meter: Meter,
    start: datetime,
    end: datetime,
    granularity: str | None = None,
    group_by: str | None = None,
    where: dict[str, str] | None = None,
    track: str = "realtime",
    late_received_before: datetime | None = None,
) -> list[UsagePoint]:
    """Usage of one customer on one meter over ``[start, end)``.

    ``granularity`` (hour/day/month, in the customer's time zone) makes a series;
    ``group_by`` (one of the meter's dimensions) breaks it down; ``where`` keeps only
    usage whose dimensions have the given values. Only buckets with usage are returned.
    A gauge (latest) is the latest value per dimension combination, summed.

    ``track="batch"`` measures every event of the range from the raw events, ignoring the
    rollups: what period close bills and reconciles the real-time track against. With
    ``late_received_before`` it also counts the late events received before then (events
    of an already-invoiced period, which invoicing carries as adjustments).
    """
    if end <= start:
        return []
    if granularity is not None and granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}")
    _check(meter, track=track, late_received_before=late_received_before)
    dimensions = list(meter.group_by)
    for name in [group_by, *(where or {})]:
        if name is not None and name not in dimensions:
            raise ValueError(f"{name!r} is not a dimension of meter {meter.code}")
    zone = ZoneInfo(customer.timezone)
    split_hours = []
    if track == "realtime":
        full_start, full_end, _ = hours_and_edges(start, end)
        # Only whole hours the rollups would serve: a cut hour at a partial edge is raw
        # already, and taking all of it would count events outside [start, end).
        split_hours = [
            hour
            for hour in cut_hours(start, end, granularity, zone)
            if full_start <= hour < full_end
        ]
    rows = measure(
        meter=meter,
        windows=[UsageWindow(customer.pk, start, end)],
        zone=customer.timezone,
        granularity=granularity,
        group_by=group_by,
        where=where,
        split_hours=split_hours,
        track=track,
        late_received_before=late_received_before,
    )
    return [
        UsagePoint(
            bucket=moment.astimezone(zone) if moment is not None else None,
            group=grp,
            value=_normalize(value),
        )
        for _, moment, grp, value in rows
    ]


def usage_totals(
    *,
    meter: Meter,
    windows: list[UsageWindow],
    track: str = "realtime",
    late_received_before: datetime | None = None,
) -> list[Decimal]:
    """``usage_total`` of every window, in order, in one query (period close measures
    thousands of subscriptions this way)."""
    _check(meter, track=track, late_received_before=late_received_before)
    if not windows:
        return []
    if any(w.end <= w.start for w in windows):
        raise ValueError("every window must end after it starts")
    if track == "batch" and meter.aggregation in RAW_TOTAL_COLUMN:
        return [
            totals[meter.pk]
            for totals in batch_usage_totals(
                meters=[meter], windows=windows, late_received_before=late_received_before
            )
        ]
    found = {
        idx: value
        for idx, _, _, value in measure(
            meter=meter, windows=windows, track=track, late_received_before=late_received_before
        )
    }
    return [_normalize(found.get(i)) or Decimal(0) for i in range(1, len(windows) + 1)]


def batch_usage_totals(
    *,
    meters: list[Meter],
    windows: list[UsageWindow],
    late_received_before: datetime | None = None,
) -> list[dict[int, Decimal]]:
    """Every meter's batch-track total over every window (``{meter id: total}`` per
    window, in order). Count, sum and max meters are measured together, each window's raw
    events read once for all of them: period close reads a month of events per
    subscription, and reading it once per meter was most of its cost."""
    if not windows:
        return []
    if any(w.end <= w.start for w in windows):
        raise ValueError("every window must end after it starts")
    additive = [m for m in meters if m.aggregation in RAW_TOTAL_COLUMN]
    found = raw_totals(meters=additive, windows=windows, late_received_before=late_received_before)
    totals = [
        {m.pk: _normalize(found.get((i, m.pk))) or Decimal(0) for m in additive}
        for i in range(1, len(windows) + 1)
    ]
    for meter in meters:
        if meter not in additive:
            for window_totals, total in zip(
                totals,
                usage_totals(
                    meter=meter,
                    windows=windows,
                    track="batch",
                    late_received_before=late_received_before,
                ),
                strict=True,
            ):
                window_totals[meter.pk] = total
    return totals


def _normalize(value: Decimal | None) -> Decimal | None:
    """Drop the storage scale (12 places) without losing digits: 3.750000000000 -> 3.75."""
    if value is None:
        return None
    normalized = value.normalize()
    # normalize() writes 100 as 1E+2; quantize back to an integer exponent for display.
    return normalized.quantize(Decimal(1)) if normalized == normalized.to_integral() else normalized


def usage_total(
    *,
    customer: Customer,
    meter: Meter,
    start: datetime,
    end: datetime,
    where=None,
    track: str = "realtime",
    late_received_before: datetime | None = None,
) -> Decimal:
    points = usage_points(
        customer=customer,
        meter=meter,
        start=start,
        end=end,
        where=where,
        track=track,
        late_received_before=late_received_before,
    )
    if not points or points[0].value is None:
        return Decimal(0)
    return points[0].value


def usage_series(
    *,
    customer: Customer,
    meter: Meter,
    start: datetime,
    end: datetime,
    granularity: str = "day",
    where: dict[str, str] | None = None,
) -> list[UsagePoint]:
    """A series with every bucket of ``[start, end)`` present (zero where nothing happened,
    ``None`` for gauges with no reading)."""
    # Keyed by UTC instant: aware datetimes of one zone compare by wall time, which would
    # merge the two 01:00 buckets of a DST fall-back.
    found = {
        p.bucket.astimezone(UTC): p.value
        for p in usage_points(
            customer=customer,
            meter=meter,
            start=start,
            end=end,
            granularity=granularity,
            where=where,
        )
    }
    empty = (
        None
        if meter.aggregation in (Meter.Aggregation.LATEST, Meter.Aggregation.MAX)
        else Decimal(0)
    )
    return [
        UsagePoint(bucket=b, group=None, value=found.get(b.astimezone(UTC), empty))
        for b in buckets(start, end, granularity, ZoneInfo(customer.timezone))
    ]


def usage_as_displayed(
    *, customer: Customer, meter: Meter, start: datetime, end: datetime
) -> Decimal:
    """A period's figure the way the portal's dashboard arrives at it: for count and sum
    meters the sum of its daily bars (bucketed in the customer's time zone), otherwise the
    period total. Period close checks it against the billed figure, so a charting or
    bucketing bug cannot show a customer something other than what they pay for."""
    if meter.aggregation not in (Meter.Aggregation.COUNT, Meter.Aggregation.SUM):
        return usage_total(customer=customer, meter=meter, start=start, end=end)
    series = usage_series(customer=customer, meter=meter, start=start, end=end, granularity="day")
    return _normalize(sum((p.value or Decimal(0) for p in series), Decimal(0))) or Decimal(0)


def usage_realtime_and_displayed(
    *, meter: Meter, windows: list[UsageWindow], zones: list[str]
) -> list[tuple[Decimal, Decimal]]:
    """For every window (``zones``: each window's customer's time zone): its real-time
    total and its figure as the dashboard shows it (what ``usage_as_displayed`` computes one
    window at a time, through the dashboard's own series). One query per
    time zone: for count and sum meters the daily bars and the total are summed from the
    same parts, so only the day bucketing separates them — which is what is checked."""
    if len(zones) != len(windows):
        raise ValueError("one time zone per window")
    if meter.aggregation not in (Meter.Aggregation.COUNT, Meter.Aggregation.SUM):
        totals = usage_totals(meter=meter, windows=windows)
        return list(zip(totals, totals, strict=True))
    totals = [Decimal(0)] * len(windows)
    displayed = [Decimal(0)] * len(windows)
    by_zone: dict[str, list[int]] = {}
    for i, zone in enumerate(zones):
        by_zone.setdefault(zone, []).append(i)
    for zone, positions in by_zone.items():
        # A zone offset by :30 or :45 cuts hours at day boundaries, and the cut hours are
        # particular to each window: those windows are measured one by one.
        groups = [positions]
        if any(
            cut_hours(windows[i].start, windows[i].end, "day", ZoneInfo(zone)) for i in positions
        ):
            groups = [[i] for i in positions]
        for group in groups:
            split_hours = []
            if len(group) == 1:
                window = windows[group[0]]
                full_start, full_end, _ = hours_and_edges(window.start, window.end)
                split_hours = [
                    hour
                    for hour in cut_hours(window.start, window.end, "day", ZoneInfo(zone))
                    if full_start <= hour < full_end
                ]
            query, params = measure_query(
                meter=meter,
                windows=[windows[i] for i in group],
                zone=zone,
                granularity="day",
                split_hours=split_hours,
                with_totals=True,
            )
            with connection.cursor() as cursor:
                # The daily bars are summed in SQL (exact numerics either way): a month of
                # bars per window is a lot of rows to ship for period close's thousands.
                cursor.execute(
                    f"""
                    SELECT idx, bucket IS NULL AS is_total, sum(value)
                    FROM ({query}) AS measured(idx, bucket, grp, value)
                    GROUP BY 1, 2
                    """,
                    params,
                )
                rows = cursor.fetchall()
            for idx, is_total, value in rows:
                position = group[idx - 1]
                if is_total:
                    totals[position] += value or Decimal(0)
                else:
                    displayed[position] += value or Decimal(0)
    return [
        (_normalize(total) or Decimal(0), _normalize(shown) or Decimal(0))
        for total, shown in zip(totals, displayed, strict=True)
    ]


def usage_breakdown(
    *,
    customer: Customer,
    meter: Meter,
    start: datetime,
    end: datetime,
    dimension: str,
    where: dict[str, str] | None = None,
) -> list[UsagePoint]:
    """Usage per value of one dimension, largest first."""
    points = usage_points(
        customer=customer, meter=meter, start=start, end=end, group_by=dimension, where=where
    )
    return sorted(points, key=lambda p: (-(p.value or 0), p.group or ""))


# --- Events -----------------------------------------------------------------------------


def event_list(*, principal, customer: Customer | None = None) -> QuerySet[UsageEvent]:
    """Raw events visible to ``principal`` (a membership or an API key), newest first."""
    events = scoped(UsageEvent.objects.all(), principal)
    if customer is not None:
        events = events.filter(customer=customer)
    return events.order_by("-timestamp", "-id")


def late_events(
    *, customer: Customer, received_since: datetime | None = None
) -> QuerySet[UsageEvent]:
    """Events that arrived for an already-closed period: invoicing carries them as
    adjustments on the next invoice instead of editing a finalized one."""
    events = UsageEvent.objects.filter(customer=customer, late=True, voided_at__isnull=True)
    if received_since is not None:
        events = events.filter(received_at__gte=received_since)
    return events.order_by("timestamp", "id")


def late_events_by_customer(
    *, received_since: dict[int, datetime | None], received_before: datetime
) -> dict[int, list[tuple[str, datetime, datetime]]]:
    """``(event_name, timestamp, received_at)`` of the late events each customer received
    in ``[received_since[customer], received_before)`` (no lower bound for None): one
    query for many customers (period close)."""
    found: dict[int, list[tuple[str, datetime, datetime]]] = {pk: [] for pk in received_since}
    if not received_since:
        return found
    # Driven from the partial index of late events, customer by customer. The upper bound
    # is applied here, not in SQL: bound in SQL, a plain "received before" lets the
    # planner pick the received_at BRIN index, whose lossy pages are every event stored.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.customer_id, e.event_name, e."timestamp", e.received_at
            FROM unnest(%s::bigint[], %s::timestamptz[]) AS c(customer_id, received_since)
            JOIN metering_usageevent e
              ON e.customer_id = c.customer_id AND e.late AND e.voided_at IS NULL
             AND e.received_at >= coalesce(c.received_since, '-infinity')
            """,
            [list(received_since), list(received_since.values())],
        )
        for customer_id, name, moment, received in cursor.fetchall():
            if received < received_before:
                found[customer_id].append((name, moment, received))
    return found


def meter_list(*, include_inactive: bool = False) -> QuerySet[Meter]:
    meters = Meter.objects.all()
    return meters if include_inactive else meters.filter(is_active=True)


@dataclass(frozen=True)
class Period:
    """The period the dashboard's figures cover, ``[start, end)`` in the customer's zone."""

    start: datetime
    end: datetime
    billing: bool  # the customer's billing period; else the calendar month

    @property
    def phrase(self) -> str:
        return "this billing period" if self.billing else "this month"


def month_start(moment: datetime, zone: ZoneInfo, months_back: int = 0) -> datetime:
    """Midnight on the first of the month ``months_back`` before ``moment``'s, in ``zone``."""
    local = moment.astimezone(zone)
    index = local.year * 12 + local.month - 1 - months_back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=zone)


def current_period(customer, now: datetime) -> Period:
    """The customer's billing period containing ``now``, else the calendar month."""
    zone = ZoneInfo(customer.timezone)
    found = hooks.billing_period(customer, now)
    if found is not None:
        start, end = found
        return Period(start.astimezone(zone), end.astimezone(zone), billing=True)
    return Period(month_start(now, zone), month_start(now, zone, months_back=-1), billing=False)

"""The SQL that measures usage over windows: one customer's ``[start, end)`` each.

Whole hours come from the hourly rollups, partial hours at the edges (and hours a
:30-offset zone cuts at a bucket boundary) from the raw events, both through
``metering.sql``'s shared ``MEASURED`` select; the batch track reads every event raw.
One query measures any number of windows; ``metering.selectors`` is the public face.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.db import connection

from . import sql
from .models import Meter
from .tracks import ceil_hour, floor_hour

_AGGREGATE = {
    Meter.Aggregation.COUNT: "sum(event_count)",
    Meter.Aggregation.SUM: "sum(value_sum)",
    Meter.Aggregation.MAX: "max(value_max)",
}

# Raw events as one part per window, in the rollups' columns (for plain totals).
_RAW_TOTALS_SELECT = """
    SELECT customer_id, NULL::timestamptz AS hour, NULL::text[] AS dimensions,
           count(*) AS event_count, sum(value) AS value_sum, max(value) AS value_max,
           NULL::numeric AS latest_value, NULL::timestamptz AS latest_at,
           NULL::bigint AS latest_event_id
    FROM measured
    WHERE aggregation = 'count' OR value IS NOT NULL
    GROUP BY customer_id
"""

_ROLLUP_PART_COLUMNS = (
    "hour, dimensions, event_count, value_sum, value_max, latest_value, latest_at, latest_event_id"
)


def hours_and_edges(
    start: datetime, end: datetime
) -> tuple[datetime, datetime, list[tuple[datetime, datetime]]]:
    """Whole hours [full_start, full_end) served by rollups, and partial edges served raw."""
    full_start, full_end = ceil_hour(start), floor_hour(end)
    if full_start >= full_end:
        return full_start, full_start, [(start, end)]
    edges = [(a, b) for a, b in ((start, full_start), (full_end, end)) if a < b]
    return full_start, full_end, edges


# Period close asks this for thousands of windows sharing a handful of (start, end) pairs.
@lru_cache(maxsize=4096)
def cut_hours(
    start: datetime, end: datetime, granularity: str | None, zone: ZoneInfo
) -> tuple[datetime, ...]:
    """Whole UTC hours that a bucket boundary cuts in two (zones offset by :30 or :45, e.g.
    India, Nepal, Newfoundland): their usage must come from raw events to land in the
    right bucket."""
    if granularity is None:
        return ()
    cut = set()
    for bucket in buckets(start, end, granularity, zone):
        boundary = bucket.astimezone(UTC)
        if start < boundary < end and boundary != floor_hour(boundary):
            cut.add(floor_hour(boundary))
    return tuple(sorted(cut))


@dataclass(frozen=True)
class UsageWindow:
    """One customer's ``[start, end)``: many are measured in one query by ``usage_totals``."""

    customer_id: int
    start: datetime
    end: datetime


def _raw_source(*, with_late: bool, ranges: int | None) -> str:
    """Raw events of the ranges in %(r_*)s (edges, cut hours; whole windows in the batch
    track), late ones too when asked (if received before %(late_received_before)s).

    The window's number rides in the ``customer_id`` column: ``MEASURED`` and
    ``ROLLUP_SELECT`` pass it through and group by it, so one query measures many windows.
    One window (``ranges``: how many it has) is bound as plain values instead of arrays:
    the planner then prunes the monthly partitions and sizes its plan for one customer,
    which keeps a single usage query flat as the event store grows.
    """
    late = (
        "(NOT ev.late OR ev.received_at < %(late_received_before)s)" if with_late else "NOT ev.late"
    )
    condition = f"ev.event_name = ANY(%(meter_codes)s) AND ev.voided_at IS NULL AND {late}"
    if ranges is not None:
        in_ranges = " OR ".join(
            f'(ev."timestamp" >= %(r_start_{i})s AND ev."timestamp" < %(r_end_{i})s)'
            for i in range(ranges)
        )
        return (
            '(SELECT ev.id, 1::bigint AS customer_id, ev.event_name, ev."timestamp", '
            "ev.properties FROM metering_usageevent ev "
            f"WHERE ev.customer_id = %(w_customer)s AND ({in_ranges or 'false'}) AND {condition})"
        )
    return (
        '(SELECT ev.id, rr.idx AS customer_id, ev.event_name, ev."timestamp", ev.properties '
        "FROM unnest(%(r_idx)s::bigint[], %(r_customers)s::bigint[], "
        "%(r_starts)s::timestamptz[], %(r_ends)s::timestamptz[]) "
        "AS rr(idx, customer_id, start_at, end_at) "
        "JOIN metering_usageevent ev ON ev.customer_id = rr.customer_id "
        'AND ev."timestamp" >= rr.start_at AND ev."timestamp" < rr.end_at '
        # The span of all ranges as plain values: partitions outside it are pruned when
        # planning (from the join alone PostgreSQL would probe every month's partition).
        f'WHERE ev."timestamp" >= %(r_first)s AND ev."timestamp" < %(r_last)s AND {condition})'
    )


# The windows' whole hours, served by the rollups (cut hours aside); one window as values.
_ROLLED_UP = """
    FROM unnest(%(w_customers)s::bigint[], %(w_full_starts)s::timestamptz[],
                %(w_full_ends)s::timestamptz[])
         WITH ORDINALITY AS w(customer_id, full_start, full_end, idx)
    JOIN {table} r ON r.customer_id = w.customer_id
    WHERE r.meter_id = %(meter_id)s AND r.hour >= w.full_start AND r.hour < w.full_end
      AND r.hour <> ALL(%(split_hours)s::timestamptz[])
"""
_ROLLED_UP_ONE = """
    FROM {table} r CROSS JOIN (SELECT 1::bigint AS idx) AS w
    WHERE r.customer_id = %(w_customer)s AND r.meter_id = %(meter_id)s
      AND r.hour >= %(w_full_start)s AND r.hour < %(w_full_end)s
      AND r.hour <> ALL(%(split_hours)s::timestamptz[])
"""


def _window_params(windows, *, track: str, split_hours: list[datetime]) -> dict:
    """Rollup hours and raw ranges per window, as the array parameters of the query."""
    params: dict = {
        "w_customers": [],
        "w_full_starts": [],
        "w_full_ends": [],
        "r_idx": [],
        "r_customers": [],
        "r_starts": [],
        "r_ends": [],
    }
    for idx, window in enumerate(windows, start=1):
        if track == "batch":
            full_start, full_end, ranges = window.start, window.start, [(window.start, window.end)]
        else:
            full_start, full_end, ranges = hours_and_edges(window.start, window.end)
            ranges += [(hour, hour + timedelta(hours=1)) for hour in split_hours]
        params["w_customers"].append(window.customer_id)
        params["w_full_starts"].append(full_start)
        params["w_full_ends"].append(full_end)
        for range_start, range_end in ranges:
            params["r_idx"].append(idx)
            params["r_customers"].append(window.customer_id)
            params["r_starts"].append(range_start)
            params["r_ends"].append(range_end)
    params["r_first"] = min(params["r_starts"], default=None)
    params["r_last"] = max(params["r_ends"], default=None)
    if len(windows) == 1:
        params["w_customer"] = params["w_customers"][0]
        params["w_full_start"] = params["w_full_starts"][0]
        params["w_full_end"] = params["w_full_ends"][0]
        for i, (range_start, range_end) in enumerate(
            zip(params["r_starts"], params["r_ends"], strict=True)
        ):
            params[f"r_start_{i}"], params[f"r_end_{i}"] = range_start, range_end
    return params


def measure_query(
    *,
    meter: Meter,
    windows: list[UsageWindow],
    zone: str = "UTC",
    granularity: str | None = None,
    group_by: str | None = None,
    where: dict[str, str] | None = None,
    split_hours: list[datetime] = (),
    track: str = "realtime",
    late_received_before: datetime | None = None,
    with_totals: bool = False,
) -> tuple[str, dict]:
    """The query (and its parameters) whose rows are ``(window number, bucket, group,
    value)``: one query for every window.

    ``with_totals`` (count, sum and max meters, with a granularity) adds each window's
    total as a row whose bucket is None, summed from the same parts as its buckets."""
    dimensions = list(meter.group_by)
    params = _window_params(windows, track=track, split_hours=list(split_hours))
    params.update(
        {
            "meter_id": meter.pk,
            "meter_codes": [meter.code],
            "granularity": granularity or "hour",
            "tz": zone,
            "split_hours": list(split_hours),
            "late_received_before": late_received_before,
        }
    )
    # Raw rows keep their minute instead of their hour, so they fall in the right bucket
    # even where a bucket boundary cuts an hour. (Used as the body of a CTE "measured_raw".)
    single = len(windows) == 1
    measured = sql.MEASURED.format(
        source=_raw_source(
            with_late=late_received_before is not None,
            ranges=len(params["r_starts"]) if single else None,
        ),
        meter_filter="AND m.id = %(meter_id)s",
    ) + (
        "), measured AS ("
        "SELECT id, customer_id, meter_id, aggregation, "
        'date_trunc(\'minute\', "timestamp") AS hour, dimensions, "timestamp", value, '
        "unique_value FROM measured_raw"
    )
    rolled_up = _ROLLED_UP_ONE if single else _ROLLED_UP

    # Buckets are instants, not local wall times: in a DST fall-back the two 01:00 hours
    # are two buckets. An hour bucket starts where the local hour does (its minutes into
    # the local hour taken off), a day or month bucket at local midnight.
    if granularity == "hour":
        bucket = (
            "(hour - ((hour AT TIME ZONE %(tz)s) - date_trunc('hour', hour AT TIME ZONE %(tz)s)))"
        )
    elif granularity:
        bucket = "(date_trunc(%(granularity)s, hour AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s)"
    else:
        bucket = "NULL::timestamptz"
    group = f"dimensions[{dimensions.index(group_by) + 1}]" if group_by else "NULL::text"
    filters = []
    for i, (name, value) in enumerate(sorted((where or {}).items())):
        params[f"where_{i}"] = value
        filters.append(f"dimensions[{dimensions.index(name) + 1}] = %(where_{i})s")
    condition = " AND ".join(filters) or "true"

    if meter.aggregation == Meter.Aggregation.UNIQUE_COUNT:
        query = f"""
            WITH parts AS (
                SELECT w.idx, r.hour, r.dimensions, r.value
                {rolled_up.format(table="metering_usageuniquevalue")}
                UNION ALL
                SELECT customer_id, hour, dimensions, value
                FROM (WITH measured_raw AS ({measured}) {sql.UNIQUE_SELECT}) AS edges
            )
            SELECT idx, {bucket} AS bucket, {group} AS grp, count(DISTINCT value)::numeric
            FROM parts WHERE {condition} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        """
    else:
        raw_parts = sql.ROLLUP_SELECT
        if (
            granularity is None
            and group_by is None
            and not where
            and meter.aggregation in _AGGREGATE
        ):
            # A plain total of an additive or max meter needs no hours or dimensions from
            # the raw events: one row per window (the batch track reads every event raw).
            raw_parts = _RAW_TOTALS_SELECT
        parts = f"""
            WITH parts AS (
                SELECT w.idx, {", ".join("r." + c for c in _ROLLUP_PART_COLUMNS.split(", "))}
                {rolled_up.format(table="metering_usagerollup")}
                UNION ALL
                SELECT customer_id, {_ROLLUP_PART_COLUMNS}
                FROM (WITH measured_raw AS ({measured}) {raw_parts}) AS edges
            )
        """
        if meter.aggregation == Meter.Aggregation.LATEST:
            query = f"""{parts}
                SELECT idx, bucket, grp, sum(latest) FROM (
                    SELECT idx, {bucket} AS bucket, {group} AS grp, dimensions,
                           (array_agg(latest_value ORDER BY latest_at DESC, latest_event_id DESC)
                               FILTER (WHERE latest_value IS NOT NULL))[1] AS latest
                    FROM parts WHERE {condition} GROUP BY 1, 2, 3, 4
                ) AS per_dimension
                GROUP BY 1, 2, 3 HAVING count(latest) > 0 ORDER BY 1, 2, 3
            """
        else:
            # Collapse dimensions per hour first: the time-zone bucketing then runs on at
            # most one row per hour instead of one per hour and dimension combination.
            aggregate = f"{_AGGREGATE[meter.aggregation]}::numeric"
            totals = (
                f"UNION ALL SELECT idx, NULL::timestamptz, grp, {aggregate} "
                "FROM hourly GROUP BY 1, 3"
                if with_totals
                else ""
            )
            query = f"""{parts}, hourly AS (
                    SELECT idx, hour, {group} AS grp, sum(event_count) AS event_count,
                           sum(value_sum) AS value_sum, max(value_max) AS value_max
                    FROM parts WHERE {condition} GROUP BY 1, 2, 3
                )
                SELECT idx, {bucket} AS bucket, grp, {aggregate}
                FROM hourly GROUP BY 1, 2, 3
                {totals}
                ORDER BY 1, 2, 3
            """
    return query, params


def measure(**kwargs) -> list[tuple[int, datetime | None, str | None, Decimal | None]]:
    """Rows ``(window number, bucket, group, value)`` of ``measure_query(**kwargs)``."""
    query, params = measure_query(**kwargs)
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


# Which of (event count, value sum, value max) is each additive meter's total.
RAW_TOTAL_COLUMN = {
    Meter.Aggregation.COUNT: 0,
    Meter.Aggregation.SUM: 1,
    Meter.Aggregation.MAX: 2,
}


def raw_totals(
    *,
    meters: list[Meter],
    windows: list[UsageWindow],
    late_received_before: datetime | None = None,
) -> dict[tuple[int, int], Decimal]:
    """The batch track's totals of count, sum and max meters over the windows, in one
    query that reads each window's raw events once for all the meters (the event index is
    by customer and time, not by name): ``{(window number, meter id): total}``, absent
    where the meter counted nothing."""
    if any(m.aggregation not in RAW_TOTAL_COLUMN for m in meters):
        raise ValueError("raw_totals measures count, sum and max meters only")
    if not meters or not windows:
        return {}
    params = _window_params(windows, track="batch", split_hours=[])
    params.update(
        {
            "meter_codes": [m.code for m in meters],
            "meter_ids": [m.pk for m in meters],
            "late_received_before": late_received_before,
        }
    )
    measured = sql.MEASURED.format(
        source=_raw_source(
            with_late=late_received_before is not None,
            ranges=len(params["r_starts"]) if len(windows) == 1 else None,
        ),
        meter_filter="AND m.id = ANY(%(meter_ids)s)",
    )
    query = f"""
        WITH measured AS ({measured})
        SELECT customer_id, meter_id, count(*)::numeric, sum(value), max(value)
        FROM measured
        WHERE aggregation = 'count' OR value IS NOT NULL
        GROUP BY customer_id, meter_id
    """
    column = {m.pk: RAW_TOTAL_COLUMN[m.aggregation] for m in meters}
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        rows = cursor.fetchall()
    return {
        (idx, meter_id): figures[column[meter_id]]
        for idx, meter_id, *figures in rows
        if figures[column[meter_id]] is not None
    }


def buckets(start: datetime, end: datetime, granularity: str, zone: ZoneInfo) -> Iterable[datetime]:
    """Bucket starts (aware, in ``zone``) covering ``[start, end)``; DST-safe."""
    local = start.astimezone(zone)
    if granularity == "hour":
        # Local hours: in a :30 zone they start at :30 UTC.
        # Stepped in UTC: adding an hour to a local time would skip (or repeat) the hour of
        # a DST change.
        current = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        while current < end:
            yield current.astimezone(zone)
            current += timedelta(hours=1)
        return
    if granularity == "day":
        day = local.date()
        while True:
            bucket = datetime(day.year, day.month, day.day, tzinfo=zone)
            if bucket >= end:
                return
            yield bucket
            day += timedelta(days=1)
    year, month = local.year, local.month
    while True:
        bucket = datetime(year, month, 1, tzinfo=zone)
        if bucket >= end:
            return
        yield bucket
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)

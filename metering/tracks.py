"""The batch track: recompute rollups from raw events, compare, correct.

Used by the scheduled reconciliation (which records every difference as a
``UsageDiscrepancy``), by voids (which must take events out at once) and by meter
rebuilds (a new definition means new numbers, not a discrepancy). The batch value is
authoritative: the real-time rows are replaced where they differ.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from . import sql

_SCOPE = """
    r.meter_id = ANY(%(meter_ids)s::bigint[])
    AND r.hour >= %(start)s AND r.hour < %(end)s
    {customers} {hours}
"""

_ROLLUP_VALUES = (
    "event_count",
    "value_sum",
    "value_max",
    "latest_value",
    "latest_at",
    "latest_event_id",
)


def _key(alias: str) -> str:
    """A rollup row's identity, as a row value of ``alias``'s columns."""
    return f"({alias}.customer_id, {alias}.meter_id, {alias}.hour, {alias}.dimensions)"


def _values(alias: str) -> str:
    return ", ".join(f"{alias}.{column}" for column in _ROLLUP_VALUES)


def _snapshot(alias: str) -> str:
    """A rollup row as exact JSON (numbers as strings: JSON floats would round them)."""
    return (
        f"jsonb_build_object('event_count', {alias}.event_count, "
        f"'value_sum', {alias}.value_sum::text, 'value_max', {alias}.value_max::text, "
        f"'latest_value', {alias}.latest_value::text, 'latest_at', {alias}.latest_at)"
    )


_DROP_WORK_TABLES = (
    "DROP TABLE IF EXISTS pg_temp.batch_rollup, pg_temp.batch_unique, "
    "pg_temp.rollup_diff, pg_temp.unique_diff"
)


@dataclass
class RecomputeResult:
    rollups_corrected: int
    unique_keys_corrected: int
    discrepancies: list[tuple[int, int]]  # (customer_id, meter_id) pairs that differed


def floor_hour(moment: datetime) -> datetime:
    """The UTC hour ``moment`` falls in (rollups are UTC hours: in a zone offset by :30 or
    :45, India's say, flooring in the zone's own wall time would miss half an hour)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + timedelta(hours=1)


@transaction.atomic
def rollups_recompute(
    *,
    meters: list,
    start: datetime,
    end: datetime,
    customer_ids: list[int] | None = None,
    hours: list[datetime] | None = None,
    record_discrepancies: bool = False,
) -> RecomputeResult:
    """Make the rollups of ``meters`` over ``[start, end)`` equal to the raw events.

    ``start``/``end`` are widened to whole hours. Optionally narrowed to some customers
    and to an explicit list of hours.
    """
    if not meters:
        return RecomputeResult(0, 0, [])
    start, end = floor_hour(start), ceil_hour(end)
    params = {
        "meter_ids": sorted(m.pk for m in meters),
        "meter_codes": sorted({m.code for m in meters}),
        "start": start,
        "end": end,
        "customer_ids": customer_ids or [],
        "hours": hours or [],
        "lock_class": sql.ROLLUP_LOCK_CLASS,
    }
    source = sql.scoped_events_source(
        with_customers=customer_ids is not None, with_hours=hours is not None
    )
    measured = sql.MEASURED.format(
        source=source, meter_filter="AND m.id = ANY(%(meter_ids)s::bigint[])"
    )
    scope = _SCOPE.format(
        customers="AND r.customer_id = ANY(%(customer_ids)s::bigint[])"
        if customer_ids is not None
        else "",
        hours="AND r.hour = ANY(%(hours)s::timestamptz[])" if hours is not None else "",
    )
    with connection.cursor() as cursor:
        # No batch may land between reading the raw events and writing the rollups.
        cursor.execute(sql.LOCK_METERS_EXCLUSIVE, params)
        # Work tables live for this call only; an enclosing transaction may call us twice.
        cursor.execute(_DROP_WORK_TABLES)
        cursor.execute(
            f"CREATE TEMP TABLE batch_rollup ON COMMIT DROP AS "
            f"WITH measured AS ({measured}) {sql.ROLLUP_SELECT}",
            params,
        )
        cursor.execute(
            f"CREATE TEMP TABLE batch_unique ON COMMIT DROP AS "
            f"WITH measured AS ({measured}) {sql.UNIQUE_SELECT}",
            params,
        )
        cursor.execute(
            f"""
            CREATE TEMP TABLE rollup_diff ON COMMIT DROP AS
            SELECT coalesce(b.customer_id, r.customer_id) AS customer_id,
                   coalesce(b.meter_id, r.meter_id) AS meter_id,
                   coalesce(b.hour, r.hour) AS hour,
                   coalesce(b.dimensions, r.dimensions) AS dimensions,
                   CASE WHEN r.id IS NOT NULL THEN {_snapshot("r")} END AS realtime,
                   CASE WHEN b.meter_id IS NOT NULL THEN {_snapshot("b")} END AS batch
            FROM (SELECT * FROM metering_usagerollup r WHERE {scope}) r
            FULL OUTER JOIN batch_rollup b
              ON (b.customer_id, b.meter_id, b.hour, b.dimensions)
               = (r.customer_id, r.meter_id, r.hour, r.dimensions)
            WHERE r.id IS NULL OR b.meter_id IS NULL
               OR ({_values("r")})
                  IS DISTINCT FROM ({_values("b")})
            """,
            params,
        )
        cursor.execute(
            f"""
            CREATE TEMP TABLE unique_diff ON COMMIT DROP AS
            WITH current AS (
                SELECT customer_id, meter_id, hour, dimensions, value
                FROM metering_usageuniquevalue r WHERE {scope}
            ), missing AS (
                SELECT * FROM batch_unique EXCEPT SELECT * FROM current
            ), extra AS (
                SELECT * FROM current EXCEPT SELECT * FROM batch_unique
            )
            SELECT customer_id, meter_id, hour, dimensions,
                   (SELECT count(*) FROM current c
                    WHERE {_key("c")} = {_key("d")}) AS realtime_distinct,
                   (SELECT count(*) FROM batch_unique b
                    WHERE {_key("b")} = {_key("d")}) AS batch_distinct
            FROM (SELECT customer_id, meter_id, hour, dimensions FROM missing
                  UNION SELECT customer_id, meter_id, hour, dimensions FROM extra) d
            """,
            params,
        )
        if record_discrepancies:
            cursor.execute(
                """
                INSERT INTO metering_usagediscrepancy
                    (customer_id, meter_id, hour, dimensions, realtime_value, batch_value, found_at)
                SELECT customer_id, meter_id, hour, dimensions, realtime, batch, now()
                FROM rollup_diff
                UNION ALL
                SELECT customer_id, meter_id, hour, dimensions,
                       jsonb_build_object('distinct', realtime_distinct),
                       jsonb_build_object('distinct', batch_distinct), now()
                FROM unique_diff
                """
            )
        # Correct: the batch value wins.
        cursor.execute(
            f"""
            DELETE FROM metering_usagerollup r USING rollup_diff d
            WHERE {_key("r")} = {_key("d")}
            """
        )
        cursor.execute(
            f"""
            INSERT INTO metering_usagerollup ({sql.ROLLUP_COLUMNS})
            SELECT b.customer_id, b.meter_id, b.hour, b.dimensions, {_values("b")}
            FROM batch_rollup b JOIN rollup_diff d
              ON {_key("b")} = {_key("d")}
            ORDER BY 1, 2, 3, 4
            """
        )
        cursor.execute(
            f"""
            DELETE FROM metering_usageuniquevalue r
            WHERE {scope}
              AND NOT EXISTS (
                SELECT 1 FROM batch_unique b
                WHERE (b.customer_id, b.meter_id, b.hour, b.dimensions, b.value)
                    = (r.customer_id, r.meter_id, r.hour, r.dimensions, r.value))
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO metering_usageuniquevalue (customer_id, meter_id, hour, dimensions, value)
            SELECT * FROM batch_unique ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT ON CONSTRAINT usage_unique_value_key DO NOTHING
            """
        )
        cursor.execute("SELECT count(*) FROM rollup_diff")
        rollups_corrected = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM unique_diff")
        unique_corrected = cursor.fetchone()[0]
        cursor.execute(
            "SELECT DISTINCT customer_id, meter_id FROM rollup_diff "
            "UNION SELECT DISTINCT customer_id, meter_id FROM unique_diff ORDER BY 1, 2"
        )
        pairs = [tuple(row) for row in cursor.fetchall()]
        cursor.execute(_DROP_WORK_TABLES)
    return RecomputeResult(rollups_corrected, unique_corrected, pairs)

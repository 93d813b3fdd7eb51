"""The SQL that turns raw events into rollups, in one place.

The real-time track (ingest), the batch track (recompute and compare), voids, meter
rebuilds and the raw-event edges of usage queries all measure events with the same
``MEASURED`` select, so the two tracks can only disagree when data drifted — which is
what the batch track exists to find. Raw SQL because this is the hot path: one statement
per batch, set-based, no per-event round trips.
"""

# Advisory-lock class for "rollups of meter N": ingest holds it shared per meter it
# touches (concurrent batches never wait on each other); recompute and rebuild hold it
# exclusively so no batch lands between their read of raw events and their write.
ROLLUP_LOCK_CLASS = 7001

# Every event a meter counts, with its hour, dimensions and value. ``{source}`` is a
# relation with id, customer_id, event_name, "timestamp", properties — late and void
# events already excluded by the caller.
MEASURED = """
    SELECT e.id, e.customer_id, m.id AS meter_id, m.aggregation,
           date_trunc('hour', e."timestamp", 'UTC') AS hour,
           metering_dimensions(e.properties, m.group_by) AS dimensions,
           e."timestamp",
           CASE WHEN m.aggregation IN ('sum', 'max', 'latest')
                THEN metering_numeric(e.properties -> m.value_property) END AS value,
           CASE WHEN m.aggregation = 'unique_count'
                THEN e.properties ->> m.value_property END AS unique_value
    FROM {source} AS e
    JOIN metering_meter AS m ON m.code = e.event_name AND m.is_active {meter_filter}
    -- Most meters have no filters: skip the call (a per-row function call) for them.
    WHERE (m.filters = '[]'::jsonb OR metering_matches(e.properties, m.filters))
"""

# Hourly rollup rows from measured events. An event without a usable value counts for
# nothing in a value meter (count meters count every matching event).
ROLLUP_SELECT = """
    SELECT customer_id, meter_id, hour, dimensions,
           count(*) AS event_count,
           sum(value) AS value_sum,
           max(value) AS value_max,
           -- The latest reading matters to gauges only; sorting every group costs ingest.
           (array_agg(value ORDER BY "timestamp" DESC, id DESC)
               FILTER (WHERE aggregation = 'latest'))[1] AS latest_value,
           max("timestamp") FILTER (WHERE aggregation = 'latest') AS latest_at,
           (array_agg(id ORDER BY "timestamp" DESC, id DESC)
               FILTER (WHERE aggregation = 'latest'))[1] AS latest_event_id
    FROM measured
    WHERE aggregation = 'count' OR value IS NOT NULL OR unique_value IS NOT NULL
    GROUP BY customer_id, meter_id, hour, dimensions
"""

UNIQUE_SELECT = """
    SELECT DISTINCT customer_id, meter_id, hour, dimensions, unique_value AS value
    FROM measured WHERE unique_value IS NOT NULL
"""

ROLLUP_COLUMNS = (
    "customer_id, meter_id, hour, dimensions, event_count, value_sum, value_max, "
    "latest_value, latest_at, latest_event_id"
)

RELEASE_KEYS = """
DELETE FROM metering_eventkey k
USING unnest(%(customer_ids)b::bigint[], %(keys)b::text[]) AS r(customer_id, idempotency_key)
WHERE k.customer_id = r.customer_id AND k.idempotency_key = r.idempotency_key
"""

LOCK_METERS_SHARED = """
SELECT pg_advisory_xact_lock_shared(%(lock_class)s, meter_id)
FROM unnest(%(meter_ids)s::int[]) AS meter_id ORDER BY meter_id
"""

LOCK_METERS_EXCLUSIVE = """
SELECT pg_advisory_xact_lock(%(lock_class)s, meter_id)
FROM unnest(%(meter_ids)s::int[]) AS meter_id ORDER BY meter_id
"""


def scoped_events_source(*, with_customers: bool, with_hours: bool) -> str:
    """Live (not late, not void) raw events in a recompute's scope.

    Parameters: %(start)s, %(end)s always; %(customer_ids)s and %(hours)s when asked.
    """
    conditions = [
        'ev."timestamp" >= %(start)s',
        'ev."timestamp" < %(end)s',
        "NOT ev.late",
        "ev.voided_at IS NULL",
        "ev.event_name = ANY(%(meter_codes)s::text[])",
    ]
    if with_customers:
        conditions.append("ev.customer_id = ANY(%(customer_ids)s::bigint[])")
    if with_hours:
        conditions.append(
            "date_trunc('hour', ev.\"timestamp\", 'UTC') = ANY(%(hours)s::timestamptz[])"
        )
    return (
        '(SELECT ev.id, ev.customer_id, ev.event_name, ev."timestamp", ev.properties '
        "FROM metering_usageevent ev WHERE " + " AND ".join(conditions) + ")"
    )


# Ingest: store the staged new events and add them to the rollups, all in one statement.
# Rows are upserted in key order so concurrent batches lock rollup rows in the same
# order and cannot deadlock.
INGEST = f"""
WITH input AS (
    SELECT customer_id, idempotency_key, event_name, "timestamp", properties::jsonb AS properties,
           late
    FROM metering_ingest_staging
), inserted AS (
    INSERT INTO metering_usageevent
        (customer_id, idempotency_key, event_name, "timestamp", received_at, properties, late)
    SELECT customer_id, idempotency_key, event_name, "timestamp", %(received_at)s, properties, late
    FROM input
    RETURNING id, customer_id, event_name, "timestamp", properties, late
), measured AS (
    {MEASURED.format(source="(SELECT * FROM inserted WHERE NOT late)", meter_filter="")}
), rollups AS (
    INSERT INTO metering_usagerollup ({ROLLUP_COLUMNS})
    {ROLLUP_SELECT}
    ORDER BY customer_id, meter_id, hour, dimensions
    ON CONFLICT ON CONSTRAINT usage_rollup_key DO UPDATE SET
        event_count = metering_usagerollup.event_count + EXCLUDED.event_count,
        value_sum = CASE
            WHEN EXCLUDED.value_sum IS NULL THEN metering_usagerollup.value_sum
            ELSE coalesce(metering_usagerollup.value_sum, 0) + EXCLUDED.value_sum END,
        value_max = greatest(metering_usagerollup.value_max, EXCLUDED.value_max),
        latest_value = CASE
            WHEN metering_usagerollup.latest_at IS NULL
              OR (EXCLUDED.latest_at, EXCLUDED.latest_event_id)
                 > (metering_usagerollup.latest_at, metering_usagerollup.latest_event_id)
            THEN EXCLUDED.latest_value ELSE metering_usagerollup.latest_value END,
        latest_event_id = CASE
            WHEN metering_usagerollup.latest_at IS NULL
              OR (EXCLUDED.latest_at, EXCLUDED.latest_event_id)
                 > (metering_usagerollup.latest_at, metering_usagerollup.latest_event_id)
            THEN EXCLUDED.latest_event_id ELSE metering_usagerollup.latest_event_id END,
        latest_at = greatest(metering_usagerollup.latest_at, EXCLUDED.latest_at)
    RETURNING 1
), uniques AS (
    INSERT INTO metering_usageuniquevalue (customer_id, meter_id, hour, dimensions, value)
    {UNIQUE_SELECT}
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ON CONSTRAINT usage_unique_value_key DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM rollups)
"""

# The batch's events, COPYed in binary: one transfer instead of six 10,000-element array
# parameters (which cost more to build in Python than the database spends inserting).
STAGING_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS metering_ingest_staging (
    position int, customer_id bigint, idempotency_key text, event_name text,
    "timestamp" timestamptz, properties text, late boolean
) ON COMMIT DELETE ROWS
"""

STAGING_EMPTY = "TRUNCATE metering_ingest_staging"

STAGING_COPY = (
    "COPY metering_ingest_staging (position, customer_id, idempotency_key, event_name,"
    ' "timestamp", properties, late) FROM STDIN (FORMAT BINARY)'
)

STAGING_TYPES = ["int4", "int8", "text", "text", "timestamptz", "text", "bool"]

# Exactly-once: claim each (customer, key) for good; only the claimed ones are new.
# First optimistically, as a plain INSERT: most batches are all new, and it costs about
# half of ON CONFLICT's speculative insertion. Any key already claimed (a retry, a
# concurrent batch) makes it fail as a whole, and CLAIM_KEYS sorts the batch out.
CLAIM_ALL_KEYS = """
INSERT INTO metering_eventkey (customer_id, idempotency_key, event_timestamp)
SELECT customer_id, idempotency_key, "timestamp" FROM metering_ingest_staging ORDER BY 1, 2
"""

CLAIM_KEYS = """
INSERT INTO metering_eventkey (customer_id, idempotency_key, event_timestamp)
SELECT customer_id, idempotency_key, "timestamp" FROM metering_ingest_staging ORDER BY 1, 2
ON CONFLICT DO NOTHING
RETURNING customer_id, idempotency_key
"""

# Duplicates and refused events leave the staging table before the events are stored.
UNSTAGE = "DELETE FROM metering_ingest_staging WHERE position = ANY(%(positions)s::int[])"

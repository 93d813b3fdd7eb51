from django.db import migrations

# Ingest spends most of its time in the database; these keep per-event work down.
# * metering_dimensions becomes one inlinable expression (no subquery, no per-row call).
# * The (customer, event name, time) index goes: (customer, time) serves the same reads
#   (usage edges and the events page scan short time ranges of one customer) at one index
#   write per event less.
# * The events table's foreign key to customers goes (as the key table's does in 0004):
#   ingest resolves customer ids itself and customers are never deleted, only suspended;
#   a per-event check at commit bought nothing but time.
SQL = r"""
CREATE OR REPLACE FUNCTION metering_dimensions(properties jsonb, group_by text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE cardinality(group_by)
        WHEN 0 THEN '{}'::text[]
        WHEN 1 THEN ARRAY[coalesce(properties ->> group_by[1], '')]
        WHEN 2 THEN ARRAY[coalesce(properties ->> group_by[1], ''),
                          coalesce(properties ->> group_by[2], '')]
        ELSE ARRAY[coalesce(properties ->> group_by[1], ''),
                   coalesce(properties ->> group_by[2], ''),
                   coalesce(properties ->> group_by[3], '')]
    END
$$;
DROP INDEX IF EXISTS metering_usageevent_customer_name_time;
ALTER TABLE metering_usageevent DROP CONSTRAINT metering_usageevent_customer_id_fkey;
"""

REVERSE_SQL = r"""
ALTER TABLE metering_usageevent ADD CONSTRAINT metering_usageevent_customer_id_fkey
    FOREIGN KEY (customer_id) REFERENCES accounts_customer (id) DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX metering_usageevent_customer_name_time
    ON metering_usageevent (customer_id, event_name, "timestamp");
CREATE OR REPLACE FUNCTION metering_dimensions(properties jsonb, group_by text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(group_by) = 0 THEN '{}'::text[] ELSE ARRAY(
        SELECT coalesce(properties ->> g.name, '')
        FROM unnest(group_by) WITH ORDINALITY AS g(name, position)
        ORDER BY g.position
    ) END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("metering", "0002_usage_reconciliation_run")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]

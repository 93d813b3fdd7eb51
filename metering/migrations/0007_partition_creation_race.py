from django.db import migrations

# Concurrent first batches of a month could both try to create its partition: the check
# after the advisory lock reads a catalog snapshot that may predate the other batch's
# CREATE. The CREATE itself now tolerates losing that race.
FUNCTION = r"""
CREATE OR REPLACE FUNCTION metering_ensure_month_partition(month_start date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := format('metering_usageevent_%s', to_char(month_start, 'YYYY_MM'));
BEGIN
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('metering_usageevent_partitions'));
    BEGIN
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF metering_usageevent FOR VALUES FROM (%L) TO (%L)',
            partition_name,
            (date_trunc('month', month_start)::timestamp AT TIME ZONE 'UTC'),
            ((date_trunc('month', month_start) + interval '1 month')::timestamp AT TIME ZONE 'UTC')
        );
    EXCEPTION WHEN duplicate_table THEN
        NULL;  -- another batch created it first
    END;
END
$$;
"""

PREVIOUS = r"""
CREATE OR REPLACE FUNCTION metering_ensure_month_partition(month_start date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := format('metering_usageevent_%s', to_char(month_start, 'YYYY_MM'));
BEGIN
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('metering_usageevent_partitions'));
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF metering_usageevent FOR VALUES FROM (%L) TO (%L)',
        partition_name,
        (date_trunc('month', month_start)::timestamp AT TIME ZONE 'UTC'),
        ((date_trunc('month', month_start) + interval '1 month')::timestamp AT TIME ZONE 'UTC')
    );
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("metering", "0006_late_events_index")]

    operations = [migrations.RunSQL(FUNCTION, PREVIOUS)]

from django.db import migrations

# Late events are rare, and period close asks for a customer's late events every period:
# a partial index keeps that a few index entries, not a scan of the customer's events.
SQL = """
CREATE INDEX metering_usageevent_late
    ON metering_usageevent (customer_id, received_at) WHERE late;
"""

REVERSE_SQL = "DROP INDEX IF EXISTS metering_usageevent_late;"


class Migration(migrations.Migration):
    dependencies = [("metering", "0005_lean_hot_path_indexes")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]

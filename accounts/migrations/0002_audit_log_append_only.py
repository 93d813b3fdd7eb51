from django.db import migrations

# The audit log is evidence: a trigger refuses UPDATE and DELETE on it, whatever the
# application code does. (TRUNCATE, used by test database flushes, is not affected.)
SQL = """
CREATE FUNCTION accounts_auditlog_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'accounts_auditlog is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER accounts_auditlog_append_only
    BEFORE UPDATE OR DELETE ON accounts_auditlog
    FOR EACH ROW EXECUTE FUNCTION accounts_auditlog_append_only();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS accounts_auditlog_append_only ON accounts_auditlog;
DROP FUNCTION IF EXISTS accounts_auditlog_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]

from django.db import migrations, models

# The credit note guard of 0002, with the new Stripe bookkeeping column writable.
GUARD = """
CREATE OR REPLACE FUNCTION invoicing_creditnote_guard() RETURNS trigger AS $$
DECLARE
    mutable text[] := ARRAY[{columns}];
BEGIN
    IF TG_OP = 'DELETE'
       OR (TG_TABLE_NAME = 'invoicing_creditnoteline')
       OR (to_jsonb(NEW) - mutable) IS DISTINCT FROM (to_jsonb(OLD) - mutable) THEN
        RAISE EXCEPTION '% is issued and cannot change (% refused)', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""
BEFORE = "'stripe_credit_note_id', 'stripe_synced_at'"
AFTER = "'stripe_credit_note_id', 'stripe_synced_at', 'stripe_last_error'"


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0005_stripe_invoice_unique"),
    ]

    operations = [
        migrations.AddField(
            model_name="creditnote",
            name="stripe_last_error",
            field=models.TextField(blank=True),
        ),
        migrations.RunSQL(GUARD.format(columns=AFTER), GUARD.format(columns=BEFORE)),
    ]

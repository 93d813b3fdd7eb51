from django.db import migrations

# Finalized invoices, their lines and the evidence of their reconciliation gate, credit
# notes and published plan versions are records of what was billed: the database refuses
# to change them, whatever the application code does. Corrections are credit notes.
# (TRUNCATE, used by test database flushes, is not affected.)
SQL = """
-- A finalized invoice keeps every column except its payment life (status moving on,
-- paid/void dates) and its Stripe bookkeeping. New columns are immutable by default.
CREATE FUNCTION invoicing_invoice_guard() RETURNS trigger AS $$
DECLARE
    mutable text[] := ARRAY['status', 'paid_at', 'voided_at', 'void_reason',
        'stripe_invoice_id', 'stripe_synced_at', 'stripe_sync_attempts',
        'stripe_last_error', 'updated_at'];
BEGIN
    IF OLD.status IN ('draft', 'held') THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'invoice % is finalized: it cannot be deleted', OLD.number
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.status IN ('draft', 'held') OR (OLD.status = 'void' AND NEW.status <> 'void') THEN
        RAISE EXCEPTION 'invoice % is finalized: status % cannot become %',
            OLD.number, OLD.status, NEW.status USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (to_jsonb(NEW) - mutable) IS DISTINCT FROM (to_jsonb(OLD) - mutable) THEN
        RAISE EXCEPTION 'invoice % is finalized: its amounts and identity cannot change',
            OLD.number USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER invoicing_invoice_guard
    BEFORE UPDATE OR DELETE ON invoicing_invoice
    FOR EACH ROW EXECUTE FUNCTION invoicing_invoice_guard();

-- Lines and usage checks change only while their invoice is a draft (or held).
CREATE FUNCTION invoicing_invoice_part_guard() RETURNS trigger AS $$
DECLARE
    invoice_status text;
BEGIN
    SELECT status INTO invoice_status FROM invoicing_invoice
    WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END;
    IF TG_OP = 'UPDATE' AND NEW.invoice_id IS DISTINCT FROM OLD.invoice_id THEN
        RAISE EXCEPTION '% rows cannot move between invoices', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF invoice_status IS NOT NULL AND invoice_status NOT IN ('draft', 'held') THEN
        RAISE EXCEPTION '% of a finalized invoice cannot change (% refused)', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER invoicing_invoiceline_guard
    BEFORE INSERT OR UPDATE OR DELETE ON invoicing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION invoicing_invoice_part_guard();

CREATE TRIGGER invoicing_invoiceusagecheck_guard
    BEFORE INSERT OR UPDATE OR DELETE ON invoicing_invoiceusagecheck
    FOR EACH ROW EXECUTE FUNCTION invoicing_invoice_part_guard();

-- Credit notes are issued once; only their Stripe bookkeeping is written later.
CREATE FUNCTION invoicing_creditnote_guard() RETURNS trigger AS $$
DECLARE
    mutable text[] := ARRAY['stripe_credit_note_id', 'stripe_synced_at'];
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

CREATE TRIGGER invoicing_creditnote_guard
    BEFORE UPDATE OR DELETE ON invoicing_creditnote
    FOR EACH ROW EXECUTE FUNCTION invoicing_creditnote_guard();

CREATE TRIGGER invoicing_creditnoteline_guard
    BEFORE UPDATE OR DELETE ON invoicing_creditnoteline
    FOR EACH ROW EXECUTE FUNCTION invoicing_creditnote_guard();

-- A price change is a new plan version: versions (but their notes) and their price
-- components never change.
CREATE FUNCTION invoicing_plan_version_guard() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'invoicing_planversion' AND TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'notes') = (to_jsonb(OLD) - 'notes') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is immutable: publish a new plan version instead (% refused)',
        TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER invoicing_planversion_guard
    BEFORE UPDATE OR DELETE ON invoicing_planversion
    FOR EACH ROW EXECUTE FUNCTION invoicing_plan_version_guard();

CREATE TRIGGER invoicing_pricecomponent_guard
    BEFORE UPDATE OR DELETE ON invoicing_pricecomponent
    FOR EACH ROW EXECUTE FUNCTION invoicing_plan_version_guard();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS invoicing_invoice_guard ON invoicing_invoice;
DROP TRIGGER IF EXISTS invoicing_invoiceline_guard ON invoicing_invoiceline;
DROP TRIGGER IF EXISTS invoicing_invoiceusagecheck_guard ON invoicing_invoiceusagecheck;
DROP TRIGGER IF EXISTS invoicing_creditnote_guard ON invoicing_creditnote;
DROP TRIGGER IF EXISTS invoicing_creditnoteline_guard ON invoicing_creditnoteline;
DROP TRIGGER IF EXISTS invoicing_planversion_guard ON invoicing_planversion;
DROP TRIGGER IF EXISTS invoicing_pricecomponent_guard ON invoicing_pricecomponent;
DROP FUNCTION IF EXISTS invoicing_invoice_guard();
DROP FUNCTION IF EXISTS invoicing_invoice_part_guard();
DROP FUNCTION IF EXISTS invoicing_creditnote_guard();
DROP FUNCTION IF EXISTS invoicing_plan_version_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0001_initial")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
